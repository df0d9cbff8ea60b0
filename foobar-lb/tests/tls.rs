//! HTTPS upstreams: a custom CA, HTTP/1.1 by default and HTTP/2 when
//! asked, sessions resumed, and mutual TLS where the backend refuses a
//! proxy without the client certificate.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use foobar_core::tls::{DevCa, Identity};
use foobar_core::RequestBody;
use foobar_core::{Accepted, BoxError, Server, Shutdown};
use foobar_lb::health::HealthCheck;
use foobar_lb::policy::RoundRobin;
use foobar_lb::Proxy;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use support::*;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// An HTTPS backend (h2 and http/1.1 by ALPN) that requires a client
/// certificate from `ca` when `require_client_cert`; it answers with the
/// HTTP version it saw, and counts the handshakes that resumed a session.
async fn https_backend(ca: &DevCa, require_client_cert: bool) -> (TestServer, String) {
    https_backend_counting(ca, require_client_cert, Arc::default()).await
}

async fn https_backend_counting(
    ca: &DevCa,
    require_client_cert: bool,
    handshakes: Arc<Mutex<Vec<Option<rustls::HandshakeKind>>>>,
) -> (TestServer, String) {
    let cert = ca.server_cert(["127.0.0.1"]).unwrap();
    let identity = cert.identity().unwrap();
    let provider = foobar_core::tls::provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(foobar_core::tls::PROTOCOL_VERSIONS)
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(
            identity.chain().to_vec(),
            identity.private_key().clone_key(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let tls_stage = tower::service_fn(move |accepted: Accepted<TcpStream>| {
        let acceptor = acceptor.clone();
        let handshakes = handshakes.clone();
        async move {
            let Accepted { io, info } = accepted;
            let tls: TlsStream<TcpStream> = acceptor.accept(io).await?;
            handshakes
                .lock()
                .unwrap()
                .push(tls.get_ref().1.handshake_kind());
            Ok::<_, BoxError>(Accepted::new(tls, info))
        }
    });
    let app = tower::service_fn(|req: Request<RequestBody>| async move {
        let body = format!("{:?}", req.version());
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    let shutdown = Shutdown::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .build()
        .unwrap();
    let addr = server.local_addr();
    let task = tokio::spawn(async move {
        server.serve_connections(tls_stage, app).await.unwrap();
    });
    let url = format!("https://{addr}");
    (
        TestServer {
            addr,
            shutdown,
            task,
        },
        url,
    )
}

fn client_identity(ca: &DevCa) -> Identity {
    ca.client_cert("lb.internal").unwrap().identity().unwrap()
}

#[tokio::test]
async fn https_upstream_with_mtls_is_served_and_refused_without_the_certificate() {
    let ca = DevCa::new().unwrap();
    let (_backend, url) = https_backend(&ca, true).await;

    // With the client certificate: served, over HTTP/1.1 by default and
    // HTTP/2 (by ALPN) when asked.
    for (http2, version) in [(false, "HTTP/1.1"), (true, "HTTP/2.0")] {
        let proxy = Proxy::builder(RoundRobin::new())
            .tls(ca.client_tls().identity(client_identity(&ca)))
            .http2_only(http2)
            .build()
            .unwrap();
        proxy.add_backend(&url).unwrap();
        let front = serve_proxy(proxy).await;
        let (status, body) = get(&client(), &front.url()).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, version));
    }

    // Without it: the backend refuses the handshake, the proxy answers 502.
    let anonymous = Proxy::builder(RoundRobin::new())
        .tls(ca.client_tls())
        .retry_budget(None)
        .build()
        .unwrap();
    let backend = anonymous.add_backend(&url).unwrap();
    let checker = HealthCheck::http("/")
        .interval(std::time::Duration::from_millis(50))
        .fall(1)
        .spawn_http(anonymous.backends());
    let front = serve_proxy(anonymous.clone()).await;
    let (status, _) = get(&client(), &front.url()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // And health checks through the same TLS client see it down.
    wait_until(std::time::Duration::from_secs(5), "backend down", || {
        backend.health() == foobar_core::status::Health::Down
    })
    .await;
    checker.abort();
}

#[tokio::test]
async fn https_upstream_connections_resume_their_tls_sessions() {
    let ca = DevCa::new().unwrap();
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let (_backend, url) = https_backend_counting(&ca, true, handshakes.clone()).await;
    // No idle connections kept: every request opens a new one.
    let proxy = Proxy::builder(RoundRobin::new())
        .tls(ca.client_tls().identity(client_identity(&ca)))
        .max_idle_per_backend(0)
        .build()
        .unwrap();
    proxy.add_backend(&url).unwrap();
    let front = serve_proxy(proxy).await;
    for _ in 0..4 {
        assert_eq!(get(&client(), &front.url()).await.0, StatusCode::OK);
    }
    let kinds = handshakes.lock().unwrap().clone();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert_eq!(kinds[0], Some(rustls::HandshakeKind::Full));
    assert!(
        kinds[1..]
            .iter()
            .all(|k| *k == Some(rustls::HandshakeKind::Resumed)),
        "later connections resume: {kinds:?}"
    );
}

#[tokio::test]
async fn https_upstream_from_another_ca_is_rejected() {
    let ca = DevCa::new().unwrap();
    let other = DevCa::with_name("some other CA").unwrap();
    let (_backend, url) = https_backend(&ca, false).await;
    let proxy = Proxy::builder(RoundRobin::new())
        .tls(other.client_tls())
        .retry_budget(None)
        .build()
        .unwrap();
    proxy.add_backend(&url).unwrap();
    let front = serve_proxy(proxy).await;
    assert_eq!(
        get(&client(), &front.url()).await.0,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test]
async fn https_upstream_without_tls_config_is_a_named_error() {
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    let err = proxy
        .add_backend("https://127.0.0.1:8443")
        .unwrap_err()
        .to_string();
    assert!(err.contains("https://127.0.0.1:8443"), "{err}");
    assert!(err.contains("TLS"), "{err}");
}
