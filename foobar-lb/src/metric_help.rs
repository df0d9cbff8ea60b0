//! The `# HELP` text of every metric this crate emits, in one place;
//! described when a backend set is built.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Describes every metric of foobar-lb to the installed recorder.
pub(crate) fn describe() {
    describe_counter!(
        "foobar_lb_backend_requests_total",
        "Requests sent to a backend, by backend."
    );
    describe_counter!(
        "foobar_lb_backend_errors_total",
        "Requests to a backend that failed (connect error, timeout, 5xx), by backend."
    );
    describe_histogram!(
        "foobar_lb_backend_response_seconds",
        Unit::Seconds,
        "Time from sending a request to a backend to its response head, by backend."
    );
    describe_gauge!(
        "foobar_lb_backend_in_flight",
        "Requests a backend is serving now, by backend."
    );
    describe_gauge!(
        "foobar_lb_backend_healthy",
        "1 while a backend takes traffic (not down, ejected or draining), else 0, by backend."
    );
    describe_counter!(
        "foobar_lb_backend_ejections_total",
        "Times outlier detection ejected a backend, by backend."
    );
    describe_counter!(
        "foobar_lb_no_backend_total",
        "Requests refused because no backend could take them (503)."
    );
    describe_counter!(
        "foobar_lb_retries_total",
        "Requests sent again to another backend after a failure."
    );
}
