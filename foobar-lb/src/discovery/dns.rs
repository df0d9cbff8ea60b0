//! Backends from DNS: the addresses of a name (A and AAAA records) on one
//! port, or the targets of SRV records with their ports and weights;
//! resolved again when the answer's TTL runs out.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::time::Instant;

use super::{DiscoveredBackend, Discovery, DiscoveryError};

#[derive(Clone, Debug)]
enum Query {
    /// A and AAAA records of `name`, all on `port`.
    Host { name: String, port: u16 },
    /// SRV records of `name`; each target's addresses on its port.
    Srv { name: String },
}

impl Query {
    fn name(&self) -> &str {
        match self {
            Self::Host { name, .. } | Self::Srv { name } => name,
        }
    }
}

/// Backends from DNS, a [`Discovery`] source (feature `dns`).
///
/// - [`host`](Self::host): every address of a name (A and AAAA), on one
///   port, weight 1 each;
/// - [`srv`](Self::srv): SRV records (`_http._tcp.web.example.`): the
///   lowest priority's targets, each address on the record's port, with the
///   record's weight (0 counts as 1).
///
/// The name is resolved again when the answer's TTL runs out (kept between
/// 1 s and 5 min by default, see [`refresh`](Self::refresh)). An answer
/// that cannot be had (a timeout, `NXDOMAIN`, no record) is an error: the
/// set keeps its backends rather than emptying, and the name is asked again
/// after the shortest refresh interval. Names are best written fully
/// qualified (with the final dot) so that no search domain is tried.
///
/// ```no_run
/// use foobar_lb::discovery::DnsSource;
///
/// # fn run() -> Result<(), foobar_lb::discovery::DiscoveryError> {
/// let web = DnsSource::srv("_https._tcp.web.internal.")?.https();
/// let api = DnsSource::host("api.internal.", 8080)?;
/// # let _ = (web, api);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DnsSource {
    resolver: TokioResolver,
    query: Query,
    scheme: &'static str,
    min_refresh: Duration,
    max_refresh: Duration,
    next_at: Option<Instant>,
}

impl DnsSource {
    /// Every address of `name`, on `port`, through the system's resolver
    /// configuration (`/etc/resolv.conf`).
    ///
    /// # Errors
    /// [`DiscoveryError::Resolve`] if the system configuration cannot be
    /// read.
    pub fn host(name: impl Into<String>, port: u16) -> Result<Self, DiscoveryError> {
        Self::system(Query::Host {
            name: name.into(),
            port,
        })
    }

    /// The targets of the SRV records of `name`, through the system's
    /// resolver configuration.
    ///
    /// # Errors
    /// [`DiscoveryError::Resolve`] if the system configuration cannot be
    /// read.
    pub fn srv(name: impl Into<String>) -> Result<Self, DiscoveryError> {
        Self::system(Query::Srv { name: name.into() })
    }

    fn system(query: Query) -> Result<Self, DiscoveryError> {
        let resolver = TokioResolver::builder_tokio()
            .and_then(|builder| builder.build())
            .map_err(|error| DiscoveryError::Resolve {
                name: query.name().to_owned(),
                reason: format!("cannot read the system resolver configuration: {error}"),
            })?;
        Ok(Self {
            resolver,
            query,
            scheme: "http",
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(300),
            next_at: None,
        })
    }

