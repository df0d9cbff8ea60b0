//! Status snapshots: what each component of an application reports about
//! itself, for `/status.json` and the status page.
//!
//! A component implements [`StatusSource`]; the admin listener renders every
//! source the application registers. A [`Snapshot`] is an envelope this
//! crate defines (kind, [`Health`], [`StatusEvent`]s) around a section the
//! component owns: its own data, serialized to JSON, and a [`View`] that
//! tells the page how to show it (facts next to the name, tables whose
//! columns point into the data). The page renders every source the same
//! way: it knows formats ([`Format`]), not components.
//!
//! ```
//! use foobar_core::status::{Format, Health, Snapshot, StatusSource, Table, View};
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct Queue { workers: Vec<Worker> }
//! #[derive(Serialize)]
//! struct Worker { id: String, health: Health, jobs_total: u64 }
//!
//! struct Jobs;
//! impl StatusSource for Jobs {
//!     fn name(&self) -> &str { "jobs" }
//!     fn snapshot(&self) -> Snapshot {
//!         let queue = Queue {
//!             workers: vec![Worker { id: "w1".into(), health: Health::Up, jobs_total: 7 }],
//!         };
//!         let view = View::new().table(
//!             Table::new("workers", "/workers")
//!                 .key("/id")
//!                 .health("/health")
//!                 .column("worker", "/id", Format::Text)
//!                 .column("health", "/health", Format::Health)
//!                 .column("jobs/s", "/jobs_total", Format::PerSecond)
//!                 .column("jobs", "/jobs_total", Format::Integer),
//!         );
//!         Snapshot::new("job queue", &queue).health(Health::Up).view(view)
//!     }
//! }
//! # let snapshot = Jobs.snapshot();
//! # assert_eq!(snapshot.data["workers"][0]["jobs_total"], 7);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Something that can describe its current state.
pub trait StatusSource: Send + Sync + 'static {
    /// A short name, unique within the application (`"lb"`, `"db"`).
    fn name(&self) -> &str;

    /// The current state. Called on every `/status.json` request: keep it
    /// cheap (read atomics and swapped state, no I/O).
    fn snapshot(&self) -> Snapshot;

    /// Whether this component can do its job (`/readyz`): e.g. at least one
    /// healthy backend, a known database writer.
    fn ready(&self) -> bool {
        true
    }
}

/// One component's state: the envelope every source shares, around the
/// component's own data and how to show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// What the component is, for people (`"load balancer"`, `"database"`).
    pub kind: Cow<'static, str>,
    /// The component's health as a whole.
    pub health: Health,
    /// Recent events, oldest first.
    pub events: Vec<StatusEvent>,
    /// The component's own data, as JSON.
    pub data: serde_json::Value,
    /// How the status page shows `data`. Empty, the page shows the JSON.
    pub view: View,
    /// Values every instance of this source across a fleet should agree on
    /// (a database pool's writer): the fleet view flags the instances that
    /// differ. Keyed by a short label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agreed: BTreeMap<String, String>,
}

impl Snapshot {
    /// A snapshot of a component of `kind` with `data` (any serializable
    /// value), of unknown health, with no events and an empty view.
    ///
    /// Data that cannot be serialized (a map with non-string keys) becomes
    /// `{"error": "<why>"}`, which the page shows.
    pub fn new(kind: impl Into<Cow<'static, str>>, data: &impl Serialize) -> Self {
        let data = serde_json::to_value(data)
            .unwrap_or_else(|error| serde_json::json!({ "error": error.to_string() }));
        Self {
            kind: kind.into(),
            health: Health::Unknown,
            events: Vec::new(),
            data,
            view: View::default(),
            agreed: BTreeMap::new(),
        }
    }

    /// Declares a value every instance of this source in a fleet should
    /// share (e.g. `agreed("writer", "10.0.0.3:3306")`); the fleet view
    /// flags instances that see another.
    #[must_use]
    pub fn agreed(mut self, label: impl Into<String>, value: impl Into<String>) -> Self {
        self.agreed.insert(label.into(), value.into());
        self
    }

    /// Sets the component's health.
    #[must_use]
    pub fn health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Sets the recent events, oldest first.
    #[must_use]
    pub fn events(mut self, events: Vec<StatusEvent>) -> Self {
        self.events = events;
        self
    }

