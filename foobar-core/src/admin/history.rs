//! Rates of the counters the status sources' views show as rates, sampled
//! on the monitor's tick: the page shows rates and sparklines from its
//! first poll instead of building them up while it stays open.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::status::{Format, StatusSource, Table};

/// Samples kept per counter: two minutes at the default 1 s tick.
const HISTORY: usize = 120;

/// The window of the rate shown as a number.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// One counter's recent rate, as `/status.json` carries it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(super) struct CounterRate {
    /// Per second, over the last ten seconds (or what there is).
    pub(super) per_second: Option<f64>,
    /// Per second between successive ticks, oldest first.
    pub(super) history: Vec<f64>,
}

/// Rates by table title, row key and counter pointer.
pub(super) type SourceRates = BTreeMap<String, BTreeMap<String, BTreeMap<String, CounterRate>>>;

/// Which counter of which row of which table of which source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Series {
    source: String,
    table: String,
    row: String,
    pointer: String,
}

#[derive(Debug, Default)]
struct Ring {
    samples: VecDeque<(Instant, f64)>,
    /// Seen on the last tick; series of rows that went away are dropped.
    seen: bool,
}

/// The sources to sample and their counters' samples.
#[derive(Default)]
pub(super) struct RateHistory {
    sources: Mutex<Vec<Arc<dyn StatusSource>>>,
    series: Mutex<HashMap<Series, Ring>>,
}

impl std::fmt::Debug for RateHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateHistory")
            .field("series", &lock(&self.series).len())
            .finish_non_exhaustive()
    }
}

impl RateHistory {
    pub(super) fn add_source(&self, source: Arc<dyn StatusSource>) {
        lock(&self.sources).push(source);
    }

    /// Takes one sample of every counter shown as a rate.
    pub(super) fn sample(&self) {
        self.sample_at(Instant::now());
    }

    fn sample_at(&self, now: Instant) {
        let sources = lock(&self.sources).clone();
        let mut series = lock(&self.series);
        for ring in series.values_mut() {
            ring.seen = false;
        }
        for source in &sources {
            let snapshot = source.snapshot();
            for table in &snapshot.view.tables {
                for_each_counter(table, &snapshot.data, |row, pointer, value| {
                    let key = Series {
                        source: source.name().to_owned(),
                        table: table.title.to_string(),
                        row: row.to_owned(),
                        pointer: pointer.to_owned(),
                    };
                    let ring = series.entry(key).or_default();
                    if ring.samples.len() == HISTORY + 1 {
                        ring.samples.pop_front();
                    }
                    ring.samples.push_back((now, value));
                    ring.seen = true;
                });
            }
        }
        series.retain(|_, ring| ring.seen);
    }

    /// The rates of `source`'s counters.
    pub(super) fn rates(&self, source: &str) -> SourceRates {
        let series = lock(&self.series);
        let mut out = SourceRates::new();
        for (key, ring) in series.iter().filter(|(key, _)| key.source == source) {
            out.entry(key.table.clone())
                .or_default()
                .entry(key.row.clone())
                .or_default()
                .insert(key.pointer.clone(), rate_of(&ring.samples));
        }
        out
    }
}

/// Calls `f(row key, pointer, value)` for every counter of `table`'s rows
/// that a column shows as a rate.
fn for_each_counter(table: &Table, data: &Value, mut f: impl FnMut(&str, &str, f64)) {
    let mut pointers: Vec<&str> = Vec::new();
    for column in &table.columns {
        match &column.format {
            Format::PerSecond | Format::RateHistory => pointers.push(&column.pointer),
            Format::ShareOf { whole } => {
                pointers.push(&column.pointer);
                pointers.push(whole);
            }
            _ => {}
        }
    }
    if pointers.is_empty() {
        return;
    }
    pointers.sort_unstable();
    pointers.dedup();
    let Some(rows) = data.pointer(&table.rows).and_then(Value::as_array) else {
        return;
    };
    for (index, row) in rows.iter().enumerate() {
        let key = row_key(table, row, index);
        for pointer in &pointers {
            if let Some(value) = row.pointer(pointer).and_then(Value::as_f64) {
                f(&key, pointer, value);
            }
        }
    }
}

