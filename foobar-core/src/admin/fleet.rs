//! The fleet view: other admin listeners (peers) whose status this one
//! shows beside its own, on `/fleet` and `/fleet.json`.
//!
//! A background task fetches every peer's `/status.json` on an interval
//! (2 s by default, each under a timeout of 1 s) and keeps the last answer;
//! the admin listener serves what it has, so a slow or dead peer never
//! slows the page: it is shown as unreachable, with the error. Values that
//! sources declare as agreed across a fleet ([`Snapshot::agreed`], e.g. a
//! database pool's writer) are compared between every instance of the same
//! source, and differences are listed as disagreements.
//!
//! [`Snapshot::agreed`]: crate::status::Snapshot::agreed

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::Value;

use crate::Shutdown;

/// Why a fleet could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// A peer's URL is not `http://host:port`.
    #[error("peer {name:?}: invalid admin URL {url:?} (expected http://host:port)")]
    InvalidUrl {
        /// The peer's name.
        name: String,
        /// The URL as given.
        url: String,
    },
    /// The stack file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The stack file is not JSON.
    #[error("{path}: not JSON: {source}")]
    Json {
        /// The file.
        path: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Peers of an admin listener: other admin listeners of the same fleet (the
/// other load balancers, the web servers). Give it to
/// [`Admin::with_fleet`](super::Admin::with_fleet) and
/// [`start`](Self::start) it.
///
/// ```no_run
/// use foobar_core::admin::{Admin, Fleet};
/// use foobar_core::metrics::PrometheusExporter;
/// use foobar_core::Shutdown;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let shutdown = Shutdown::on_signals();
/// let fleet = Fleet::new()
///     .peer("lb2", "http://10.0.0.2:9090")?
///     .peer("web1", "http://10.0.0.11:9090")?
///     .start(&shutdown);
/// let admin = Admin::new(PrometheusExporter::install()?).with_fleet(fleet);
/// # let _ = admin;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Fleet {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    peers: Vec<Peer>,
    token: Option<String>,
    interval: Duration,
    timeout: Duration,
    states: Mutex<Vec<PeerState>>,
}

#[derive(Clone, Debug)]
struct Peer {
    name: String,
    url: String,
}

/// What the fleet view knows of one peer.
#[derive(Clone, Debug, Serialize)]
struct PeerState {
    name: String,
    url: String,
    reachable: bool,
    /// Why the last fetch failed (or "not asked yet").
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// When it was last asked, in milliseconds since the Unix epoch.
    checked_at_unix_ms: u64,
    /// Its `/status.json`, from the last successful fetch.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Value>,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    /// A fleet with no peers, polled every 2 s with a 1 s timeout.
    pub fn new() -> Self {
        Self::from_parts(
            Vec::new(),
            None,
            Duration::from_secs(2),
            Duration::from_secs(1),
        )
    }

    fn from_parts(
        peers: Vec<Peer>,
        token: Option<String>,
        interval: Duration,
        timeout: Duration,
    ) -> Self {
        let states = peers
            .iter()
            .map(|peer| PeerState {
                name: peer.name.clone(),
                url: peer.url.clone(),
                reachable: false,
                error: Some("not asked yet".to_owned()),
                checked_at_unix_ms: 0,
                status: None,
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                peers,
                token,
                interval,
                timeout,
                states: Mutex::new(states),
            }),
        }
    }

    fn rebuild(
        self,
        change: impl FnOnce(&mut Vec<Peer>, &mut Option<String>, &mut Duration, &mut Duration),
    ) -> Self {
        let inner = &self.inner;
        let (mut peers, mut token, mut interval, mut timeout) = (
            inner.peers.clone(),
            inner.token.clone(),
            inner.interval,
            inner.timeout,
        );
        change(&mut peers, &mut token, &mut interval, &mut timeout);
        Self::from_parts(peers, token, interval, timeout)
    }

    /// Adds a peer: its name on the page and its admin listener's base URL
    /// (`http://host:port`; `/status.json` is fetched from it).
    ///
    /// # Errors
    /// [`FleetError::InvalidUrl`] if the URL is not plain `http://`.
    pub fn peer(self, name: impl Into<String>, url: impl Into<String>) -> Result<Self, FleetError> {
        let (name, url) = (name.into(), url.into());
        let base = url.trim().trim_end_matches('/').to_owned();
        let valid = base
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
            && base.parse::<http::Uri>().is_ok();
        if !valid {
            return Err(FleetError::InvalidUrl { name, url });
        }
        Ok(self.rebuild(|peers, _, _, _| peers.push(Peer { name, url: base })))
    }

    /// Adds every admin listener a stack file names (the `stack.json` the
    /// stack example writes, or any JSON document): each field named
    /// `admin` or ending in `_admin` whose value is an address
    /// (`127.0.0.1:9090`) is a peer, named by its object's `name` field, or
    /// else by the field's name. Addresses in `skip` (this listener's own)
    /// are left out.
    ///
    /// # Errors
    /// [`FleetError::Read`] or [`FleetError::Json`].
    pub fn peers_from_stack_file(
        mut self,
        path: impl AsRef<Path>,
        skip: &[std::net::SocketAddr],
    ) -> Result<Self, FleetError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let document: Value = serde_json::from_str(&text).map_err(|source| FleetError::Json {
            path: path.display().to_string(),
            source,
        })?;
        let mut found = Vec::new();
        collect_admins(&document, &mut found);
        for (name, addr) in unique_admins(found) {
            if skip.contains(&addr) {
                continue;
            }
            self = self.peer(name, format!("http://{addr}"))?;
        }
        Ok(self)
    }

    /// Sends `Authorization: Bearer <token>` to the peers.
    #[must_use]
    pub fn bearer_token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.rebuild(|_, t, _, _| *t = Some(token))
    }

    /// How often the peers are asked (default 2 s) and how long each
    /// answer may take (default 1 s).
    #[must_use]
    pub fn interval(self, every: Duration, timeout: Duration) -> Self {
        self.rebuild(|_, _, interval, t| {
            *interval = every.max(Duration::from_millis(10));
            *t = timeout.max(Duration::from_millis(1));
        })
    }

    /// The peers' names, in order.
    pub fn peer_names(&self) -> Vec<String> {
        self.inner.peers.iter().map(|p| p.name.clone()).collect()
    }

    /// Starts asking the peers, in a background task that ends with
    /// `shutdown`. Must be called inside a Tokio runtime.
    #[must_use]
    pub fn start(self, shutdown: &Shutdown) -> Self {
        let inner = self.inner.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let client: Client<HttpConnector, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let mut tick = tokio::time::interval(inner.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = shutdown.wait() => return,
                }
                let mut asks = tokio::task::JoinSet::new();
                for (index, peer) in inner.peers.iter().enumerate() {
                    let (client, peer, inner) = (client.clone(), peer.clone(), inner.clone());
                    asks.spawn(async move { (index, fetch(&client, &peer, &inner).await) });
                }
                while let Some(Ok((index, result))) = asks.join_next().await {
                    let mut states = lock(&inner.states);
                    let state = &mut states[index];
                    state.checked_at_unix_ms = now_ms();
                    match result {
                        Ok(status) => {
                            state.reachable = true;
                            state.error = None;
                            state.status = Some(status);
                        }
                        Err(error) => {
                            state.reachable = false;
                            state.error = Some(error);
                        }
                    }
                }
            }
        });
        self
    }

    /// The `/fleet.json` document, with this listener's own status.
    pub(super) fn document(&self, own: &Value) -> Value {
        let peers = lock(&self.inner.states).clone();
        let mut instances: Vec<(&str, &Value)> = vec![("this", own)];
        for peer in &peers {
            if let (true, Some(status)) = (peer.reachable, &peer.status) {
                instances.push((&peer.name, status));
            }
        }
        let disagreements = disagreements(&instances);
        serde_json::json!({
            "generated_at_unix_ms": now_ms(),
            "this": own,
            "peers": peers,
            "disagreements": disagreements,
        })
    }
}

