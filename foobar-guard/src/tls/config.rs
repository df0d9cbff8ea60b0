//! The server-side TLS configuration: certificates by SNI, ALPN, versions,
//! session resumption, client certificates, and hot reload.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use foobar_core::tls::{pem, provider, Identity, Material, Origin, PemProblem, PROTOCOL_VERSIONS};
use foobar_core::Shutdown;
use rustls::server::{
    ProducesTickets, ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier,
};
use rustls::ServerConfig;
use rustls_pki_types::DnsName;

use super::client_auth::AllowedClientNames;
use super::error::{NameOrigin, TlsError};
use super::metrics::ReloadMetrics;
use super::resolver::SniResolver;

/// A server TLS configuration that can be reloaded while serving.
///
/// Built with [`TlsConfig::builder`]. Cloning is cheap and every clone
/// shares the same live configuration: a [`TlsLayer`](super::TlsLayer)
/// reads it lock-free (one `ArcSwap` load) at each new connection, and
/// [`reload`](Self::reload) re-reads every file and swaps it atomically.
/// Connections already open keep the configuration they started with.
///
/// What it sets up:
/// - certificates from PEM files (RSA, ECDSA or Ed25519 keys), chosen by
///   the SNI the client sends: exact names first, then `*.` wildcards
///   (one label deep). The names come from each certificate's subject
///   alternative names unless given explicitly. The first certificate is
///   the default for clients that send no or an unknown name, unless
///   [`strict_sni`](TlsConfigBuilder::strict_sni) is on;
/// - ALPN `h2` and `http/1.1` (the server then speaks HTTP/2 or 1.1);
/// - TLS 1.3 and 1.2 only, aws-lc-rs cipher suites, chosen in the
///   server's order of preference (AES-256-GCM, AES-128-GCM, then
///   ChaCha20-Poly1305), not the client's
///   ([`server_cipher_order`](TlsConfigBuilder::server_cipher_order));
/// - session resumption: TLS 1.3 tickets and TLS 1.2 tickets (keys rotated
///   every 6 hours) plus an in-memory session cache, kept across reloads;
/// - optionally, client certificates verified against a CA bundle (mTLS),
///   and restricted to named clients.
///
/// ```no_run
/// use foobar_guard::tls::TlsConfig;
///
/// # fn run() -> Result<(), foobar_guard::tls::TlsError> {
/// let tls = TlsConfig::builder()
///     .certificate("/etc/foobar/www.crt", "/etc/foobar/www.key")
///     .certificate("/etc/foobar/api.crt", "/etc/foobar/api.key")
///     .client_ca_file("/etc/foobar/lb-ca.pem")
///     .build()?;
///
/// // Later, after the files were replaced:
/// if let Err(error) = tls.reload() {
///     eprintln!("keeping the old certificates: {error}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    shared: Arc<Shared>,
}

struct Shared {
    spec: TlsConfigBuilder,
    current: ArcSwap<ServerConfig>,
    #[cfg(feature = "ocsp")]
    ocsp: OcspState,
    // Kept across reloads so sessions and tickets stay resumable.
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    reloading: Mutex<()>,
    metrics: ReloadMetrics,
}

/// The stapler's view of the configuration.
#[cfg(feature = "ocsp")]
struct OcspState {
    /// Every certificate the current configuration serves.
    slots: ArcSwap<Vec<super::ocsp::Slot>>,
    staples: Arc<super::ocsp::Staples>,
    fetcher: super::ocsp::Fetcher,
    metrics: super::ocsp::Metrics,
    /// One pass at a time.
    refreshing: tokio::sync::Mutex<()>,
}

/// What [`load`] made: the rustls configuration and, with stapling on,
/// the certificates' slots.
struct Loaded {
    config: ServerConfig,
    #[cfg(feature = "ocsp")]
    slots: Vec<super::ocsp::Slot>,
}