/// What names a row, as the page computes it: the value at the table's key
/// pointer (a string as is, anything else as JSON), or its position.
fn row_key(table: &Table, row: &Value, index: usize) -> String {
    match table.key.as_deref().map(|pointer| row.pointer(pointer)) {
        Some(Some(Value::String(key))) => key.clone(),
        Some(Some(other)) => other.to_string(),
        Some(None) => "undefined".to_owned(),
        None => index.to_string(),
    }
}

fn rate_of(samples: &VecDeque<(Instant, f64)>) -> CounterRate {
    let history = samples
        .iter()
        .zip(samples.iter().skip(1))
        .map(|(a, b)| per_second(*a, *b).unwrap_or(0.0))
        .collect();
    let per_second = samples.back().and_then(|newest| {
        let start = samples
            .iter()
            .rev()
            .find(|(at, _)| newest.0.duration_since(*at) >= RATE_WINDOW)
            .or_else(|| samples.front())?;
        per_second(*start, *newest)
    });
    CounterRate {
        per_second,
        history,
    }
}

/// The rate between two samples; none over no time or across a reset.
fn per_second(from: (Instant, f64), to: (Instant, f64)) -> Option<f64> {
    let seconds = to.0.duration_since(from.0).as_secs_f64();
    (seconds > 0.0 && to.1 >= from.1).then(|| (to.1 - from.1) / seconds)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Samples stay consistent at every step; a panic elsewhere must not
    // take the status page with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::status::{Snapshot, View};

    /// Two rows whose counter grows by 10 and 0 per sample.
    struct Counting(AtomicU64);

    impl StatusSource for Counting {
        fn name(&self) -> &str {
            "lb"
        }
        fn snapshot(&self) -> Snapshot {
            let n = self.0.fetch_add(10, Ordering::Relaxed);
            let data = serde_json::json!({
                "rows": [{ "id": "a", "total": n, "failed": 0 }, { "id": "b", "total": 5, "failed": 0 }],
            });
            let view = View::new().table(
                Table::new("rows", "/rows")
                    .key("/id")
                    .column("id", "/id", Format::Text)
                    .column("per s", "/total", Format::PerSecond)
                    .column("failed", "/failed", Format::share_of("/total")),
            );
            Snapshot::new("test", &data).view(view)
        }
    }

    #[test]
    fn counters_shown_as_rates_get_a_rate_and_a_history() {
        let history = RateHistory::default();
        history.add_source(Arc::new(Counting(AtomicU64::new(0))));
        let start = Instant::now();
        for second in 0..=20 {
            history.sample_at(start + Duration::from_secs(second));
        }
        let rates = history.rates("lb");
        let a = &rates["rows"]["a"]["/total"];
        assert_eq!(a.per_second, Some(10.0));
        assert_eq!(a.history.len(), 20);
        assert!(a.history.iter().all(|r| *r == 10.0));
        assert_eq!(rates["rows"]["b"]["/total"].per_second, Some(0.0));
        assert_eq!(rates["rows"]["a"]["/failed"].per_second, Some(0.0));
        assert!(!rates["rows"]["a"].contains_key("/id"));
        assert!(history.rates("other").is_empty());
    }

    #[test]
    fn a_counter_reset_is_no_rate_and_the_history_is_capped() {
        let mut samples = VecDeque::new();
        let start = Instant::now();
        samples.push_back((start, 100.0));
        samples.push_back((start + Duration::from_secs(1), 3.0));
        let rate = rate_of(&samples);
        assert_eq!(rate.per_second, None);
        assert_eq!(rate.history, vec![0.0]);

        let history = RateHistory::default();
        history.add_source(Arc::new(Counting(AtomicU64::new(0))));
        for second in 0..500 {
            history.sample_at(start + Duration::from_secs(second));
        }
        assert_eq!(
            history.rates("lb")["rows"]["a"]["/total"].history.len(),
            HISTORY
        );
    }
}
