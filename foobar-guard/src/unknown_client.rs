//! What the request-level layers do when no client address is known.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::Counter;

/// What a request-level layer does with a request whose client address it
/// cannot find (see [`ClientAddr::connection_peer`](crate::ClientAddr::connection_peer)
/// for where it looks).
///
/// The default refuses it: a security layer that cannot see who is asking
/// must not let everyone through. The refusal is a `500` (for gRPC
/// requests, a `grpc-status` of `INTERNAL`), an error log line at most
/// every ten seconds per layer, and the counter
/// `foobar_unknown_client_requests_total{layer}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnknownClient {
    /// Refuse the request (fail closed). The default.
    #[default]
    Refuse,
    /// Let the request through unchecked: the firewall does not filter it,
    /// the rate limiter does not count it. Choose it only where another
    /// part already restricts who can reach the service.
    Allow,
}

/// Shortest time between two log lines of one layer.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts and reports requests refused for want of a client address.
#[derive(Debug)]
pub(crate) struct UnknownClientAlarm {
    layer: &'static str,
    refused: Counter,
    started: Instant,
    /// Milliseconds since `started` of the last log line, plus one (0: never).
    last_log_ms: AtomicU64,
}

impl UnknownClientAlarm {
    pub(crate) fn new(layer: &'static str) -> Self {
        Self {
            layer,
            refused: metrics::counter!("foobar_unknown_client_requests_total", "layer" => layer),
            started: Instant::now(),
            last_log_ms: AtomicU64::new(0),
        }
    }

    /// Records one refused request, logging it unless a line went out
    /// recently.
    pub(crate) fn raise(&self) {
        self.refused.increment(1);
        let now = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_log_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < LOG_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .last_log_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::error!(
                layer = self.layer,
                "refusing a request whose client address is unknown: the server recorded no \
                 peer address (foobar ConnInfo, axum ConnectInfo<SocketAddr> with the `axum` \
                 feature, tonic TcpConnectInfo/TlsConnectInfo with the `tonic` feature) and \
                 no ClientAddr was inserted; further refusals are counted in \
                 foobar_unknown_client_requests_total"
            );
        }
    }
}
