//! Obtaining, storing, loading and renewing one certificate.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use foobar_core::tls::Identity;
use foobar_core::Shutdown;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use metrics::{Counter, Gauge};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls::sign::CertifiedKey;

use super::challenges::Challenges;
use super::client::CaClient;
use super::config::{AcmeConfig, Challenge};
use super::error::AcmeError;
use super::http01::Http01Layer;
use super::storage::Storage;
use super::validity::Validity;

/// Waits between checks are capped, so the expiry gauges stay current and
/// a certificate renewed by another instance is picked up.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Keeps one certificate for a set of names issued and renewed.
///
/// Built by [`AcmeConfig::build`]. Cheap to clone; clones share the
/// certificate. Give it to [`TlsConfigBuilder::acme`](crate::tls::TlsConfigBuilder::acme)
/// so the TLS layer serves its certificate (swapped in place, lock-free,
/// when renewed) and answers TLS-ALPN-01; for HTTP-01, put
/// [`http01_layer`](Self::http01_layer) on the plain-HTTP listener.
#[derive(Clone)]
pub struct AcmeManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: AcmeConfig,
    storage: Storage,
    challenges: Arc<Challenges>,
    /// What the TLS resolver serves for the names.
    current: Arc<ArcSwapOption<CertifiedKey>>,
    validity: Mutex<Option<Validity>>,
    account: tokio::sync::Mutex<Option<Account>>,
    /// One pass at a time within this process.
    ensuring: tokio::sync::Mutex<()>,
    issued: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    metrics: Metrics,
}

struct Metrics {
    renewed: Counter,
    failed: Counter,
    expiry_days: Vec<Gauge>,
}

/// What one [`AcmeManager::ensure`] pass did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A fresh enough certificate was already in storage (stored by this
    /// instance before a restart, or by another instance).
    Loaded,
    /// A new certificate was issued by the CA and stored.
    Issued,
}

/// The state of a managed certificate, for status pages.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AcmeStatus {
    /// The names of the certificate.
    pub names: Vec<String>,
    /// When the served certificate expires (`None`: none yet).
    pub not_after: Option<SystemTime>,
    /// When it is due for renewal (a third of its validity left).
    pub renewal_due: Option<SystemTime>,
    /// Certificates this instance obtained from the CA.
    pub issued: u64,
    /// Failed attempts of this instance.
    pub failures: u64,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
}

impl AcmeStatus {
    #[cfg(test)]
    pub(crate) fn empty(names: Vec<String>) -> Self {
        Self {
            names,
            not_after: None,
            renewal_due: None,
            issued: 0,
            failures: 0,
            last_error: None,
        }
    }
}

impl AcmeManager {
    pub(crate) fn new(config: AcmeConfig) -> Result<Self, AcmeError> {
        let storage = Storage::new(config.storage.clone().ok_or(AcmeError::NoStorage)?);
        storage.create()?;
        crate::metric_help::describe();
        let metrics = Metrics {
            renewed: metrics::counter!("foobar_acme_renewals_total", "result" => "success"),
            failed: metrics::counter!("foobar_acme_renewals_total", "result" => "failure"),
            expiry_days: config
                .names
                .iter()
                .map(|name| {
                    metrics::gauge!("foobar_acme_certificate_expiry_days", "name" => name.clone())
                })
                .collect(),
        };
        let manager = Self {
            inner: Arc::new(Inner {
                challenges: Arc::new(Challenges::new(storage.challenges_dir())),
                storage,
                config,
                current: Arc::default(),
                validity: Mutex::new(None),
                account: tokio::sync::Mutex::new(None),
                ensuring: tokio::sync::Mutex::new(()),
                issued: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                last_error: Mutex::new(None),
                metrics,
            }),
        };
        // Serve what is stored at once, even if due for renewal.
        match manager.stored() {
            Ok(Some((identity, validity))) if SystemTime::now() < validity.not_after => {
                manager.install(&identity, validity);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "ignoring the stored ACME certificate"),
        }
        Ok(manager)
    }

    /// The names of the certificate (lower-case).
    pub fn names(&self) -> &[String] {
        &self.inner.config.names
    }

    /// The challenge the CA is asked to use.
    pub fn challenge(&self) -> Challenge {
        self.inner.config.challenge
    }

