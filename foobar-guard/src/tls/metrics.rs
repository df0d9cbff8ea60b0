//! Pre-registered metric handles of the TLS layer.

use metrics::{Counter, Histogram};

/// Handles registered once, so the handshake path formats no labels.
#[derive(Clone, Debug)]
pub(crate) struct HandshakeMetrics {
    pub(crate) succeeded: Counter,
    pub(crate) failed: Counter,
    pub(crate) timed_out: Counter,
    pub(crate) duration: Histogram,
}

const HANDSHAKES: &str = "foobar_tls_handshakes_total";

impl HandshakeMetrics {
    pub(crate) fn register() -> Self {
        crate::metric_help::describe();
        Self {
            succeeded: metrics::counter!(HANDSHAKES, "result" => "success"),
            failed: metrics::counter!(HANDSHAKES, "result" => "failure"),
            timed_out: metrics::counter!(HANDSHAKES, "result" => "timeout"),
            duration: metrics::histogram!("foobar_tls_handshake_duration_seconds"),
        }
    }
}

/// Counts certificate reloads.
#[derive(Clone, Debug)]
pub(crate) struct ReloadMetrics {
    pub(crate) succeeded: Counter,
    pub(crate) failed: Counter,
}

const RELOADS: &str = "foobar_tls_reloads_total";

impl ReloadMetrics {
    pub(crate) fn register() -> Self {
        crate::metric_help::describe();
        Self {
            succeeded: metrics::counter!(RELOADS, "result" => "success"),
            failed: metrics::counter!(RELOADS, "result" => "failure"),
        }
    }
}
