//! The PROXY protocol header parser, reachable from outside the crate for
//! fuzz targets and their regression tests (feature `fuzzing`).
//!
//! [`ProxyProtocolLayer`](crate::ProxyProtocolLayer) parses headers with a
//! crate-private function; this module hands its result on unchanged, so
//! that a fuzz target checks the code that serves connections. It is no
//! stable API: an application has no use for it.

use std::net::SocketAddr;

use crate::error::ProxyHeaderError;
use crate::proxy_protocol::header::{self, Parsed};

/// What the start of a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// More bytes are needed to decide.
    Incomplete,
    /// A complete header of `len` bytes announcing `client` (`None`: a v1
    /// `UNKNOWN` or v2 `LOCAL` header, or an address family without an IP
    /// address).
    Header {
        /// The header's length in bytes.
        len: usize,
        /// The client it announces.
        client: Option<SocketAddr>,
    },
    /// The stream does not start with a PROXY header.
    NotProxy,
}

/// Parses the PROXY header at the start of `buf` as the layer does for a
/// trusted peer.
///
/// # Errors
/// [`ProxyHeaderError::Malformed`] naming what is wrong.
pub fn parse_proxy_header(buf: &[u8]) -> Result<ProxyHeader, ProxyHeaderError> {
    Ok(
        match header::parse(buf).map_err(ProxyHeaderError::Malformed)? {
            Parsed::Incomplete => ProxyHeader::Incomplete,
            Parsed::Header { len, client } => ProxyHeader::Header { len, client },
            Parsed::NotProxy => ProxyHeader::NotProxy,
        },
    )
}

/// Whether `buf` starts with a PROXY signature (`None`: too few bytes to
/// tell), as the layer decides for an untrusted peer.
pub fn starts_like_proxy(buf: &[u8]) -> Option<bool> {
    header::starts_like_proxy(buf)
}