impl TlsConfig {
    /// A builder; add at least one certificate.
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder::default()
    }

    /// The configuration new connections get now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.shared.current.load_full()
    }

    /// Re-reads every certificate, key and CA file and, if all are good,
    /// makes the new configuration current for new connections.
    ///
    /// # Errors
    /// The first problem found, naming the file ([`TlsError::Load`] wraps
    /// `foobar_core::tls::TlsError::{ReadFile, Pem, KeyMismatch}`); the old
    /// configuration then stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        // One reload at a time; readers are never blocked.
        let _one = self
            .shared
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.shared.load() {
            Ok(loaded) => {
                self.shared.current.store(Arc::new(loaded.config));
                #[cfg(feature = "ocsp")]
                self.shared.ocsp.slots.store(Arc::new(loaded.slots));
                self.shared.metrics.succeeded.increment(1);
                tracing::info!("TLS configuration reloaded");
                Ok(())
            }
            Err(error) => {
                self.shared.metrics.failed.increment(1);
                tracing::warn!(%error, "TLS reload failed; keeping the current certificates");
                Err(error)
            }
        }
    }

    /// Reloads on every `SIGHUP` until `shutdown` fires, in a background
    /// task; failed reloads are logged and counted, the old certificates
    /// stay.
    ///
    /// # Errors
    /// [`TlsError::Signal`] if the signal handler cannot be installed.
    #[cfg(unix)]
    pub fn reload_on_sighup(
        &self,
        shutdown: Shutdown,
    ) -> Result<tokio::task::JoinHandle<()>, TlsError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup()).map_err(TlsError::Signal)?;
        let config = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    received = hangups.recv() => {
                        if received.is_none() {
                            return;
                        }
                        tracing::info!("SIGHUP: reloading the TLS configuration");
                        let _ = config.reload();
                    }
                    () = shutdown.wait() => return,
                }
            }
        }))
    }
}

#[cfg(feature = "ocsp")]
#[cfg_attr(docsrs, doc(cfg(feature = "ocsp")))]
impl TlsConfig {
    /// One stapling pass over every certificate served: fetches the
    /// responses that are due, staples the valid ones, takes off expired
    /// ones. Nothing happens unless the configuration was built with
    /// [`ocsp_stapling`](TlsConfigBuilder::ocsp_stapling).
    pub async fn refresh_ocsp(&self) -> super::ocsp::OcspReport {
        self.refresh_ocsp_until().await.0
    }

    async fn refresh_ocsp_until(&self) -> (super::ocsp::OcspReport, std::time::SystemTime) {
        let state = &self.shared.ocsp;
        let _one = state.refreshing.lock().await;
        let slots = state.slots.load_full();
        super::ocsp::refresh(&slots, &state.staples, &state.fetcher, &state.metrics).await
    }

    /// Keeps the staples current until `shutdown`, in a background task:
    /// a pass now, then whenever a response is due for refresh or a retry,
    /// and at least every minute (to staple certificates an ACME manager
    /// renewed or a reload brought).
    pub fn staple_ocsp(&self, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let config = self.clone();
        tokio::spawn(async move {
            loop {
                let (_, next) = config.refresh_ocsp_until().await;
                let wait = next
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
                    .clamp(
                        std::time::Duration::from_secs(1),
                        std::time::Duration::from_secs(60),
                    );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.wait() => return,
                }
            }
        })
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("spec", &self.shared.spec)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn load(&self) -> Result<Loaded, TlsError> {
        load(
            &self.spec,
            &self.ticketer,
            &self.sessions,
            #[cfg(feature = "ocsp")]
            &self.ocsp.staples,
        )
    }
}