    /// The certificate served now, if one was obtained or loaded.
    pub fn certified_key(&self) -> Option<Arc<CertifiedKey>> {
        self.inner.current.load_full()
    }

    /// The layer that answers HTTP-01 validation requests on the
    /// plain-HTTP listener (and hands every other request on).
    pub fn http01_layer(&self) -> Http01Layer {
        Http01Layer::new(self)
    }

    /// The state of the certificate, for a status page.
    pub fn status(&self) -> AcmeStatus {
        let validity = *lock(&self.inner.validity);
        AcmeStatus {
            names: self.inner.config.names.clone(),
            not_after: validity.map(|v| v.not_after),
            renewal_due: validity.map(|v| v.renewal_due()),
            issued: self.inner.issued.load(Ordering::Relaxed),
            failures: self.inner.failed.load(Ordering::Relaxed),
            last_error: lock(&self.inner.last_error).clone(),
        }
    }

    pub(crate) fn slot(&self) -> Arc<ArcSwapOption<CertifiedKey>> {
        self.inner.current.clone()
    }

    pub(crate) fn challenges(&self) -> Arc<Challenges> {
        self.inner.challenges.clone()
    }

    /// One pass: under the storage lock, load the stored certificate if it
    /// has more than a third of its validity left, else obtain a new one
    /// from the CA and store it. The certificate served until then keeps
    /// serving; the new one replaces it for new handshakes.
    ///
    /// # Errors
    /// Anything that stopped the pass ([`AcmeError`]); it is also counted
    /// in `foobar_acme_renewals_total{result="failure"}`.
    pub async fn ensure(&self) -> Result<Outcome, AcmeError> {
        let _one = self.inner.ensuring.lock().await;
        let result = self.ensure_locked().await;
        match &result {
            Ok(Outcome::Issued) => {
                self.inner.issued.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.renewed.increment(1);
                *lock(&self.inner.last_error) = None;
            }
            Ok(Outcome::Loaded) => *lock(&self.inner.last_error) = None,
            Err(error) => {
                self.inner.failed.fetch_add(1, Ordering::Relaxed);
                self.inner.metrics.failed.increment(1);
                *lock(&self.inner.last_error) = Some(error.to_string());
            }
        }
        self.update_gauges();
        result
    }

    async fn ensure_locked(&self) -> Result<Outcome, AcmeError> {
        let _lock = self.inner.storage.lock(self.inner.config.lock_wait).await?;
        match self.stored() {
            Ok(Some((identity, validity))) if SystemTime::now() < validity.renewal_due() => {
                self.install(&identity, validity);
                return Ok(Outcome::Loaded);
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "replacing the stored ACME certificate"),
        }
        let names = self.inner.config.names.join(", ");
        tracing::info!(names, "requesting a certificate from the ACME CA");
        let account = self.account().await?;
        let pem = self.issue(&account).await?;
        let identity = Identity::from_pem(pem.as_bytes(), pem.as_bytes()).map_err(|error| {
            AcmeError::Certificate {
                names: names.clone(),
                reason: error.to_string(),
            }
        })?;
        let validity =
            Validity::of(identity.end_entity()).ok_or_else(|| AcmeError::Certificate {
                names: names.clone(),
                reason: "no readable validity period".to_owned(),
            })?;
        let path = self
            .inner
            .storage
            .certificate_path(&self.inner.config.names);
        Storage::write_private(&path, pem.as_bytes())?;
        self.install(&identity, validity);
        tracing::info!(names, path = %path.display(), "ACME certificate issued and stored");
        Ok(Outcome::Issued)
    }

    /// Keeps the certificate current until `shutdown`: a pass now, then
    /// one when a third of the validity remains (minus up to a thirtieth
    /// of it at random, so instances sharing storage do not all wake
    /// together), and after a failure, again with back-off.
    pub fn spawn(&self, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let manager = self.clone();
        tokio::spawn(async move { manager.run(shutdown).await })
    }

    async fn run(self, shutdown: Shutdown) {
        let mut failures: u32 = 0;
        loop {
            let wait = match self.due_in() {
                Some(wait) if !wait.is_zero() && failures == 0 => wait.min(MAX_SLEEP),
                _ => match self.ensure().await {
                    Ok(_) => {
                        failures = 0;
                        self.due_in()
                            .unwrap_or(MAX_SLEEP)
                            .clamp(Duration::from_secs(1), MAX_SLEEP)
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        let wait = self.backoff(failures);
                        tracing::warn!(%error, ?wait, "ACME certificate not obtained; retrying");
                        wait
                    }
                },
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => self.update_gauges(),
                () = shutdown.wait() => return,
            }
        }
    }