    /// Asks only the DNS server at `server` (UDP, then TCP for long
    /// answers) instead of the system's.
    ///
    /// # Errors
    /// [`DiscoveryError::Resolve`] if the resolver cannot be built.
    pub fn name_server(mut self, server: SocketAddr) -> Result<Self, DiscoveryError> {
        let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
            .into_iter()
            .map(|mut connection| {
                connection.port = server.port();
                connection
            })
            .collect();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
            server.ip(),
            true,
            connections,
        )]);
        self.resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .build()
            .map_err(|error| DiscoveryError::Resolve {
                name: self.query.name().to_owned(),
                reason: format!("cannot build a resolver for {server}: {error}"),
            })?;
        Ok(self)
    }

    /// Backends are `https://` URLs (the default is `http://`).
    #[must_use]
    pub fn https(mut self) -> Self {
        self.scheme = "https";
        self
    }

    /// The shortest and the longest wait before resolving again, whatever
    /// the TTL says. Default: 1 s and 5 min.
    #[must_use]
    pub fn refresh(mut self, shortest: Duration, longest: Duration) -> Self {
        self.min_refresh = shortest;
        self.max_refresh = longest.max(shortest);
        self
    }

    /// Resolves now: the backends, and when the answer expires.
    async fn resolve(&self) -> Result<(Vec<DiscoveredBackend>, Instant), DiscoveryError> {
        let failed = |name: &str, error: &dyn std::fmt::Display| DiscoveryError::Resolve {
            name: name.to_owned(),
            reason: error.to_string(),
        };
        match &self.query {
            Query::Host { name, port } => {
                let (addrs, until) = self.addresses(name).await?;
                let backends = addrs
                    .into_iter()
                    .map(|ip| DiscoveredBackend::new(self.url(ip, *port), 1))
                    .collect();
                Ok((backends, until))
            }
            Query::Srv { name } => {
                let lookup = self
                    .resolver
                    .lookup(name.as_str(), RecordType::SRV)
                    .await
                    .map_err(|error| failed(name, &error))?;
                let mut until = Instant::from_std(lookup.valid_until());
                let records: Vec<_> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::SRV(srv) if !srv.target.is_root() => Some(srv.clone()),
                        _ => None,
                    })
                    .collect();
                let Some(priority) = records.iter().map(|srv| srv.priority).min() else {
                    return Err(failed(name, &"no SRV record"));
                };
                // One backend per address and port; the largest weight if
                // two records lead to the same one.
                let mut backends = BTreeMap::new();
                for srv in records.iter().filter(|srv| srv.priority == priority) {
                    let target = srv.target.to_ascii();
                    let (addrs, target_until) = self.addresses(&target).await?;
                    until = until.min(target_until);
                    for ip in addrs {
                        let weight = u32::from(srv.weight.max(1));
                        let entry = backends.entry(self.url(ip, srv.port)).or_insert(weight);
                        *entry = (*entry).max(weight);
                    }
                }
                let backends = backends
                    .into_iter()
                    .map(|(url, weight)| DiscoveredBackend::new(url, weight))
                    .collect();
                Ok((backends, until))
            }
        }
    }

    /// The addresses of `name` and when they expire.
    async fn addresses(&self, name: &str) -> Result<(Vec<IpAddr>, Instant), DiscoveryError> {
        let lookup =
            self.resolver
                .lookup_ip(name)
                .await
                .map_err(|error| DiscoveryError::Resolve {
                    name: name.to_owned(),
                    reason: error.to_string(),
                })?;
        let mut addrs: Vec<IpAddr> = lookup.iter().collect();
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(DiscoveryError::Resolve {
                name: name.to_owned(),
                reason: "no address".to_owned(),
            });
        }
        Ok((addrs, Instant::from_std(lookup.valid_until())))
    }

    fn url(&self, ip: IpAddr, port: u16) -> String {
        format!("{}://{}", self.scheme, SocketAddr::new(ip, port))
    }
}

impl Discovery for DnsSource {
    fn name(&self) -> String {
        match &self.query {
            Query::Host { name, port } => format!("dns:{name}:{port}"),
            Query::Srv { name } => format!("dns-srv:{name}"),
        }
    }

    async fn next(&mut self) -> Option<Result<Vec<DiscoveredBackend>, DiscoveryError>> {
        if let Some(at) = self.next_at {
            tokio::time::sleep_until(at).await;
        }
        let now = Instant::now();
        let result = self.resolve().await;
        let wait = match &result {
            Ok((_, until)) => until
                .saturating_duration_since(now)
                .clamp(self.min_refresh, self.max_refresh),
            Err(_) => self.min_refresh,
        };
        self.next_at = Some(now + wait);
        Some(result.map(|(backends, _)| backends))
    }
}
