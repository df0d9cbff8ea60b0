//! A status page section with a row per managed certificate.

use std::time::SystemTime;

use foobar_core::status::{Format, Health, Snapshot, StatusSource, Table, View};

use super::manager::{AcmeManager, AcmeStatus};

/// Shows the certificates of one or more [`AcmeManager`]s on the status
/// page (`foobar_core::admin`): a row per certificate with its names,
/// health, days to expiry and to renewal, and the last error.
///
/// A row is `up` while its certificate has more than a third of its
/// validity left and the last attempt succeeded, `degraded` when renewal
/// is due or the last attempt failed (the old certificate still serving),
/// `down` without a valid certificate.
#[derive(Clone, Debug)]
pub struct CertificatesStatus {
    name: String,
    managers: Vec<AcmeManager>,
}

impl CertificatesStatus {
    /// A section named `certificates` over these managers.
    pub fn new(managers: impl IntoIterator<Item = AcmeManager>) -> Self {
        Self {
            name: "certificates".to_owned(),
            managers: managers.into_iter().collect(),
        }
    }

    /// Another section name (unique within the application).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// The health of one certificate at `now`.
pub(crate) fn health(status: &AcmeStatus, now: SystemTime) -> Health {
    match (status.not_after, status.renewal_due) {
        (Some(not_after), _) if now >= not_after => Health::Down,
        (None, _) => Health::Down,
        (_, Some(due)) if now >= due || status.last_error.is_some() => Health::Degraded,
        _ => Health::Up,
    }
}

fn days_from(now: SystemTime, at: Option<SystemTime>) -> Option<f64> {
    let at = at?;
    Some(match at.duration_since(now) {
        Ok(ahead) => ahead.as_secs_f64() / 86_400.0,
        Err(past) => -past.duration().as_secs_f64() / 86_400.0,
    })
}

impl StatusSource for CertificatesStatus {
    fn name(&self) -> &str {
        &self.name
    }

    fn snapshot(&self) -> Snapshot {
        let now = SystemTime::now();
        let mut healths = Vec::with_capacity(self.managers.len());
        let rows: Vec<_> = self
            .managers
            .iter()
            .map(|manager| {
                let status = manager.status();
                let health = health(&status, now);
                healths.push(health);
                serde_json::json!({
                    "names": status.names.join(", "),
                    "health": health,
                    "expires_in_days": days_from(now, status.not_after),
                    "renewal_in_days": days_from(now, status.renewal_due),
                    "issued": status.issued,
                    "failures": status.failures,
                    "last_error": status.last_error,
                })
            })
            .collect();
        let overall = if healths.iter().all(|h| *h == Health::Up) {
            Health::Up
        } else if healths.iter().all(|h| *h == Health::Down) {
            Health::Down
        } else {
            Health::Degraded
        };
        let view = View::new().table(
            Table::new("certificates", "/certificates")
                .key("/names")
                .health("/health")
                .column("names", "/names", Format::Text)
                .column("health", "/health", Format::Health)
                .column(
                    "expires in (days)",
                    "/expires_in_days",
                    Format::Decimal { decimals: 1 },
                )
                .column(
                    "renewal in (days)",
                    "/renewal_in_days",
                    Format::Decimal { decimals: 1 },
                )
                .column("issued", "/issued", Format::Integer)
                .column("failures", "/failures", Format::Integer)
                .column("last error", "/last_error", Format::Text),
        );
        Snapshot::new("certificates", &serde_json::json!({ "certificates": rows }))
            .health(overall)
            .view(view)
    }

    fn ready(&self) -> bool {
        // Serving needs a certificate, even one due for renewal.
        self.managers
            .iter()
            .all(|m| health(&m.status(), SystemTime::now()) != Health::Down)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn health_follows_validity_and_the_last_attempt() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let mut status = AcmeStatus::empty(vec!["a.test".to_owned()]);
        assert_eq!(health(&status, now), Health::Down);
        status.not_after = Some(now + 3 * hour);
        status.renewal_due = Some(now + hour);
        assert_eq!(health(&status, now), Health::Up);
        status.last_error = Some("the CA is down".to_owned());
        assert_eq!(health(&status, now), Health::Degraded);
        status.last_error = None;
        assert_eq!(health(&status, now + 2 * hour), Health::Degraded);
        assert_eq!(health(&status, now + 3 * hour), Health::Down);
    }
}
