//! PROXY protocol v1 and v2 on real sockets: parsed from trusted proxies,
//! refused from anyone else.

mod support;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use foobar_core::PlainTcp;
use foobar_guard::proxy_protocol::ProxyProtocolLayer;
use foobar_guard::{FirewallLayer, TrustedProxies};
use support::{connect_from, ip, send_raw, serve, App, Reply};
use tokio::io::AsyncWriteExt;
use tower::ServiceBuilder;

const TRUSTED: &str = "127.0.0.50";
const UNTRUSTED: &str = "127.0.0.51";

fn server() -> support::TestServer {
    let stage = ServiceBuilder::new()
        .layer(
            ProxyProtocolLayer::new(TrustedProxies::parse(TRUSTED).unwrap())
                .read_timeout(Duration::from_millis(500)),
        )
        .service(PlainTcp);
    serve(stage, App)
}

fn v2_header(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x21); // version 2, PROXY
    match (client, server) {
        (SocketAddr::V6(c), SocketAddr::V6(s)) => {
            header.push(0x21); // TCP over IPv6
            header.extend_from_slice(&(36u16 + 7).to_be_bytes());
            header.extend_from_slice(&c.ip().octets());
            header.extend_from_slice(&s.ip().octets());
            header.extend_from_slice(&c.port().to_be_bytes());
            header.extend_from_slice(&s.port().to_be_bytes());
        }
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            header.push(0x11); // TCP over IPv4
            header.extend_from_slice(&(12u16 + 7).to_be_bytes());
            header.extend_from_slice(&c.ip().octets());
            header.extend_from_slice(&s.ip().octets());
            header.extend_from_slice(&c.port().to_be_bytes());
            header.extend_from_slice(&s.port().to_be_bytes());
        }
        _ => panic!("one family"),
    }
    // A TLV (type 0x04, NOOP) the layer must skip.
    header.extend_from_slice(&[0x04, 0x00, 0x04, 1, 2, 3, 4]);
    header
}

const REQUEST: &[u8] = b"GET /conn HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn v1_header_from_a_trusted_proxy_sets_the_client() {
    let server = server();
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    let mut bytes = b"PROXY TCP4 192.0.2.9 127.0.0.1 40001 80\r\n".to_vec();
    bytes.extend_from_slice(REQUEST);
    let reply = send_raw(&mut stream, &bytes).await;
    assert_eq!(reply.status(), Some(200), "{reply:?}");
    assert_eq!(reply.body(), "192.0.2.9:40001");
}

#[tokio::test]
async fn v2_header_from_a_trusted_proxy_sets_the_client_even_when_split() {
    let server = server();
    let client = SocketAddr::new("2001:db8::42".parse::<Ipv6Addr>().unwrap().into(), 50123);
    let header = v2_header(client, "[2001:db8::1]:443".parse().unwrap());
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    // The header arrives in two pieces; the request right behind it.
    stream.write_all(&header[..10]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut rest = header[10..].to_vec();
    rest.extend_from_slice(REQUEST);
    let reply = send_raw(&mut stream, &rest).await;
    assert_eq!(reply.body(), "[2001:db8::42]:50123", "{reply:?}");

    let v4 = v2_header(
        "198.51.100.3:1234".parse().unwrap(),
        "127.0.0.1:80".parse().unwrap(),
    );
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    let reply = send_raw(&mut stream, &[v4, REQUEST.to_vec()].concat()).await;
    assert_eq!(reply.body(), "198.51.100.3:1234");
}

#[tokio::test]
async fn a_local_or_unknown_header_keeps_the_proxy_address() {
    let server = server();
    let mut local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    local.extend_from_slice(REQUEST);
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    let reply = send_raw(&mut stream, &local).await;
    assert!(reply.body().starts_with("127.0.0.50:"), "{reply:?}");
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    let reply = send_raw(
        &mut stream,
        &[b"PROXY UNKNOWN\r\n".as_slice(), REQUEST].concat(),
    )
    .await;
    assert!(reply.body().starts_with("127.0.0.50:"), "{reply:?}");
}

#[tokio::test]
async fn headers_from_untrusted_peers_are_refused() {
    let server = server();
    let mut stream = connect_from(ip(UNTRUSTED), server.addr).await;
    let v1 = [
        b"PROXY TCP4 192.0.2.9 127.0.0.1 40001 80\r\n".as_slice(),
        REQUEST,
    ]
    .concat();
    assert_eq!(send_raw(&mut stream, &v1).await, Reply::Closed);
    let mut stream = connect_from(ip(UNTRUSTED), server.addr).await;
    let v2 = [
        v2_header(
            "192.0.2.9:1".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
        ),
        REQUEST.to_vec(),
    ]
    .concat();
    assert_eq!(send_raw(&mut stream, &v2).await, Reply::Closed);
    // Without a header an untrusted client is served as itself.
    let mut stream = connect_from(ip(UNTRUSTED), server.addr).await;
    let plain = send_raw(&mut stream, REQUEST).await;
    assert!(plain.body().starts_with("127.0.0.51:"), "{plain:?}");
}

#[tokio::test]
async fn trusted_peers_must_send_a_valid_header_in_time() {
    let server = server();
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    assert_eq!(send_raw(&mut stream, REQUEST).await, Reply::Closed);
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    let bad = [
        b"PROXY TCP4 192.0.2.999 127.0.0.1 1 2\r\n".as_slice(),
        REQUEST,
    ]
    .concat();
    assert_eq!(send_raw(&mut stream, &bad).await, Reply::Closed);
    // Half a header, then silence: closed after the read timeout.
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    let started = std::time::Instant::now();
    assert_eq!(
        send_raw(&mut stream, b"PROXY TCP4 192.0.2.9").await,
        Reply::Closed
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_firewall_after_it_checks_the_real_client() {
    let stage = ServiceBuilder::new()
        .layer(ProxyProtocolLayer::new(
            TrustedProxies::parse(TRUSTED).unwrap(),
        ))
        .layer(FirewallLayer::new("deny 192.0.2.0/24\n".parse().unwrap()))
        .service(PlainTcp);
    let server = serve(stage, App);
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    let denied = [
        b"PROXY TCP4 192.0.2.9 127.0.0.1 40001 80\r\n".as_slice(),
        REQUEST,
    ]
    .concat();
    assert_eq!(send_raw(&mut stream, &denied).await, Reply::Closed);
    let mut stream = connect_from(ip(TRUSTED), server.addr).await;
    let allowed = [
        b"PROXY TCP4 198.51.100.9 127.0.0.1 40001 80\r\n".as_slice(),
        REQUEST,
    ]
    .concat();
    assert_eq!(
        send_raw(&mut stream, &allowed).await.body(),
        "198.51.100.9:40001"
    );
}
