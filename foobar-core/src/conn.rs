//! What the server knows about an accepted connection.
//!
//! [`Accepted`] is the request type of the connection stage: connection-level
//! layers (firewall, limits, PROXY protocol, TLS) are `tower::Service`s from
//! `Accepted<IO>` to `Accepted<IO2>`. [`ConnInfo`] travels with the stream and
//! ends up in every HTTP request's extensions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls_pki_types::CertificateDer;

/// Facts about one accepted connection.
///
/// The server inserts a clone into the extensions of every request served on
/// the connection, so handlers and request-level layers can read it with
/// `req.extensions().get::<ConnInfo>()`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The TCP peer: the address the connection really came from.
    pub peer: SocketAddr,
    /// The local address the connection was accepted on.
    pub local: SocketAddr,
    /// The original client address announced by a trusted PROXY protocol
    /// header, when a layer in front of the server accepted one.
    pub proxied_client: Option<SocketAddr>,
    /// TLS details, filled in by a TLS termination layer.
    pub tls: Option<Arc<TlsInfo>>,
    /// When the connection was accepted.
    pub accepted_at: Instant,
}

impl ConnInfo {
    /// Info for a connection from `peer` accepted on `local`, now.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        Self {
            peer,
            local,
            proxied_client: None,
            tls: None,
            accepted_at: Instant::now(),
        }
    }

    /// The best known client address at connection level: the trusted PROXY
    /// protocol address if any, else the TCP peer.
    pub fn client_addr(&self) -> SocketAddr {
        self.proxied_client.unwrap_or(self.peer)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// The upstream (backend) a proxy sent a request to, in the response's
/// extensions: the access log writes it, and the application may read it.
/// foobar-lb's proxy sets it to the backend's name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamName(pub Arc<str>);

/// What a TLS termination layer learned during the handshake.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The server name the client asked for (SNI).
    pub server_name: Option<String>,
    /// The negotiated ALPN protocol, e.g. `b"h2"`.
    pub alpn_protocol: Option<Vec<u8>>,
    /// The negotiated protocol version.
    pub protocol_version: Option<rustls::ProtocolVersion>,
    /// The negotiated cipher suite.
    pub cipher_suite: Option<rustls::CipherSuite>,
    /// The client's certificate chain, end-entity first, when the client
    /// presented one.
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

impl TlsInfo {
    /// Whether HTTP/2 was negotiated by ALPN.
    pub fn is_h2(&self) -> bool {
        self.alpn_protocol.as_deref() == Some(b"h2")
    }
}

/// An accepted connection: the stream and what is known about it.
#[derive(Debug)]
pub struct Accepted<IO> {
    /// The byte stream (a `TcpStream`, or a TLS stream after a TLS layer).
    pub io: IO,
    /// Facts about the connection.
    pub info: ConnInfo,
}

impl<IO> Accepted<IO> {
    /// Pairs a stream with its info.
    pub fn new(io: IO, info: ConnInfo) -> Self {
        Self { io, info }
    }

    /// Replaces the stream, keeping the info (what a TLS layer does).
    pub fn map_io<IO2>(self, f: impl FnOnce(IO) -> IO2) -> Accepted<IO2> {
        Accepted {
            io: f(self.io),
            info: self.info,
        }
    }
}