    /// Sets how the page shows the data.
    #[must_use]
    pub fn view(mut self, view: View) -> Self {
        self.view = view;
        self
    }
}

/// Health of a component, a backend or a database host: the vocabulary of
/// the status page's health badges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Health {
    /// Passing checks, taking traffic.
    Up,
    /// Working, with parts down (some backends, a replica).
    Degraded,
    /// Failing checks, taking no traffic.
    Down,
    /// Finishing in-flight work, taking no new traffic.
    Draining,
    /// Taken out for a while after errors (outlier detection).
    Ejected,
    /// Reachable but avoided (e.g. a replica lagging too far behind).
    Shunned,
    /// Not checked yet.
    #[default]
    Unknown,
}

impl Health {
    /// The lower-case name, as serialized (`"up"`, `"shunned"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Draining => "draining",
            Self::Ejected => "ejected",
            Self::Shunned => "shunned",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notable transition: a failover, an ejection, a backend going down.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatusEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// A short machine-readable kind (`"failover"`, `"ejected"`, `"down"`);
    /// the page shows it with spaces for underscores.
    pub kind: Cow<'static, str>,
    /// What happened, a sentence for people (`"10.0.0.3:8080 failed 3
    /// health checks"`), not debug output.
    pub message: String,
}

impl StatusEvent {
    /// An event that happens now.
    pub fn now(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            at_unix_ms,
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// How the status page shows a component's data: facts next to its name,
/// then tables. Values are found by JSON pointers (RFC 6901, `"/a/0/b"`)
/// into the data, or into a row for table columns.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct View {
    /// Short facts shown next to the name (`policy: p2c_ewma`).
    pub facts: Vec<Field>,
    /// Tables, in order.
    pub tables: Vec<Table>,
}

impl View {
    /// An empty view: the page shows the data as JSON.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a fact: `label` and the value at `pointer`, shown as `format`.
    #[must_use]
    pub fn fact(
        mut self,
        label: impl Into<Cow<'static, str>>,
        pointer: impl Into<Cow<'static, str>>,
        format: Format,
    ) -> Self {
        self.facts.push(Field::new(label, pointer, format));
        self
    }

    /// Adds a table.
    #[must_use]
    pub fn table(mut self, table: Table) -> Self {
        self.tables.push(table);
        self
    }
}

/// A table of the status page: one row per element of an array in the data.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Table {
    /// The table's title (`"backends"`).
    pub title: Cow<'static, str>,
    /// Pointer to the array of rows in the data (`"/backends"`).
    pub rows: Cow<'static, str>,
    /// Pointer, within a row, to what names it (`"/id"`): rates derived
    /// from counters are tracked by it, and tests find rows by it.
    pub key: Option<Cow<'static, str>>,
    /// Pointer, within a row, to its [`Health`]: rows not `up` are marked.
    pub health: Option<Cow<'static, str>>,
    /// The columns, left to right; pointers are within a row.
    pub columns: Vec<Field>,
}

impl Table {
    /// A table titled `title` over the array at `rows`, with no columns.
    pub fn new(title: impl Into<Cow<'static, str>>, rows: impl Into<Cow<'static, str>>) -> Self {
        Self {
            title: title.into(),
            rows: rows.into(),
            key: None,
            health: None,
            columns: Vec::new(),
        }
    }

    /// Names rows by the value at `pointer` within each row.
    #[must_use]
    pub fn key(mut self, pointer: impl Into<Cow<'static, str>>) -> Self {
        self.key = Some(pointer.into());
        self
    }

    /// Marks rows whose value at `pointer` is a health other than `up`.
    #[must_use]
    pub fn health(mut self, pointer: impl Into<Cow<'static, str>>) -> Self {
        self.health = Some(pointer.into());
        self
    }

    /// Adds a column: `label` and the value at `pointer` within each row,
    /// shown as `format`.
    #[must_use]
    pub fn column(
        mut self,
        label: impl Into<Cow<'static, str>>,
        pointer: impl Into<Cow<'static, str>>,
        format: Format,
    ) -> Self {
        self.columns.push(Field::new(label, pointer, format));
        self
    }
}

