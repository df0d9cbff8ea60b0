//! Bringing a set to a discovered list: add what is new, re-weight what
//! changed, drain what is gone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::DiscoveredBackend;
use crate::backend::{Backend, BackendConfig};
use crate::backends::Backends;
use crate::error::Error;
use crate::policy::Policy;

/// What one list changed in the set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Backends added (or re-added while they were draining).
    pub added: Vec<String>,
    /// Backends whose weight changed.
    pub reweighted: Vec<String>,
    /// Backends now draining, removed once idle.
    pub drained: Vec<String>,
}

impl SyncReport {
    /// Whether the list changed nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.reweighted.is_empty() && self.drained.is_empty()
    }
}

/// Brings `backends` to `wanted`, making each new backend's service with
/// `make`. Every new service is made before anything changes, so an error
/// leaves the set as it was. New backends are added before gone ones are
/// drained, so a replaced set never passes through empty.
pub(crate) fn sync<S, P, F>(
    backends: &Backends<S, P>,
    wanted: &[DiscoveredBackend],
    mut make: F,
) -> Result<SyncReport, Error>
where
    S: Clone + Send + Sync + 'static,
    P: Policy,
    F: FnMut(&DiscoveredBackend) -> Result<(BackendConfig, S), Error>,
{
    let mut seen = HashSet::new();
    for backend in wanted {
        if !seen.insert(backend.url()) {
            return Err(Error::DuplicateBackend(backend.url().to_owned()));
        }
    }
    let current: HashMap<String, Arc<Backend>> = backends
        .list()
        .into_iter()
        .map(|backend| (backend.id().to_owned(), backend))
        .collect();

    let mut report = SyncReport::default();
    let mut new = Vec::new();
    let mut reweight = Vec::new();
    for backend in wanted {
        match current.get(backend.url()) {
            Some(known) if !known.is_draining() => {
                if known.weight() != backend.weight() {
                    reweight.push(backend);
                }
            }
            // New, or draining and listed again: a fresh backend.
            known => {
                let (config, service) = make(backend)?;
                new.push((known.cloned(), config, service));
            }
        }
    }

    for (draining, config, service) in new {
        if let Some(draining) = draining {
            backends.remove_if_same(&draining);
        }
        report.added.push(config.id().to_owned());
        backends.add(config, service)?;
    }
    for backend in reweight {
        backends.set_weight(backend.url(), backend.weight())?;
        report.reweighted.push(backend.url().to_owned());
    }
    for (id, backend) in &current {
        if seen.contains(id.as_str()) || backend.is_draining() {
            continue;
        }
        let idle = backends.drain(id)?;
        report.drained.push(id.clone());
        let set = backends.clone();
        let backend = backend.clone();
        let shutdown = backends.shutdown_signal().clone();
        tokio::spawn(async move {
            tokio::select! {
                () = idle => {}
                () = shutdown.wait() => {}
            }
            set.remove_if_same(&backend);
        });
    }
    Ok(report)
}