    /// How long until this instance should renew (zero: now), with this
    /// instance's jitter; `None` without a certificate.
    fn due_in(&self) -> Option<Duration> {
        let validity = (*lock(&self.inner.validity))?;
        let jitter = validity.lifetime() / 30;
        let jitter = jitter.mul_f64(rand::random::<f64>());
        let at = validity.renewal_due().checked_sub(jitter)?;
        Some(at.duration_since(SystemTime::now()).unwrap_or_default())
    }

    fn backoff(&self, failures: u32) -> Duration {
        let config = &self.inner.config;
        let doubled = config.retry_min.saturating_mul(
            1u32.checked_shl(failures.saturating_sub(1).min(30))
                .unwrap_or(u32::MAX),
        );
        doubled
            .min(config.retry_max)
            .mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }

    /// The stored certificate and its validity, if there is one for
    /// exactly these names.
    fn stored(&self) -> Result<Option<(Identity, Validity)>, AcmeError> {
        let path = self
            .inner
            .storage
            .certificate_path(&self.inner.config.names);
        let Some(pem) = Storage::read(&path)? else {
            return Ok(None);
        };
        let damaged = |reason: String| AcmeError::Damaged {
            path: path.clone(),
            reason,
        };
        let identity = Identity::from_pem(&pem, &pem).map_err(|e| damaged(e.to_string()))?;
        let validity = Validity::of(identity.end_entity())
            .ok_or_else(|| damaged("no readable validity period".to_owned()))?;
        Ok(Some((identity, validity)))
    }

    fn install(&self, identity: &Identity, validity: Validity) {
        self.inner.current.store(Some(identity.certified_key()));
        *lock(&self.inner.validity) = Some(validity);
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let Some(validity) = *lock(&self.inner.validity) else {
            return;
        };
        let left = match validity.not_after.duration_since(SystemTime::now()) {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        };
        for gauge in &self.inner.metrics.expiry_days {
            gauge.set(left / 86_400.0);
        }
    }

    /// The account: cached, else loaded from storage, else created there.
    async fn account(&self) -> Result<Account, AcmeError> {
        let mut cached = self.inner.account.lock().await;
        if let Some(account) = cached.as_ref() {
            return Ok(account.clone());
        }
        let config = &self.inner.config;
        let path = self.inner.storage.account_path(&config.directory);
        let http = || CaClient::new(config.ca_file.as_deref()).map(Box::new);
        let account = match Storage::read(&path)? {
            Some(json) => {
                let credentials: AccountCredentials =
                    serde_json::from_slice(&json).map_err(|error| AcmeError::Damaged {
                        path: path.clone(),
                        reason: error.to_string(),
                    })?;
                Account::builder_with_http(http()?)
                    .from_credentials(credentials)
                    .await?
            }
            None => {
                let contacts: Vec<&str> = config.contacts.iter().map(String::as_str).collect();
                let (account, credentials) = Account::builder_with_http(http()?)
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        config.directory.clone(),
                        None,
                    )
                    .await?;
                let json =
                    serde_json::to_vec(&credentials).map_err(|error| AcmeError::Damaged {
                        path: path.clone(),
                        reason: error.to_string(),
                    })?;
                Storage::write_private(&path, &json)?;
                tracing::info!(path = %path.display(), "ACME account created");
                account
            }
        };
        *cached = Some(account.clone());
        Ok(account)
    }

    /// Places an order, answers its challenges, and returns the new key
    /// and chain as one PEM.
    async fn issue(&self, account: &Account) -> Result<String, AcmeError> {
        let config = &self.inner.config;
        let names = config.names.join(", ");
        let identifiers: Vec<Identifier> = config
            .names
            .iter()
            .map(|name| Identifier::Dns(name.clone()))
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut answers = Answers {
            challenges: &self.inner.challenges,
            http: Vec::new(),
            tls_alpn: Vec::new(),
        };
        let kind = match config.challenge {
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Challenge::Http01 => ChallengeType::Http01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                status => {
                    return Err(AcmeError::Invalid {
                        names,
                        detail: format!("authorization is {status:?}"),
                    })
                }
            }
            let name = authorization.identifier().to_string();
            let mut challenge =
                authorization
                    .challenge(kind.clone())
                    .ok_or_else(|| AcmeError::NoChallenge {
                        name: name.clone(),
                        challenge: config.challenge.as_str(),
                    })?;
            let key_authorization = challenge.key_authorization();
            match config.challenge {
                Challenge::Http01 => {
                    answers.http.push(challenge.token.clone());
                    self.inner
                        .challenges
                        .add_http01(&challenge.token, key_authorization.as_str())?;
                }
                Challenge::TlsAlpn01 => {
                    answers.tls_alpn.push(name.clone());
                    self.inner
                        .challenges
                        .add_tls_alpn01(&name, key_authorization.digest().as_ref())?;
                }
            }
            challenge.set_ready().await?;
        }
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(config.order_timeout);
        let status = order.poll_ready(&retries).await;
        drop(answers);
        match status {
            Ok(OrderStatus::Ready) => {}
            Ok(status) => {
                return Err(AcmeError::Invalid {
                    names,
                    detail: format!("order is {status:?}"),
                })
            }
            Err(instant_acme::Error::Api(problem)) => {
                return Err(AcmeError::Invalid {
                    names,
                    detail: problem.to_string(),
                })
            }
            Err(error) => return Err(error.into()),
        }
        let mut params = CertificateParams::new(config.names.clone())?;
        params.distinguished_name = DistinguishedName::new();
        let key = KeyPair::generate()?;
        let csr = params.serialize_request(&key)?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&retries).await?;
        Ok(format!("{}{chain}", key.serialize_pem()))
    }
}

