//! TLS building blocks shared by every foobar crate: PEM loading, certificate
//! identities, client configurations and development certificates.
//!
//! - [`pem`] reads certificate chains, private keys (RSA, ECDSA, Ed25519 in
//!   PKCS#1, SEC1 or PKCS#8 form) and CA bundles from PEM files or buffers.
//!   Every failure is a [`TlsError`] that names the file.
//! - [`Identity`] is a certificate chain with its private key, checked to
//!   match when it is loaded: what a server presents, or what a client
//!   presents for mutual TLS.
//! - [`ClientTls`] builds an `Arc<rustls::ClientConfig>` for outgoing
//!   connections (HTTPS upstreams, database TLS): a CA bundle you name, an
//!   optional client certificate, ALPN protocols. [`server_name`] turns a
//!   host string into the name the client verifies.
//! - `DevCa` (feature `dev-certs`) makes a CA and leaf certificates at run
//!   time for tests and examples.
//!
//! Every configuration uses the aws-lc-rs [`provider`] explicitly, so no
//! process-wide rustls provider has to be installed.
//!
//! ```
//! use foobar_core::tls::{server_name, ClientTls};
//!
//! # fn run(ca_file: &std::path::Path) -> Result<(), foobar_core::tls::TlsError> {
//! let config = ClientTls::new()
//!     .ca_file(ca_file)
//!     .alpn(["h2", "http/1.1"])
//!     .build()?;
//! let name = server_name("web1.internal")?;
//! // hand `config` to tokio_rustls::TlsConnector, `name` to its `connect`.
//! # let _ = (config, name);
//! # Ok(()) }
//! ```

mod client;
#[cfg(feature = "dev-certs")]
mod dev;
mod error;
mod identity;
pub mod pem;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use self::client::{server_name, ClientTls};
#[cfg(feature = "dev-certs")]
#[cfg_attr(docsrs, doc(cfg(feature = "dev-certs")))]
pub use self::dev::{DevCa, DevCert, DevCertFiles, KeyKind};
pub use self::error::{Material, Origin, PemProblem, TlsError};
pub use self::identity::Identity;

/// The protocol versions foobar speaks: TLS 1.3 and TLS 1.2, nothing older.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto provider every foobar TLS configuration uses: aws-lc-rs with
/// its default cipher suites and key exchange groups.
///
/// Built once and shared.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}
