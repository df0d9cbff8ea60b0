//! The `# HELP` text of every metric this crate emits, in one place.
//!
//! Descriptions go to the recorder installed at the time of the call, so
//! the components that register metrics call [`describe`] when they are
//! built (after the recorder is installed, as their metrics need anyway).
//! The recorder keeps the first description of a name; calling again costs
//! a lookup per metric.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Describes every metric of foobar-core to the installed recorder.
pub(crate) fn describe() {
    // Server (listeners and connections).
    describe_counter!(
        "foobar_connections_accepted_total",
        "Connections accepted by the server's listeners."
    );
    describe_gauge!(
        "foobar_connections_open",
        "Connections the server holds open now."
    );
    describe_counter!(
        "foobar_accept_errors_total",
        "Failed accepts (descriptor or memory exhaustion); each pauses accepting briefly."
    );
    describe_counter!(
        "foobar_write_timeouts_total",
        "Connections whose writes failed because the client stopped reading (stalled) or read too slowly (too_slow), by reason."
    );
    describe_counter!(
        "foobar_header_timeouts_total",
        "Connections closed because no request head arrived within the header timeout."
    );
    describe_counter!(
        "foobar_http1_refused_total",
        "HTTP/1.1 requests the server refused before the service saw them (a malformed, oversized or ambiguous head); the connection closes after the answer."
    );
    describe_counter!(
        "foobar_request_body_timeouts_total",
        "Request bodies that failed because nothing of them came within the body read timeout while the service waited (HTTP/1 and HTTP/2)."
    );
    describe_counter!(
        "foobar_http2_goaways_sent_total",
        "HTTP/2 connections the server closed with a GOAWAY carrying an error code, by that code (reason, lower case: enhance_your_calm for a limit passed such as rapid reset or a CONTINUATION flood, protocol_error, flow_control_error, frame_size_error, compression_error, ...)."
    );
    describe_counter!(
        "foobar_http2_keep_alive_timeouts_total",
        "HTTP/2 connections closed because the client did not answer a keep-alive ping in time."
    );

    // Access log.
    describe_counter!("foobar_access_log_lines_total", "Access log lines written.");
    describe_counter!(
        "foobar_access_log_dropped_total",
        "Access log lines dropped because the writer fell behind."
    );
    describe_counter!(
        "foobar_access_log_errors_total",
        "Access log writes or reopens that failed."
    );

    // Request metrics of MetricsLayer.
    describe_counter!(
        "http_server_requests_total",
        "HTTP requests answered, by service, method and status class."
    );
    describe_histogram!(
        "http_server_request_duration_seconds",
        Unit::Seconds,
        "Time from request to response head, by service, method and status class."
    );
    describe_gauge!(
        "http_server_requests_in_flight",
        "HTTP requests being served now, by service."
    );
    describe_counter!(
        "http_server_errors_total",
        "HTTP requests the service failed without any response, by service and method."
    );

    // Windowed rates of the monitor.
    describe_gauge!(
        "http_server_requests_per_second",
        "Requests per second over a sliding window (1m, 5m), by service."
    );
    describe_gauge!(
        "http_server_error_ratio",
        "Share of requests answered 5xx or failed over a sliding window (1m, 5m), by service."
    );

    // Host and process of the monitor.
    describe_gauge!(
        "host_cpu_usage_ratio",
        "Host CPU use over the last sampling interval, all cores, 0 to 1."
    );
    describe_gauge!(
        "host_cpu_core_usage_ratio",
        "Host CPU use over the last sampling interval, by core, 0 to 1."
    );
    describe_gauge!(
        "host_memory_total_bytes",
        Unit::Bytes,
        "Physical memory of the host."
    );
    describe_gauge!(
        "host_memory_available_bytes",
        Unit::Bytes,
        "Host memory available to new work without swapping."
    );
    describe_gauge!("host_memory_used_bytes", Unit::Bytes, "Host memory in use.");
    describe_gauge!(
        "host_swap_total_bytes",
        Unit::Bytes,
        "Swap space of the host."
    );
    describe_gauge!("host_swap_used_bytes", Unit::Bytes, "Host swap in use.");
    describe_gauge!("host_load1", "Host load average over 1 minute.");
    describe_gauge!("host_load5", "Host load average over 5 minutes.");
    describe_gauge!("host_load15", "Host load average over 15 minutes.");
    describe_counter!(
        "host_network_receive_bytes_total",
        Unit::Bytes,
        "Bytes received since boot, by network interface."
    );
    describe_counter!(
        "host_network_transmit_bytes_total",
        Unit::Bytes,
        "Bytes sent since boot, by network interface."
    );
    describe_gauge!(
        "process_cpu_usage_ratio",
        "CPU used by this process over the last sampling interval, as a share of the whole host."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of this process."
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "Virtual memory of this process."
    );
    describe_gauge!("process_open_fds", "Open file descriptors of this process.");
    describe_gauge!("process_max_fds", "File descriptor limit of this process.");
    describe_gauge!("process_threads", "Threads of this process.");
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "Start time of this process, seconds since the Unix epoch."
    );

    // Push client.
    describe_counter!(
        "metrics_push_total",
        "Metric pushes to the collector, by result (success, failure)."
    );
    describe_counter!(
        "metrics_push_dropped_total",
        "Metric renderings replaced by a newer one before they could be pushed."
    );
}
