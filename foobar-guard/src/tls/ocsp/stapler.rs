//! Keeping a valid OCSP response stapled to every certificate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use metrics::Counter;
use rustls::sign::CertifiedKey;

use super::fetch::Fetcher;
use super::request::CertId;
use super::response::{check, Checked};
use crate::der::CertFields;

/// What the TLS resolver serves for some names; the stapler replaces the
/// key with one carrying the current response.
pub(crate) type Slot = Arc<ArcSwapOption<CertifiedKey>>;

/// First retry after a failed fetch, doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// A response is not fetched again sooner than this.
const MIN_REFRESH: Duration = Duration::from_secs(60);

/// What one refresh pass found, over every certificate served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OcspReport {
    /// Certificates served with a valid response stapled.
    pub stapled: usize,
    /// Certificates served without one (no responder URL, no issuer in
    /// the chain, or no valid response).
    pub unstapled: usize,
    /// Responses fetched and accepted in this pass.
    pub fetched: usize,
    /// Fetches that failed or brought a response that cannot be stapled.
    pub failed: usize,
}

/// Responses by end-entity certificate, kept across reloads.
#[derive(Debug, Default)]
pub(crate) struct Staples {
    by_cert: Mutex<HashMap<Vec<u8>, Known>>,
}

#[derive(Debug, Default)]
struct Known {
    response: Option<(Vec<u8>, Checked)>,
    next_attempt: Option<SystemTime>,
    failures: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    fetched: Counter,
    failed: Counter,
}

const FETCHES: &str = "foobar_tls_ocsp_fetches_total";

impl Metrics {
    pub(crate) fn register() -> Self {
        crate::metric_help::describe();
        Self {
            fetched: metrics::counter!(FETCHES, "result" => "success"),
            failed: metrics::counter!(FETCHES, "result" => "failure"),
        }
    }
}

impl Staples {
    /// `key` with the response known for its certificate, if one is valid
    /// now (a reload keeps stapling).
    pub(crate) fn staple(&self, key: Arc<CertifiedKey>) -> Arc<CertifiedKey> {
        let Some(leaf) = key.cert.first() else {
            return key;
        };
        let known = lock(&self.by_cert);
        let valid = known
            .get(leaf.as_ref())
            .and_then(|k| k.response.as_ref())
            .filter(|(_, checked)| checked.expires > SystemTime::now());
        match valid {
            Some((bytes, _)) => with_staple(&key, Some(bytes.clone())),
            None => key,
        }
    }
}

fn with_staple(key: &CertifiedKey, ocsp: Option<Vec<u8>>) -> Arc<CertifiedKey> {
    let mut stapled = key.clone();
    stapled.ocsp = ocsp;
    Arc::new(stapled)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One pass over `slots`: fetch what is due, staple what is valid, take
/// off what expired. Returns the report and when the next pass is due.
pub(crate) async fn refresh(
    slots: &[Slot],
    staples: &Staples,
    fetcher: &Fetcher,
    metrics: &Metrics,
) -> (OcspReport, SystemTime) {
    let mut report = OcspReport::default();
    let mut next = SystemTime::now() + MAX_RETRY;
    for slot in slots {
        let Some(key) = slot.load_full() else {
            continue;
        };
        let target = key
            .cert
            .first()
            .zip(key.cert.get(1))
            .and_then(|(leaf, issuer)| {
                let leaf_fields = CertFields::parse(leaf.as_ref())?;
                let issuer_fields = CertFields::parse(issuer.as_ref())?;
                let url = leaf_fields.ocsp_url()?.to_owned();
                Some((
                    leaf.as_ref().to_vec(),
                    url,
                    CertId::new(&leaf_fields, &issuer_fields),
                ))
            });
        let Some((leaf, url, id)) = target else {
            report.unstapled += 1;
            continue;
        };
        let now = SystemTime::now();
        let due = lock(&staples.by_cert)
            .get(&leaf)
            .and_then(|k| k.next_attempt)
            .is_none_or(|at| now >= at);
        if due {
            let outcome = match fetcher.fetch(&url, id.request()).await {
                Ok(bytes) => check(&bytes, &id, SystemTime::now())
                    .map(|checked| (bytes, checked))
                    .map_err(|problem| problem.to_string()),
                Err(error) => Err(error.to_string()),
            };
            let now = SystemTime::now();
            let mut known = lock(&staples.by_cert);
            let entry = known.entry(leaf.clone()).or_default();
            match outcome {
                Ok((bytes, checked)) => {
                    metrics.fetched.increment(1);
                    report.fetched += 1;
                    entry.next_attempt = Some(checked.refresh_at().max(now + MIN_REFRESH));
                    entry.failures = 0;
                    tracing::debug!(%url, status = ?checked.status, "OCSP response fetched");
                    entry.response = Some((bytes, checked));
                }
                Err(error) => {
                    metrics.failed.increment(1);
                    report.failed += 1;
                    entry.failures = entry.failures.saturating_add(1);
                    let backoff = FIRST_RETRY
                        .saturating_mul(1 << entry.failures.saturating_sub(1).min(10))
                        .min(MAX_RETRY);
                    entry.next_attempt = Some(now + backoff);
                    tracing::warn!(%url, %error, "OCSP response not fetched; serving without a new one");
                }
            }
        }
        // Never staple an expired response.
        let now = SystemTime::now();
        let mut known = lock(&staples.by_cert);
        let entry = known.entry(leaf).or_default();
        if entry
            .response
            .as_ref()
            .is_some_and(|(_, checked)| checked.expires <= now)
        {
            entry.response = None;
        }
        let wanted = entry.response.as_ref().map(|(bytes, _)| bytes);
        if key.ocsp.as_ref() != wanted {
            let replacement = with_staple(&key, wanted.cloned());
            // A renewal swapped in meanwhile wins; the next pass staples it.
            slot.compare_and_swap(&key, Some(replacement));
        }
        if wanted.is_some() {
            report.stapled += 1;
        } else {
            report.unstapled += 1;
        }
        if let Some(at) = entry.next_attempt {
            next = next.min(at);
        }
        if let Some((_, checked)) = &entry.response {
            next = next.min(checked.expires);
        }
    }
    (report, next)
}
