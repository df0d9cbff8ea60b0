//! OCSP stapling (feature `ocsp`): each certificate served is sent with
//! a current response from its issuer's OCSP responder, so clients need
//! not ask the responder themselves.
//!
//! Turned on with [`TlsConfigBuilder::ocsp_stapling`](super::TlsConfigBuilder::ocsp_stapling)
//! and kept current by [`TlsConfig::staple_ocsp`](super::TlsConfig::staple_ocsp):
//! - the responder is the one named in the certificate's authority
//!   information access extension; the issuer is the next certificate of
//!   the chain;
//! - a response is stapled only if it is successful, about this very
//!   certificate (its CertID matches), and current (`thisUpdate` passed,
//!   `nextUpdate` not); a revoked status is stapled as it is;
//! - it is fetched again halfway to its `nextUpdate`; a failed fetch keeps
//!   the current response while it is valid, serves without one after,
//!   retries with back-off, and is counted in
//!   `foobar_tls_ocsp_fetches_total{result="failure"}`;
//! - responses are kept across reloads, and a certificate renewed by an
//!   ACME manager is stapled at the next pass (within a minute).

mod fetch;
mod request;
mod response;
mod stapler;

pub use self::fetch::FetchError;
pub(crate) use self::fetch::Fetcher;
pub use self::response::{CertStatus, ResponseProblem};
pub use self::stapler::OcspReport;
pub(crate) use self::stapler::{refresh, Metrics, Slot, Staples};