/// Fetches one peer's `/status.json`.
async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    peer: &Peer,
    inner: &Inner,
) -> Result<Value, String> {
    let mut request = Request::get(format!("{}/status.json", peer.url))
        .body(Empty::new())
        .map_err(|error| error.to_string())?;
    if let Some(token) = &inner.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the bearer token is not a valid header value".to_owned())?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let answer = tokio::time::timeout(inner.timeout, async {
        let response = client.request(request).await.map_err(|error| {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| error.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        serde_json::from_slice::<Value>(&body).map_err(|error| format!("not JSON: {error}"))
    })
    .await;
    answer.unwrap_or_else(|_| Err(format!("no answer within {:?}", inner.timeout)))
}

/// For every source name and agreed label, the instances' values when they
/// are not all the same.
fn disagreements(instances: &[(&str, &Value)]) -> Vec<Value> {
    // (source, label) -> value -> instances
    let mut seen: BTreeMap<(String, String), BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (instance, status) in instances {
        let Some(sources) = status.get("sources").and_then(Value::as_array) else {
            continue;
        };
        for source in sources {
            let name = source.get("name").and_then(Value::as_str).unwrap_or("?");
            let Some(agreed) = source
                .pointer("/snapshot/agreed")
                .and_then(Value::as_object)
            else {
                continue;
            };
            for (label, value) in agreed {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                seen.entry((name.to_owned(), label.clone()))
                    .or_default()
                    .entry(value)
                    .or_default()
                    .push((*instance).to_owned());
            }
        }
    }
    seen.into_iter()
        .filter(|(_, values)| values.len() > 1)
        .map(|((source, label), values)| {
            serde_json::json!({ "source": source, "label": label, "values": values })
        })
        .collect()
}

