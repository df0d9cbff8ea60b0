//! The whole stack of the crate docs on real sockets with real TLS:
//! firewall → connection limit → TLS → firewall (request) → rate limit →
//! timeout → body limit → application.

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use foobar_core::tls::{server_name, DevCa};
use foobar_core::PlainTcp;
use foobar_guard::hygiene::{BodyLimitLayer, TimeoutLayer};
use foobar_guard::tls::{TlsConfig, TlsLayer};
use foobar_guard::{ConnLimitLayer, FirewallLayer, RateLimitLayer, Rules, TrustedProxies};
use support::{connect_from, ip, send_raw, serve, App, Reply};
use tokio_rustls::TlsConnector;
use tower::ServiceBuilder;

const RULES: &str = "deny 127.0.0.99\ndeny 203.0.113.0/24\ndefault allow\n";

struct Stack {
    server: support::TestServer,
    client: Arc<rustls::ClientConfig>,
}

/// The stack, with at most `per_client` connections per client.
fn stack(per_client: usize) -> Stack {
    let ca = DevCa::new().unwrap();
    let identity = ca.server_cert(["localhost"]).unwrap().identity().unwrap();
    let tls = TlsConfig::builder().identity(identity).build().unwrap();
    let firewall = FirewallLayer::new(RULES.parse::<Rules>().unwrap())
        .trusted_proxies(TrustedProxies::parse("127.0.0.90").unwrap());
    let conn_stage = ServiceBuilder::new()
        .layer(firewall.clone())
        .layer(ConnLimitLayer::new(100).per_client(per_client))
        .layer(TlsLayer::new(tls))
        .service(PlainTcp);
    let http = ServiceBuilder::new()
        .layer(firewall)
        .layer(RateLimitLayer::with_period(Duration::from_secs(60), 3).unwrap())
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .layer(BodyLimitLayer::new(1024))
        .service(App);
    Stack {
        server: serve(conn_stage, http),
        client: ca.client_tls().build().unwrap(),
    }
}

impl Stack {
    /// A TLS connection from `source`; `Err` if the handshake fails.
    async fn tls_from(
        &self,
        source: IpAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = connect_from(source, self.server.addr).await;
        tokio::time::timeout(
            support::DEADLINE,
            TlsConnector::from(self.client.clone()).connect(server_name("localhost").unwrap(), tcp),
        )
        .await
        .expect("the handshake ends in time")
    }

    async fn get(&self, source: IpAddr, path: &str, headers: &str) -> Reply {
        let mut stream = self.tls_from(source).await.expect("handshake");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
        send_raw(&mut stream, request.as_bytes()).await
    }
}

#[tokio::test]
async fn allowed_clients_are_served_over_tls_and_denied_ones_get_no_handshake() {
    let stack = stack(100);
    let reply = stack.get(ip("127.0.0.91"), "/client", "").await;
    assert_eq!(reply.status(), Some(200), "{reply:?}");
    assert_eq!(reply.body(), "127.0.0.91");
    // Denied at connection level: closed before the server says anything.
    assert!(stack.tls_from(ip("127.0.0.99")).await.is_err());
}

#[tokio::test]
async fn rate_limit_and_body_limit_apply_behind_tls_and_a_trusted_proxy() {
    // Sequential connections from the proxy must not meet the connection
    // limit while earlier ones are still being torn down.
    let stack = stack(100);
    // Through the trusted proxy 127.0.0.90, two clients with their own
    // buckets of 3.
    for _ in 0..3 {
        let reply = stack
            .get(
                ip("127.0.0.90"),
                "/client",
                "X-Forwarded-For: 198.51.100.5\r\n",
            )
            .await;
        assert_eq!(reply.body(), "198.51.100.5");
    }
    let limited = stack
        .get(ip("127.0.0.90"), "/", "X-Forwarded-For: 198.51.100.5\r\n")
        .await;
    assert_eq!(limited.status(), Some(429));
    assert!(limited.header("retry-after").is_some());
    let other = stack
        .get(ip("127.0.0.90"), "/", "X-Forwarded-For: 198.51.100.6\r\n")
        .await;
    assert_eq!(other.status(), Some(200));
    // A forwarded client that the rules deny gets 403 at request level.
    let denied = stack
        .get(ip("127.0.0.90"), "/", "X-Forwarded-For: 203.0.113.9\r\n")
        .await;
    assert_eq!(denied.status(), Some(403));

    let mut stream = stack.tls_from(ip("127.0.0.92")).await.unwrap();
    let big = "POST /read HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n";
    assert_eq!(
        send_raw(&mut stream, big.as_bytes()).await.status(),
        Some(413)
    );
}

#[tokio::test]
async fn the_connection_limit_applies_before_the_handshake() {
    let stack = stack(3);
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut stream = stack.tls_from(ip("127.0.0.93")).await.unwrap();
        let reply = send_raw(&mut stream, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert_eq!(reply.status(), Some(200));
        open.push(stream);
    }
    assert!(
        stack.tls_from(ip("127.0.0.93")).await.is_err(),
        "a fourth connection got a handshake"
    );
    assert_eq!(
        stack.get(ip("127.0.0.94"), "/", "").await.status(),
        Some(200)
    );
    assert_ne!(stack.get(ip("127.0.0.94"), "/", "").await, Reply::Closed);
}
