use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics::Counter;
use tower_layer::Layer;

use super::rules::Rules;
use super::service::Firewall;
use crate::client_addr::TrustedProxies;
use crate::unknown_client::{UnknownClient, UnknownClientAlarm};

/// Applies firewall [`Rules`] at connection level, request level, or both.
/// See the [module docs](super).
///
/// Clones share the rules: [`RulesHandle::store`] on any of them changes
/// what every service made from the layer enforces.
#[derive(Clone, Debug)]
pub struct FirewallLayer {
    pub(super) shared: Arc<Shared>,
}

/// What every service made from one layer shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) rules: RulesHandle,
    pub(super) trusted: TrustedProxies,
    pub(super) denied_connections: Counter,
    pub(super) denied_requests: Counter,
    pub(super) unknown_client: UnknownClient,
    pub(super) unknown_alarm: UnknownClientAlarm,
}

impl FirewallLayer {
    /// Enforces `rules`, trusting no proxy.
    ///
    /// Install the metrics recorder first: the denial counters are
    /// registered here, once.
    pub fn new(rules: Rules) -> Self {
        Self::with_handle(RulesHandle::new(rules), TrustedProxies::none())
    }

    /// Enforces the rules held by `handle` (shared with other layers).
    pub fn with_handle(handle: RulesHandle, trusted: TrustedProxies) -> Self {
        Self::build(handle, trusted, UnknownClient::default())
    }

    fn build(handle: RulesHandle, trusted: TrustedProxies, unknown_client: UnknownClient) -> Self {
        crate::metric_help::describe();
        Self {
            shared: Arc::new(Shared {
                rules: handle,
                trusted,
                denied_connections: metrics::counter!("foobar_firewall_denied_total", "level" => "connection"),
                denied_requests: metrics::counter!("foobar_firewall_denied_total", "level" => "request"),
                unknown_client,
                unknown_alarm: UnknownClientAlarm::new("firewall"),
            }),
        }
    }

    /// Believes forwarding headers (`Forwarded`, `X-Forwarded-For`) from
    /// these proxies when resolving a request's client address. Keep a
    /// clone to change the set at run time
    /// ([`TrustedProxies::replace`]).
    #[must_use]
    pub fn trusted_proxies(self, trusted: TrustedProxies) -> Self {
        Self::build(
            self.shared.rules.clone(),
            trusted,
            self.shared.unknown_client,
        )
    }

    /// What the request level does when it finds no client address.
    /// Default: [`UnknownClient::Refuse`] (500, logged and counted).
    #[must_use]
    pub fn unknown_client(self, policy: UnknownClient) -> Self {
        Self::build(
            self.shared.rules.clone(),
            self.shared.trusted.clone(),
            policy,
        )
    }

    /// The handle that replaces the rules at run time.
    pub fn rules(&self) -> &RulesHandle {
        &self.shared.rules
    }
}

impl<S> Layer<S> for FirewallLayer {
    type Service = Firewall<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Firewall::from_shared(inner, self.shared.clone())
    }
}

/// The live rules of one or more firewall layers, replaceable at run time.
///
/// Reads are lock-free (an `ArcSwap` load); a replacement is seen by the
/// next connection or request, while those already checked go on.
///
/// ```
/// use foobar_guard::firewall::{FirewallLayer, Rules};
///
/// let layer = FirewallLayer::new(Rules::default());
/// let handle = layer.rules().clone();
/// // Later, e.g. after the rules file changed:
/// handle.store("deny 192.0.2.0/24".parse()?);
/// assert!(!handle.load().is_allowed("192.0.2.1".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct RulesHandle {
    current: Arc<ArcSwap<Rules>>,
}

impl RulesHandle {
    /// A handle holding `rules`.
    pub fn new(rules: Rules) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(rules)),
        }
    }

    /// Replaces the rules.
    pub fn store(&self, rules: Rules) {
        self.current.store(Arc::new(rules));
    }

    /// Re-reads a rules file and swaps it in. On error (unreadable file,
    /// syntax error) the current rules stay in force and the error names
    /// the file and line.
    ///
    /// # Errors
    /// As [`Rules::from_file`].
    pub fn reload_file(&self, path: impl AsRef<std::path::Path>) -> crate::Result<()> {
        let rules = Rules::from_file(path)?;
        tracing::info!(rules = rules.len(), "firewall rules reloaded");
        self.store(rules);
        Ok(())
    }

    /// The current rules.
    pub fn load(&self) -> Arc<Rules> {
        self.current.load_full()
    }

    /// Whether `addr` is allowed by the current rules, without taking a
    /// reference count.
    #[inline]
    pub fn is_allowed(&self, addr: std::net::IpAddr) -> bool {
        self.current.load().is_allowed(addr)
    }
}
