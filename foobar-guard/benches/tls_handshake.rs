//! TLS handshake cost with the server configuration `TlsConfig` builds:
//! full handshakes per key type, and resumed ones, client and server in
//! one thread over memory (no sockets), so the figures are CPU per
//! handshake for both sides together.
//!
//! Run with `cargo bench -p foobar-guard --bench tls_handshake`.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use foobar_core::tls::{server_name, DevCa, KeyKind};
use foobar_guard::tls::TlsConfig;
use rustls::{
    ClientConfig, ClientConnection, Connection, HandshakeKind, ServerConfig, ServerConnection,
};
use rustls_pki_types::ServerName;

/// Moves every pending TLS record from `from` to `to`.
fn transfer(from: &mut Connection, to: &mut Connection, buf: &mut Vec<u8>) {
    while from.wants_write() {
        buf.clear();
        from.write_tls(buf).expect("writing to memory");
        let mut rd = &buf[..];
        while !rd.is_empty() {
            to.read_tls(&mut rd).expect("reading from memory");
        }
        to.process_new_packets().expect("the handshake proceeds");
    }
}

/// One complete handshake, including the session tickets the server sends
/// after it; returns how it went.
fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    name: &ServerName<'static>,
    buf: &mut Vec<u8>,
) -> Option<HandshakeKind> {
    let mut c = Connection::Client(
        ClientConnection::new(client.clone(), name.clone()).expect("client connection"),
    );
    let mut s =
        Connection::Server(ServerConnection::new(server.clone()).expect("server connection"));
    while c.is_handshaking() || s.is_handshaking() {
        transfer(&mut c, &mut s, buf);
        transfer(&mut s, &mut c, buf);
    }
    transfer(&mut s, &mut c, buf);
    c.handshake_kind()
}

fn server(ca: &DevCa, kind: KeyKind) -> Arc<ServerConfig> {
    let cert = ca
        .server_cert_with(kind, ["bench.test"])
        .expect("a development certificate");
    TlsConfig::builder()
        .identity(cert.identity().expect("a matching key"))
        .build()
        .expect("a valid configuration")
        .current()
}

fn handshakes(c: &mut Criterion) {
    let ca = DevCa::new().expect("a development CA");
    let name = server_name("bench.test").expect("a valid name");
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut group = c.benchmark_group("tls_handshake");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));

    for (label, kind) in [
        ("full_ecdsa_p256", KeyKind::EcdsaP256),
        ("full_ed25519", KeyKind::Ed25519),
        ("full_rsa2048", KeyKind::Rsa2048),
    ] {
        let server = server(&ca, kind);
        let mut client = (*ca.client_tls().build().expect("client config")).clone();
        client.resumption = rustls::client::Resumption::disabled();
        let client = Arc::new(client);
        assert_eq!(
            handshake(&client, &server, &name, &mut buf),
            Some(HandshakeKind::Full)
        );
        group.bench_function(label, |b| {
            b.iter(|| handshake(&client, &server, &name, &mut buf));
        });
    }

    let server = server(&ca, KeyKind::EcdsaP256);
    let client = ca.client_tls().build().expect("client config");
    handshake(&client, &server, &name, &mut buf);
    assert_eq!(
        handshake(&client, &server, &name, &mut buf),
        Some(HandshakeKind::Resumed),
        "the second handshake resumes"
    );
    group.bench_function("resumed_tls13_ticket", |b| {
        b.iter(|| {
            let kind = handshake(&client, &server, &name, &mut buf);
            debug_assert_eq!(kind, Some(HandshakeKind::Resumed));
        });
    });
    group.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
