//! The `# HELP` text of every metric this crate emits, in one place;
//! each layer describes them when it is built.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Describes every metric of foobar-guard to the installed recorder.
pub(crate) fn describe() {
    describe_counter!(
        "foobar_firewall_denied_total",
        "Connections and requests the firewall denied, by level (connection, request)."
    );
    describe_counter!(
        "foobar_connections_refused_total",
        "Connections refused by the connection limits, by reason (total_limit, client_limit, handshake_rate)."
    );
    describe_gauge!(
        "foobar_connections_limited_open",
        "Connections holding a permit of the connection limits now."
    );
    describe_counter!(
        "foobar_rate_limited_requests_total",
        "Requests refused by the rate limit (429)."
    );
    describe_counter!(
        "foobar_rate_limit_resets_total",
        "Times a rate limiter's key table was full and started over, by limit (requests, handshakes)."
    );
    describe_counter!(
        "foobar_proxy_protocol_refused_total",
        "Connections refused for their PROXY protocol header: missing, malformed or late from a trusted proxy, or sent by any other peer."
    );
    describe_counter!(
        "foobar_unknown_client_requests_total",
        "Requests refused because no client address was known (fail closed), by layer."
    );
    describe_counter!(
        "foobar_tls_handshakes_total",
        "TLS handshakes by result (success, failure, timeout)."
    );
    describe_histogram!(
        "foobar_tls_handshake_duration_seconds",
        Unit::Seconds,
        "Duration of successful TLS handshakes."
    );
    describe_counter!(
        "foobar_tls_reloads_total",
        "TLS configuration reloads by result (success, failure)."
    );
    #[cfg(feature = "acme")]
    {
        describe_gauge!(
            "foobar_acme_certificate_expiry_days",
            "Days until the ACME certificate for a name expires (negative once expired)."
        );
        describe_counter!(
            "foobar_acme_renewals_total",
            "ACME issuance attempts by result (success: a new certificate stored; failure)."
        );
    }
    #[cfg(feature = "ocsp")]
    describe_counter!(
        "foobar_tls_ocsp_fetches_total",
        "OCSP responses fetched for stapling, by result (success; failure: unreachable responder or a response that cannot be stapled)."
    );
    #[cfg(feature = "redis")]
    describe_redis();
}

/// The metrics of the shared (Redis) rate limits.
#[cfg(feature = "redis")]
fn describe_redis() {
    describe_counter!(
        "foobar_rate_limit_decisions_total",
        "Shared rate-limit decisions by source (redis: asked Redis; lease: spent a local lease; fallback: Redis unavailable) and result (allowed, limited)."
    );
    describe_histogram!(
        "foobar_rate_limit_redis_duration_seconds",
        Unit::Seconds,
        "Duration of each rate-limit script call to Redis, timeouts included."
    );
    describe_counter!(
        "foobar_rate_limit_redis_failures_total",
        "Rate-limit calls to Redis that failed or timed out and were decided by the fallback, by reason (timeout, error)."
    );
    describe_gauge!(
        "foobar_rate_limit_redis_up",
        "1 while the shared rate limit asks Redis, 0 while it falls back and probes Redis."
    );
}