/// A labelled value of a [`View`]: a fact or a table column.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Field {
    /// What the value is, for people (`"p99"`, `"lag"`).
    pub label: Cow<'static, str>,
    /// JSON pointer to the value (`"/latency_p99_seconds"`).
    pub pointer: Cow<'static, str>,
    /// How to show it.
    pub format: Format,
}

impl Field {
    /// `label`, the value at `pointer`, shown as `format`.
    pub fn new(
        label: impl Into<Cow<'static, str>>,
        pointer: impl Into<Cow<'static, str>>,
        format: Format,
    ) -> Self {
        Self {
            label: label.into(),
            pointer: pointer.into(),
            format,
        }
    }
}

/// How the page shows a value. A missing or `null` value shows as `–`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Format {
    /// As text.
    Text,
    /// Text set off as a label (a role: `primary`, `replica`).
    Tag,
    /// A whole number, right-aligned.
    Integer,
    /// A number with this many decimals.
    Decimal {
        /// Digits after the point.
        decimals: u8,
    },
    /// A [`Health`] badge.
    Health,
    /// A duration given in seconds, shown in ms below one second.
    Seconds,
    /// A ratio (0 to 1) shown as a percentage.
    Percent,
    /// A byte count shown in KiB, MiB, GiB.
    Bytes,
    /// A mark when `true`, nothing when `false`.
    Flag,
    /// A counter (a total since start) shown as its rate per second,
    /// derived from successive snapshots.
    PerSecond,
    /// A counter's recent rate per second, as a sparkline.
    RateHistory,
    /// A counter's rate as a share of another counter's rate (errors of
    /// requests), as a percentage.
    ShareOf {
        /// Pointer (within the same row) to the counter of the whole.
        whole: Cow<'static, str>,
    },
    /// A level out of a capacity (connections in use of the pool's size),
    /// as `n/m` with a bar.
    FillOf {
        /// Pointer (within the same row) to the capacity.
        capacity: Cow<'static, str>,
    },
}

impl Format {
    /// [`Format::ShareOf`] the counter at `whole`.
    pub fn share_of(whole: impl Into<Cow<'static, str>>) -> Self {
        Self::ShareOf {
            whole: whole.into(),
        }
    }

    /// [`Format::FillOf`] the capacity at `capacity`.
    pub fn fill_of(capacity: impl Into<Cow<'static, str>>) -> Self {
        Self::FillOf {
            capacity: capacity.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Pool {
        hosts: Vec<&'static str>,
    }

    #[test]
    fn snapshot_serializes_envelope_data_and_view() {
        let snapshot = Snapshot::new("database", &Pool { hosts: vec!["a"] })
            .health(Health::Degraded)
            .events(vec![StatusEvent::now("down", "a is down")])
            .view(
                View::new().fact("hosts", "/hosts/0", Format::Text).table(
                    Table::new("hosts", "/hosts")
                        .key("")
                        .column("lag", "/lag", Format::Seconds)
                        .column("errors", "/errors", Format::share_of("/queries")),
                ),
            );
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["kind"], "database");
        assert_eq!(json["health"], "degraded");
        assert_eq!(json["events"][0]["kind"], "down");
        assert_eq!(json["data"]["hosts"][0], "a");
        assert_eq!(json["view"]["facts"][0]["format"]["type"], "text");
        let errors = &json["view"]["tables"][0]["columns"][1];
        assert_eq!(errors["format"]["type"], "share_of");
        assert_eq!(errors["format"]["whole"], "/queries");
        let back: Snapshot = serde_json::from_value(json).unwrap();
        assert_eq!(
            back.view.tables[0].columns[1].format,
            Format::share_of("/queries")
        );
        assert_eq!(back.health, Health::Degraded);
    }

    #[test]
    fn unserializable_data_becomes_an_error_value() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3);
        let snapshot = Snapshot::new("odd", &map);
        assert!(snapshot.data["error"].is_string(), "{:?}", snapshot.data);
    }

    #[test]
    fn health_reads_as_it_serializes() {
        for health in [Health::Up, Health::Shunned, Health::Unknown] {
            let json = serde_json::to_value(health).unwrap();
            assert_eq!(json, health.to_string());
        }
    }
}
