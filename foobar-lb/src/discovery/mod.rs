//! Discovered backends: a [`Discovery`] source lists the backends that
//! should be in a set, and the set follows it at run time.
//!
//! Each list a source produces is complete (not a diff). The set follows it
//! with its own add, re-weight and drain:
//! - a backend new to the list is added (it takes traffic at once);
//! - a changed weight is applied in place (its state is kept);
//! - a backend gone from the list is drained: no new requests, and it is
//!   removed once its in-flight requests (and response bodies) are done,
//!   so no request is cut off by a change;
//! - a list that cannot be used (a file that does not parse, a bad URL, a
//!   failed resolution) changes nothing: the old set stays, and the error
//!   is logged, counted and kept on the [`DiscoveryHandle`].
//!
//! Sources: `FileSource` (a watched TOML or JSON file, feature
//! `discovery`) and `DnsSource` (A/AAAA or SRV records, resolved again
//! when their TTL runs out, feature `dns`), both followed with
//! [`Proxy::discover`](crate::Proxy::discover). Any other source
//! implements [`Discovery`]; a list can also be applied by hand:
//!
//! ```
//! use foobar_lb::{discovery::DiscoveredBackend, policy::ConsistentHash, Proxy};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), foobar_lb::Error> {
//! let proxy = Proxy::builder(ConsistentHash::new()).build()?;
//! proxy.sync_backends(&[
//!     DiscoveredBackend::new("http://10.0.0.11:8080", 2),
//!     DiscoveredBackend::new("http://10.0.0.12:8080", 1),
//! ])?;
//! // web2 is gone: drained, then removed once idle.
//! let report = proxy.sync_backends(&[DiscoveredBackend::new("http://10.0.0.11:8080", 2)])?;
//! assert_eq!(report.drained, ["http://10.0.0.12:8080"]);
//! # Ok(()) }
//! ```
//!
//! Placement with [`ConsistentHash`](crate::policy::ConsistentHash)
//! depends only on the backends' ids (their URLs) and weights, so several
//! load balancers following the same source send each key to the same
//! backend.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `foobar_lb_discovery_updates_total` | counter | `set`, `result` (`applied`, `rejected`) |

mod apply;
#[cfg(feature = "dns")]
mod dns;
mod error;
#[cfg(feature = "discovery")]
mod file;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use self::apply::SyncReport;
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use self::dns::DnsSource;
pub use self::error::DiscoveryError;
#[cfg(feature = "discovery")]
#[cfg_attr(docsrs, doc(cfg(feature = "discovery")))]
pub use self::file::{FileFormat, FileSource};

/// One backend as a source lists it: its URL (`http://host:port` or
/// `https://host:port`, also its id in the set) and its weight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DiscoveredBackend {
    url: String,
    weight: u32,
}

impl DiscoveredBackend {
    /// A backend at `url` with `weight` (0: in the set, no new requests).
    pub fn new(url: impl Into<String>, weight: u32) -> Self {
        let url: String = url.into();
        Self {
            url: url.trim().to_owned(),
            weight,
        }
    }

    /// Its URL, also its id in the set.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }
}

/// A source of backend lists.
pub trait Discovery: Send + 'static {
    /// A name for logs and the handle (a path, a DNS name).
    fn name(&self) -> String;

    /// The next complete list: the current one on the first call, then one
    /// each time it changes (a source may also repeat an unchanged list).
    /// `None` when the source has ended.
    fn next(
        &mut self,
    ) -> impl Future<Output = Option<Result<Vec<DiscoveredBackend>, DiscoveryError>>> + Send;
}

/// What a running discovery has done; cheap to clone.
#[derive(Clone, Debug)]
pub struct DiscoveryHandle {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    name: String,
    applied: AtomicU64,
    rejected: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_report: Mutex<Option<SyncReport>>,
    applied_counter: metrics::Counter,
    rejected_counter: metrics::Counter,
}

impl DiscoveryHandle {
    pub(crate) fn new(name: String, set: &str) -> Self {
        let counter = |result: &'static str| {
            metrics::counter!(
                "foobar_lb_discovery_updates_total",
                "set" => set.to_owned(),
                "result" => result
            )
        };
        Self {
            state: Arc::new(State {
                name,
                applied: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                last_error: Mutex::new(None),
                last_report: Mutex::new(None),
                applied_counter: counter("applied"),
                rejected_counter: counter("rejected"),
            }),
        }
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Lists applied to the set so far.
    pub fn applied(&self) -> u64 {
        self.state.applied.load(Ordering::Acquire)
    }

    /// Lists rejected so far (the set was left as it was).
    pub fn rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::Acquire)
    }

    /// The error of the last rejected list, until a list is applied.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.state.last_error).clone()
    }

    /// What the last applied list changed.
    pub fn last_report(&self) -> Option<SyncReport> {
        lock(&self.state.last_report).clone()
    }

    pub(crate) fn record_applied(&self, report: SyncReport) {
        *lock(&self.state.last_error) = None;
        *lock(&self.state.last_report) = Some(report);
        self.state.applied_counter.increment(1);
        self.state.applied.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn record_rejected(&self, error: &dyn std::fmt::Display) {
        tracing::error!(source = %self.state.name, %error, "backend list rejected; the set is unchanged");
        *lock(&self.state.last_error) = Some(error.to_string());
        self.state.rejected_counter.increment(1);
        self.state.rejected.fetch_add(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) use self::apply::sync;

/// Applies each list `source` produces with `apply`, in a background task,
/// until `shutdown` fires or the source ends.
pub(crate) fn follow<D, F>(
    mut source: D,
    set: &str,
    shutdown: foobar_core::Shutdown,
    mut apply: F,
) -> DiscoveryHandle
where
    D: Discovery,
    F: FnMut(&[DiscoveredBackend]) -> Result<SyncReport, crate::Error> + Send + 'static,
{
    let handle = DiscoveryHandle::new(source.name(), set);
    let state = handle.clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = source.next() => next,
                () = shutdown.wait() => return,
            };
            match next {
                None => return,
                Some(Err(error)) => state.record_rejected(&error),
                Some(Ok(wanted)) => match apply(&wanted) {
                    Ok(report) => {
                        if !report.is_empty() {
                            tracing::info!(
                                source = %state.name(),
                                added = ?report.added,
                                reweighted = ?report.reweighted,
                                drained = ?report.drained,
                                "backend list applied"
                            );
                        }
                        state.record_applied(report);
                    }
                    Err(error) => state.record_rejected(&DiscoveryError::Rejected {
                        source_name: state.name().to_owned(),
                        error: Box::new(error),
                    }),
                },
            }
        }
    });
    handle
}
