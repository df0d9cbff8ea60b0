//! The load balancer's section of the status page: its data
//! ([`LbStatus`]), how the page shows it, and the [`StatusSource`] of a
//! backend set (a [`Proxy`](crate::Proxy) reports its set's).

use std::sync::LazyLock;

use foobar_core::status::{Format, Health, Snapshot, StatusEvent, StatusSource, Table, View};
use serde::{Deserialize, Serialize};

use crate::backends::Backends;
use crate::policy::Policy;

/// The kind the status page shows under the set's name.
pub const KIND: &str = "load balancer";

/// A backend set's state, as `/status.json` carries it in the snapshot's
/// `data`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LbStatus {
    /// The balancing policy's name (`"round_robin"`, `"p2c_ewma"`…).
    pub policy: String,
    /// Every backend, in configuration order.
    pub backends: Vec<BackendStatus>,
}

/// One backend of a load balancer. Counters are totals since start; the
/// status page derives rates from successive snapshots.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackendStatus {
    /// How the backend is named (usually its address or URL).
    pub id: String,
    /// Its balancing weight.
    pub weight: u32,
    /// Its health.
    pub health: Health,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Requests sent since start.
    pub requests_total: u64,
    /// Failed requests (connect errors, timeouts, 5xx) since start.
    pub errors_total: u64,
    /// 99th percentile latency over a recent window, in seconds.
    pub latency_p99_seconds: Option<f64>,
    /// Times outlier detection has ejected it.
    pub ejections_total: u64,
}

impl LbStatus {
    /// The set's health as a whole: up when every backend is, degraded
    /// while some take traffic, down when none does (or there is none).
    pub fn health(&self, available: usize) -> Health {
        let up = self
            .backends
            .iter()
            .filter(|b| b.health == Health::Up)
            .count();
        if self.backends.is_empty() || available == 0 {
            Health::Down
        } else if up == self.backends.len() {
            Health::Up
        } else if up == 0 && self.backends.iter().all(|b| b.health == Health::Unknown) {
            Health::Unknown
        } else {
            Health::Degraded
        }
    }
}

/// How the page shows an [`LbStatus`].
static VIEW: LazyLock<View> = LazyLock::new(|| {
    View::new().fact("policy", "/policy", Format::Text).table(
        Table::new("backends", "/backends")
            .key("/id")
            .health("/health")
            .column("backend", "/id", Format::Text)
            .column("health", "/health", Format::Health)
            .column("weight", "/weight", Format::Integer)
            .column("in flight", "/in_flight", Format::Integer)
            .column("req/s", "/requests_total", Format::PerSecond)
            .column(
                "errors",
                "/errors_total",
                Format::share_of("/requests_total"),
            )
            .column("p99", "/latency_p99_seconds", Format::Seconds)
            .column("requests", "/requests_total", Format::Integer)
            .column("failed", "/errors_total", Format::Integer)
            .column("ejections", "/ejections_total", Format::Integer)
            .column("recent req/s", "/requests_total", Format::RateHistory),
    )
});

/// A snapshot of a set in `status`, with `available` backends taking
/// traffic and recent `events`.
pub(crate) fn snapshot(status: &LbStatus, available: usize, events: Vec<StatusEvent>) -> Snapshot {
    Snapshot::new(KIND, status)
        .health(status.health(available))
        .events(events)
        .view(VIEW.clone())
}

impl<S, P> StatusSource for Backends<S, P>
where
    S: Clone + Send + Sync + 'static,
    P: Policy,
{
    fn name(&self) -> &str {
        Backends::name(self)
    }

    fn snapshot(&self) -> Snapshot {
        snapshot(&self.status(), self.available(), self.events())
    }

    /// Ready while at least one backend takes traffic.
    fn ready(&self) -> bool {
        self.available() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(healths: &[Health]) -> LbStatus {
        LbStatus {
            policy: "round_robin".into(),
            backends: healths
                .iter()
                .map(|&health| BackendStatus {
                    health,
                    ..BackendStatus::default()
                })
                .collect(),
        }
    }

    #[test]
    fn set_health_follows_its_backends() {
        assert_eq!(with(&[]).health(0), Health::Down);
        assert_eq!(with(&[Health::Up, Health::Up]).health(2), Health::Up);
        assert_eq!(
            with(&[Health::Up, Health::Down]).health(1),
            Health::Degraded
        );
        assert_eq!(
            with(&[Health::Ejected, Health::Down]).health(0),
            Health::Down
        );
        assert_eq!(with(&[Health::Unknown]).health(1), Health::Unknown);
    }

    #[test]
    fn snapshot_carries_data_view_and_events() {
        let status = with(&[Health::Up]);
        let snapshot = snapshot(&status, 1, vec![StatusEvent::now("added", "a: added")]);
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["kind"], KIND);
        assert_eq!(json["health"], "up");
        assert_eq!(json["data"]["policy"], "round_robin");
        assert_eq!(json["data"]["backends"][0]["health"], "up");
        assert_eq!(json["view"]["tables"][0]["rows"], "/backends");
        assert_eq!(json["events"][0]["kind"], "added");
    }

    #[test]
    fn view_points_into_the_data() {
        let json = serde_json::to_value(with(&[Health::Up])).unwrap();
        for field in &VIEW.facts {
            assert!(json.pointer(&field.pointer).is_some(), "{field:?}");
        }
        for table in &VIEW.tables {
            let row = &json.pointer(&table.rows).unwrap()[0];
            for column in &table.columns {
                assert!(row.pointer(&column.pointer).is_some(), "{column:?}");
            }
        }
    }
}