/// Reads every file of `spec` and builds a rustls configuration.
fn load(
    spec: &TlsConfigBuilder,
    ticketer: &Arc<dyn ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
    #[cfg(feature = "ocsp")] staples: &super::ocsp::Staples,
) -> Result<Loaded, TlsError> {
    #[cfg(feature = "ocsp")]
    let mut slots = Vec::new();
    let resolver = spec.load_certificates(
        #[cfg(feature = "ocsp")]
        (staples, &mut slots),
    )?;
    if !spec.client_names.is_empty() && spec.client_ca.is_none() {
        return Err(TlsError::ClientNamesWithoutCa);
    }
    for name in &spec.client_names {
        if DnsName::try_from(name.as_str()).is_err() {
            return Err(TlsError::InvalidName {
                name: name.clone(),
                origin: NameOrigin::AllowedClientNames,
            });
        }
    }
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?;
    let builder = match &spec.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let (roots, origin) = match ca {
                CaSource::File(path) => (pem::load_ca_bundle(path)?, Origin::File(path.clone())),
                CaSource::Pem(bytes) => (pem::ca_bundle_from_pem(bytes)?, Origin::Memory),
            };
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            if spec.client_cert_optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|source| TlsError::ClientCa { origin, source })?;
            if spec.client_names.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_client_cert_verifier(Arc::new(AllowedClientNames {
                    inner: verifier,
                    names: spec.client_names.clone(),
                }))
            }
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.ignore_client_order = spec.server_cipher_order;
    config.alpn_protocols.clone_from(&spec.alpn);
    #[cfg(feature = "acme")]
    if spec.certificates.iter().any(|entry| {
        matches!(&entry.source, CertificateSource::Acme(manager)
            if manager.challenge() == crate::acme::Challenge::TlsAlpn01)
    }) {
        // Only validators offer it, and they get the validation certificate.
        config
            .alpn_protocols
            .push(crate::acme::ACME_TLS_ALPN.to_vec());
    }
    config.ticketer = ticketer.clone();
    config.session_storage = sessions.clone();
    Ok(Loaded {
        config,
        #[cfg(feature = "ocsp")]
        slots,
    })
}

/// Builds a [`TlsConfig`]. See there for what the defaults are.
#[derive(Clone, Debug)]
#[must_use]
pub struct TlsConfigBuilder {
    certificates: Vec<CertificateEntry>,
    strict_sni: bool,
    alpn: Vec<Vec<u8>>,
    client_ca: Option<CaSource>,
    client_cert_optional: bool,
    client_names: Vec<String>,
    session_cache_size: usize,
    server_cipher_order: bool,
    #[cfg(feature = "ocsp")]
    ocsp_stapling: bool,
}

impl Default for TlsConfigBuilder {
    fn default() -> Self {
        Self {
            certificates: Vec::new(),
            strict_sni: false,
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            client_ca: None,
            client_cert_optional: false,
            client_names: Vec::new(),
            session_cache_size: 1024,
            server_cipher_order: true,
            #[cfg(feature = "ocsp")]
            ocsp_stapling: false,
        }
    }
}

#[derive(Clone, Debug)]
struct CertificateEntry {
    source: CertificateSource,
    /// Explicit SNI names; `None`: the certificate's own DNS names.
    names: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
enum CertificateSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    Loaded(Identity),
    #[cfg(feature = "acme")]
    Acme(crate::acme::AcmeManager),
}

#[derive(Clone, Debug)]
enum CaSource {
    File(PathBuf),
    Pem(Vec<u8>),
}

