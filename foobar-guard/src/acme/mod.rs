//! Certificates that manage themselves: ACME (RFC 8555) issuance and
//! renewal, e.g. from Let's Encrypt (feature `acme`).
//!
//! An [`AcmeManager`] keeps one certificate for one or more names:
//! - it asks the CA for it over **TLS-ALPN-01** (answered inside the
//!   [`TlsLayer`](crate::tls::TlsLayer): no other port) or **HTTP-01**
//!   (answered by [`Http01Layer`] on the plain-HTTP listener, in front of
//!   [`RedirectToHttps`]);
//! - it stores the account key and the certificate in a directory (files
//!   0600), so a restart serves the stored certificate and does not
//!   reissue;
//! - it renews when a third of the validity remains (with jitter, and
//!   back-off after failures); the old certificate serves until the new
//!   one is in place, then new handshakes get the new one (swapped
//!   lock-free in the TLS resolver);
//! - several instances (load balancers) may share the directory: an
//!   advisory lock file (`flock`) lets one talk to the CA while the
//!   others wait and then load what it stored, and challenge answers are
//!   written there too, so the instance the CA's validation reaches can
//!   answer it;
//! - wildcard names are refused ([`AcmeError::WildcardName`]): they need
//!   DNS-01.
//!
//! Metrics: `foobar_acme_certificate_expiry_days{name}` (gauge),
//! `foobar_acme_renewals_total{result="success|failure"}`. The status page
//! (`foobar_core::admin`) shows a row per certificate with
//! [`CertificatesStatus`].
//!
//! ```no_run
//! use foobar_core::{PlainTcp, Shutdown};
//! use foobar_guard::acme::{AcmeConfig, Challenge, RedirectToHttps, LETS_ENCRYPT};
//! use foobar_guard::tls::{TlsConfig, TlsLayer};
//! use tower::ServiceBuilder;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let shutdown = Shutdown::on_signals();
//! let acme = AcmeConfig::new(LETS_ENCRYPT)
//!     .names(["www.foobar.com", "foobar.com"])
//!     .contact("mailto:ops@foobar.com")
//!     .storage("/var/lib/foobar/acme")
//!     .challenge(Challenge::TlsAlpn01)
//!     .build()?;
//! acme.spawn(shutdown.clone());
//!
//! // Port 443: the certificate (and the TLS-ALPN-01 answers) from ACME.
//! let tls = TlsConfig::builder().acme(&acme).build()?;
//! let conn_stage = ServiceBuilder::new().layer(TlsLayer::new(tls)).service(PlainTcp);
//!
//! // Port 80: HTTP-01 answers, and a redirect to HTTPS for the rest.
//! let port80 = ServiceBuilder::new()
//!     .layer(acme.http01_layer())
//!     .service(RedirectToHttps::new());
//! # let _ = (conn_stage, port80);
//! # Ok(()) }
//! ```

mod challenges;
mod client;
mod config;
mod error;
mod http01;
mod manager;
mod redirect;
mod status;
mod storage;
mod validity;

pub(crate) use self::challenges::Challenges;
pub use self::challenges::{ACME_TLS_ALPN, HTTP01_PREFIX};
pub use self::config::{AcmeConfig, Challenge, LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
pub use self::error::AcmeError;
pub use self::http01::{ChallengeBody, Http01, Http01Layer, ResponseFuture};
pub use self::manager::{AcmeManager, AcmeStatus, Outcome};
pub use self::redirect::RedirectToHttps;
pub use self::status::CertificatesStatus;