/// Removes the challenge answers of an order when it is done, however it
/// ends.
struct Answers<'a> {
    challenges: &'a Challenges,
    http: Vec<String>,
    tls_alpn: Vec<String>,
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        for token in &self.http {
            self.challenges.remove_http01(token);
        }
        for name in &self.tls_alpn {
            self.challenges.remove_tls_alpn01(name);
        }
    }
}

impl fmt::Debug for AcmeManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeManager")
            .field("directory", &self.inner.config.directory)
            .field("names", &self.inner.config.names)
            .field("storage", &self.inner.storage.dir())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn back_off_doubles_within_bounds_and_failures_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on port 1: the directory cannot be fetched.
        let manager = AcmeConfig::new("https://127.0.0.1:1/dir")
            .names(["a.test"])
            .storage(dir.path())
            .retry_backoff(Duration::from_secs(10), Duration::from_secs(60))
            .build()
            .unwrap();
        for (failures, low, high) in [
            (1, 5, 10),
            (2, 10, 20),
            (3, 20, 40),
            (4, 30, 60),
            (40, 30, 60),
        ] {
            let wait = manager.backoff(failures);
            assert!(
                wait >= Duration::from_secs(low) && wait <= Duration::from_secs(high),
                "{failures}: {wait:?}"
            );
        }
        assert_eq!(manager.due_in(), None, "no certificate yet");

        let error = manager.ensure().await.unwrap_err();
        assert!(matches!(error, AcmeError::Protocol(_)), "{error}");
        let status = manager.status();
        assert_eq!((status.issued, status.failures), (0, 1));
        assert!(status.last_error.is_some());
        assert!(manager.certified_key().is_none());
    }

    #[test]
    fn renewal_is_due_when_a_third_of_the_validity_remains_less_some_jitter() {
        let dir = tempfile::tempdir().unwrap();
        let manager = AcmeConfig::new("https://127.0.0.1:1/dir")
            .names(["a.test"])
            .storage(dir.path())
            .build()
            .unwrap();
        let now = SystemTime::now();
        let validity = Validity {
            not_before: now,
            not_after: now + Duration::from_secs(90 * 86_400),
        };
        *lock(&manager.inner.validity) = Some(validity);
        let sixty_days = Duration::from_secs(60 * 86_400);
        for _ in 0..20 {
            let due = manager.due_in().unwrap();
            // 60 days in, minus up to 3 days (a thirtieth of 90).
            assert!(due <= sixty_days, "{due:?}");
            assert!(
                due >= sixty_days - Duration::from_secs(3 * 86_400 + 5),
                "{due:?}"
            );
        }
    }
}
