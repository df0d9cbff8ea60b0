//! The `/status.json` document.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

use crate::monitor::{Monitor, MonitorSnapshot, PushHandle, PushStats};
use crate::status::{Snapshot, StatusSource};

#[derive(Serialize)]
struct Document<'a> {
    generated_at_unix_ms: u64,
    ready: bool,
    sources: Vec<SourceEntry<'a>>,
    monitor: Option<MonitorSnapshot>,
    pushes: Vec<PushStats>,
}

#[derive(Serialize)]
struct SourceEntry<'a> {
    name: &'a str,
    ready: bool,
    snapshot: Snapshot,
}

pub(super) fn render(
    sources: &[Arc<dyn StatusSource>],
    monitor: Option<&Monitor>,
    pushes: &[PushHandle],
) -> Bytes {
    let sources: Vec<SourceEntry<'_>> = sources
        .iter()
        .map(|s| SourceEntry {
            name: s.name(),
            ready: s.ready(),
            snapshot: s.snapshot(),
        })
        .collect();
    let document = Document {
        generated_at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ready: sources.iter().all(|s| s.ready),
        sources,
        monitor: monitor.map(Monitor::snapshot),
        pushes: pushes.iter().map(PushHandle::stats).collect(),
    };
    match serde_json::to_vec(&document) {
        Ok(json) => Bytes::from(json),
        // Only non-finite floats can fail here; say so rather than panic.
        Err(error) => Bytes::from(serde_json::json!({ "error": error.to_string() }).to_string()),
    }
}