/// Every `admin` / `*_admin` address in a JSON document, with a name.
/// An admin address found in a stack file, and whether its name is an
/// object's own `name` (rather than taken from a `<role>_admin` key).
type FoundAdmin = (String, std::net::SocketAddr, bool);

/// One peer per address: a stack file may list an instance twice (`lb_admin`
/// and the first of `lbs`); the entry with its own `name` wins.
fn unique_admins(found: Vec<FoundAdmin>) -> Vec<(String, std::net::SocketAddr)> {
    let mut unique: Vec<FoundAdmin> = Vec::with_capacity(found.len());
    for entry in found {
        match unique.iter_mut().find(|kept| kept.1 == entry.1) {
            Some(kept) if entry.2 && !kept.2 => *kept = entry,
            Some(_) => {}
            None => unique.push(entry),
        }
    }
    unique
        .into_iter()
        .map(|(name, addr, _)| (name, addr))
        .collect()
}

fn collect_admins(value: &Value, found: &mut Vec<FoundAdmin>) {
    match value {
        Value::Object(map) => {
            let own_name = map.get("name").and_then(Value::as_str);
            for (key, field) in map {
                if key == "admin" || key.ends_with("_admin") {
                    if let Some(addr) = field.as_str().and_then(|s| s.parse().ok()) {
                        let (name, named) = match (key.as_str(), own_name) {
                            ("admin", Some(name)) => (name.to_owned(), true),
                            (key, _) => {
                                (key.strip_suffix("_admin").unwrap_or(key).to_owned(), false)
                            }
                        };
                        found.push((name, addr, named));
                        continue;
                    }
                }
                collect_admins(field, found);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_admins(item, found);
            }
        }
        _ => {}
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_are_found_in_a_stack_file() {
        let stack = serde_json::json!({
            "lb": "127.0.0.1:8443",
            "lb_admin": "127.0.0.1:9090",
            "web": [
                {"name": "web1", "listen": "127.0.0.1:8001", "admin": "127.0.0.1:9101"},
                {"name": "web2", "listen": "127.0.0.1:8002", "admin": "127.0.0.1:9102"}
            ]
        });
        let mut found = Vec::new();
        collect_admins(&stack, &mut found);
        let names: Vec<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["lb", "web1", "web2"]);
    }

    #[test]
    fn an_instance_listed_twice_is_one_peer_under_its_own_name() {
        let stack = serde_json::json!({
            "lb_admin": "127.0.0.1:9090",
            "lbs": [
                {"name": "lb1", "admin": "127.0.0.1:9090"},
                {"name": "lb2", "admin": "127.0.0.1:9091"}
            ]
        });
        let mut found = Vec::new();
        collect_admins(&stack, &mut found);
        let peers = unique_admins(found);
        let names: Vec<&str> = peers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["lb1", "lb2"]);
    }

    #[test]
    fn only_http_urls_are_peers() {
        assert!(Fleet::new().peer("a", "http://127.0.0.1:9090/").is_ok());
        assert!(Fleet::new().peer("a", "https://127.0.0.1:9090").is_err());
        assert!(Fleet::new()
            .peer("a", "http://127.0.0.1:9090/status")
            .is_err());
        assert!(Fleet::new().peer("a", "nonsense").is_err());
    }

    #[test]
    fn differing_agreed_values_are_flagged() {
        let status = |writer: &str| {
            serde_json::json!({"sources": [
                {"name": "db", "snapshot": {"agreed": {"writer": writer}}},
                {"name": "lb", "snapshot": {}}
            ]})
        };
        let (a, b, c) = (status("10.0.0.3"), status("10.0.0.3"), status("10.0.0.4"));
        assert!(disagreements(&[("web1", &a), ("web2", &b)]).is_empty());
        let flagged = disagreements(&[("web1", &a), ("web2", &b), ("web3", &c)]);
        assert_eq!(flagged.len(), 1);
        assert_eq!(flagged[0]["values"]["10.0.0.4"][0], "web3");
    }
}