impl TlsConfigBuilder {
    /// Adds a certificate chain and key from PEM files, served for the DNS
    /// names (and `*.` wildcards) in the certificate. The first certificate
    /// added is the default.
    pub fn certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.certificates.push(CertificateEntry {
            source: CertificateSource::Files {
                cert: cert.into(),
                key: key.into(),
            },
            names: None,
        });
        self
    }

    /// Adds a certificate from PEM files, served for exactly these names
    /// (`www.example.com`, `*.example.com`) instead of its own.
    pub fn certificate_for<N: AsRef<str>>(
        mut self,
        names: impl IntoIterator<Item = N>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.certificates.push(CertificateEntry {
            source: CertificateSource::Files {
                cert: cert.into(),
                key: key.into(),
            },
            names: Some(names.into_iter().map(|n| n.as_ref().to_owned()).collect()),
        });
        self
    }

    /// Adds an already loaded certificate, served for its own DNS names
    /// (a reload keeps it as it is).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.certificates.push(CertificateEntry {
            source: CertificateSource::Loaded(identity),
            names: None,
        });
        self
    }

    /// Serves the certificate of an ACME manager for its names, and answers
    /// its TLS-ALPN-01 validations. The certificate is swapped in place when
    /// the manager renews it (no reload needed); until the first one is
    /// issued, handshakes for its names get the default certificate, if
    /// any.
    #[cfg(feature = "acme")]
    #[cfg_attr(docsrs, doc(cfg(feature = "acme")))]
    pub fn acme(mut self, manager: &crate::acme::AcmeManager) -> Self {
        self.certificates.push(CertificateEntry {
            source: CertificateSource::Acme(manager.clone()),
            names: None,
        });
        self
    }

    /// Refuses handshakes whose SNI matches no certificate, or that send
    /// none, instead of answering with the first certificate. Default: off.
    pub fn strict_sni(mut self, on: bool) -> Self {
        self.strict_sni = on;
        self
    }

    /// The ALPN protocols offered, most preferred first. Default: `h2`,
    /// `http/1.1`. Pass an empty list for none.
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Requires a client certificate issued by a CA in this PEM file
    /// (mutual TLS); re-read on reload.
    pub fn client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(CaSource::File(path.into()));
        self
    }

    /// Requires a client certificate issued by a CA in this PEM buffer.
    pub fn client_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.client_ca = Some(CaSource::Pem(pem.as_ref().to_vec()));
        self
    }

    /// With a client CA: also accept clients without a certificate (the
    /// ones that present one are still verified). Default: required.
    pub fn client_cert_optional(mut self, optional: bool) -> Self {
        self.client_cert_optional = optional;
        self
    }

    /// With a client CA: accept only client certificates that carry one of
    /// these DNS names (`lb.internal`) among their subject alternative
    /// names, so a CA shared by several clients still lets in only the
    /// named ones. Default: any certificate the CA issued.
    pub fn allowed_client_names<N: AsRef<str>>(
        mut self,
        names: impl IntoIterator<Item = N>,
    ) -> Self {
        self.client_names = names
            .into_iter()
            .map(|n| n.as_ref().to_ascii_lowercase())
            .collect();
        self
    }

    /// How many TLS sessions the server-side cache keeps for resumption.
    /// Default: 1024.
    pub fn session_cache_size(mut self, size: usize) -> Self {
        self.session_cache_size = size;
        self
    }

    /// Choose the cipher suite by the server's order of preference (rustls
    /// `ignore_client_order`) rather than the client's: AES-256-GCM, then
    /// AES-128-GCM, then ChaCha20-Poly1305. Default: on, so a TLS 1.2
    /// client that lists a weaker suite first still gets the strongest one
    /// both support (what scanners report as "server cipher order"). It
    /// applies to TLS 1.3 alike, whose suites are all of equal standing.
    pub fn server_cipher_order(mut self, on: bool) -> Self {
        self.server_cipher_order = on;
        self
    }

    /// Staples OCSP responses to the certificates that name a responder
    /// (see the [`ocsp`](super::ocsp) module); run
    /// [`TlsConfig::staple_ocsp`] to fetch and refresh them. Default: off.
    #[cfg(feature = "ocsp")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ocsp")))]
    pub fn ocsp_stapling(mut self, on: bool) -> Self {
        self.ocsp_stapling = on;
        self
    }

    /// Loads every file and builds the configuration.
    ///
    /// # Errors
    /// [`TlsError::NoCertificate`] without certificates; otherwise the
    /// first problem found, naming its file (see [`TlsConfig::reload`]).
    pub fn build(self) -> Result<TlsConfig, TlsError> {
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        let sessions: Arc<dyn StoresServerSessions> =
            ServerSessionMemoryCache::new(self.session_cache_size);
        #[cfg(feature = "ocsp")]
        let staples = Arc::new(super::ocsp::Staples::default());
        let first = load(
            &self,
            &ticketer,
            &sessions,
            #[cfg(feature = "ocsp")]
            &staples,
        )?;
        Ok(TlsConfig {
            shared: Arc::new(Shared {
                spec: self,
                current: ArcSwap::from_pointee(first.config),
                #[cfg(feature = "ocsp")]
                ocsp: OcspState {
                    slots: ArcSwap::from_pointee(first.slots),
                    staples,
                    fetcher: super::ocsp::Fetcher::new(),
                    metrics: super::ocsp::Metrics::register(),
                    refreshing: tokio::sync::Mutex::new(()),
                },
                ticketer,
                sessions,
                reloading: Mutex::new(()),
                metrics: ReloadMetrics::register(),
            }),
        })
    }

    fn load_certificates(
        &self,
        #[cfg(feature = "ocsp")] (staples, slots): (
            &super::ocsp::Staples,
            &mut Vec<super::ocsp::Slot>,
        ),
    ) -> Result<SniResolver, TlsError> {
        if self.certificates.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let mut resolver = SniResolver::default();
        for (index, entry) in self.certificates.iter().enumerate() {
            let (identity, origin) = match &entry.source {
                CertificateSource::Files { cert, key } => (
                    Identity::from_pem_files(cert, key)?,
                    Origin::File(cert.clone()),
                ),
                CertificateSource::Loaded(identity) => (identity.clone(), Origin::Memory),
                #[cfg(feature = "acme")]
                CertificateSource::Acme(manager) => {
                    let entry = super::resolver::Entry::Managed(manager.slot());
                    #[cfg(feature = "ocsp")]
                    if self.ocsp_stapling {
                        slots.push(manager.slot());
                    }
                    for name in manager.names() {
                        resolver.insert(name, entry.clone());
                    }
                    resolver.add_challenges(manager.challenges());
                    if index == 0 && !self.strict_sni {
                        resolver.set_default(entry);
                    }
                    continue;
                }
            };
            let key = identity.certified_key();
            // With stapling, the stapler swaps the key for a stapled one.
            #[cfg(feature = "ocsp")]
            let key: super::resolver::Entry = if self.ocsp_stapling {
                let slot: super::ocsp::Slot =
                    Arc::new(arc_swap::ArcSwapOption::new(Some(staples.staple(key))));
                slots.push(slot.clone());
                super::resolver::Entry::Managed(slot)
            } else {
                super::resolver::Entry::Fixed(key)
            };
            match &entry.names {
                Some(names) => {
                    for name in names {
                        check_name(name, &origin)?;
                        resolver.insert(name, &key);
                    }
                }
                None => {
                    let cert = webpki::EndEntityCert::try_from(identity.end_entity()).map_err(
                        |error| {
                            TlsError::Load(foobar_core::tls::TlsError::Pem {
                                what: Material::Certificate,
                                origin: origin.clone(),
                                problem: PemProblem::NotAnEndEntity(error),
                            })
                        },
                    )?;
                    for name in cert.valid_dns_names() {
                        resolver.insert(name, &key);
                    }
                }
            }
            if index == 0 && !self.strict_sni {
                resolver.set_default(key);
            }
        }
        Ok(resolver)
    }
}

/// Accepts `host.example` and `*.example`.
fn check_name(name: &str, origin: &Origin) -> Result<(), TlsError> {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.contains('*') || DnsName::try_from(bare).is_err() {
        return Err(TlsError::InvalidName {
            name: name.to_owned(),
            origin: NameOrigin::Certificate(origin.clone()),
        });
    }
    Ok(())
}
