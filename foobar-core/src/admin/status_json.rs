//! The `/status.json` document.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

use super::Admin;
#[cfg(feature = "monitor")]
use crate::monitor::{Monitor, MonitorSnapshot};
#[cfg(feature = "push")]
use crate::monitor::{PushHandle, PushStats};
use crate::status::Snapshot;

#[derive(Serialize)]
struct Document<'a> {
    generated_at_unix_ms: u64,
    ready: bool,
    sources: Vec<SourceEntry<'a>>,
    #[cfg(feature = "monitor")]
    monitor: Option<MonitorSnapshot>,
    #[cfg(feature = "push")]
    pushes: Vec<PushStats>,
}

#[derive(Serialize)]
struct SourceEntry<'a> {
    name: &'a str,
    ready: bool,
    snapshot: Snapshot,
    /// Rates of the counters the view shows as rates, when a monitor
    /// samples them.
    #[cfg(feature = "monitor")]
    #[serde(skip_serializing_if = "Option::is_none")]
    rates: Option<super::history::SourceRates>,
}

pub(super) fn render(admin: &Admin) -> Bytes {
    match serde_json::to_vec(&build(admin)) {
        Ok(json) => Bytes::from(json),
        // Only non-finite floats can fail here; say so rather than panic.
        Err(error) => Bytes::from(serde_json::json!({ "error": error.to_string() }).to_string()),
    }
}

/// The document as a JSON value (for the fleet view).
pub(super) fn document(admin: &Admin) -> serde_json::Value {
    serde_json::to_value(build(admin))
        .unwrap_or_else(|error| serde_json::json!({ "error": error.to_string() }))
}

fn build(admin: &Admin) -> Document<'_> {
    let sources: Vec<SourceEntry<'_>> = admin
        .sources
        .iter()
        .map(|s| SourceEntry {
            name: s.name(),
            ready: s.ready(),
            snapshot: s.snapshot(),
            #[cfg(feature = "monitor")]
            rates: admin.history.as_ref().map(|h| h.rates(s.name())),
        })
        .collect();
    Document {
        generated_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ready: sources.iter().all(|s| s.ready),
        sources,
        #[cfg(feature = "monitor")]
        monitor: admin.monitor.as_ref().map(Monitor::snapshot),
        #[cfg(feature = "push")]
        pushes: admin.pushes.iter().map(PushHandle::stats).collect(),
    }
}
