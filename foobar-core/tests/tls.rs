//! foobar_core::tls: PEM loading, identities, client configs and dev
//! certificates, with real handshakes over loopback sockets.

use std::sync::Arc;
use std::time::Duration;

use foobar_core::tls::{
    pem, provider, server_name, ClientTls, DevCa, DevCert, Identity, KeyKind, Material, PemProblem,
    TlsError,
};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A fresh directory under the system temp dir, removed on drop.
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("foobar-core-tls-{tag}-"))
        .tempdir()
        .unwrap()
}

#[test]
fn every_key_kind_loads_from_files() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("kinds");
    for kind in [
        KeyKind::EcdsaP256,
        KeyKind::EcdsaP384,
        KeyKind::Ed25519,
        KeyKind::Rsa2048,
    ] {
        let cert = ca.server_cert_with(kind, ["kind.test"]).unwrap();
        let files = cert.write_pem(dir.path(), &format!("{kind:?}")).unwrap();
        let identity = Identity::from_pem_files(&files.cert, &files.key)
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(identity.end_entity(), cert.cert_der(), "{kind:?}");
        assert_eq!(pem::load_certs(&files.cert).unwrap().len(), 1);
        pem::load_private_key(&files.key).unwrap();
    }
}

/// Splits a DER TLV at the start of `der`: (tag, contents, rest).
fn tlv(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, first) = (der[0], der[1]);
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    (tag, &der[header..header + len], &der[header + len..])
}

/// The algorithm-specific key inside a PKCS#8 PrivateKeyInfo: an RSA key
/// in PKCS#1 form, an EC key in SEC1 form.
fn unwrap_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info, _) = tlv(pkcs8);
    let (_, _version, rest) = tlv(info);
    let (_, _algorithm, rest) = tlv(rest);
    let (tag, key, _) = tlv(rest);
    assert_eq!(tag, 0x04, "privateKey OCTET STRING");
    key.to_vec()
}

fn to_pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                b64.push('=');
            }
        }
    }
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn pkcs1_rsa_and_sec1_ec_keys_load_and_match() {
    let ca = DevCa::new().unwrap();
    for (kind, label) in [
        (KeyKind::Rsa2048, "RSA PRIVATE KEY"),
        (KeyKind::EcdsaP256, "EC PRIVATE KEY"),
        (KeyKind::EcdsaP384, "EC PRIVATE KEY"),
    ] {
        let cert = ca.server_cert_with(kind, ["legacy.test"]).unwrap();
        let pkcs8 = pem::private_key_from_pem(cert.key_pem().as_bytes()).unwrap();
        let legacy = to_pem(label, &unwrap_pkcs8(pkcs8.secret_der()));
        let key = pem::private_key_from_pem(legacy.as_bytes())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert!(
            matches!(
                (&key, kind),
                (rustls_pki_types::PrivateKeyDer::Pkcs1(_), KeyKind::Rsa2048)
                    | (rustls_pki_types::PrivateKeyDer::Sec1(_), _)
            ),
            "{kind:?}"
        );
        let identity = Identity::from_pem(cert.cert_pem().as_bytes(), legacy.as_bytes())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(identity.end_entity(), cert.cert_der());
    }
}

#[test]
fn key_of_another_certificate_is_a_mismatch_naming_both_files() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("mismatch");
    let a = ca
        .server_cert(["a.test"])
        .unwrap()
        .write_pem(dir.path(), "a")
        .unwrap();
    let b = ca
        .server_cert(["b.test"])
        .unwrap()
        .write_pem(dir.path(), "b")
        .unwrap();
    let err = Identity::from_pem_files(&a.cert, &b.key).unwrap_err();
    match &err {
        TlsError::KeyMismatch { certificate, key } => {
            assert_eq!(certificate.path(), Some(a.cert.as_path()));
            assert_eq!(key.path(), Some(b.key.as_path()));
        }
        other => panic!("unexpected error: {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("a.crt") && text.contains("b.key"), "{text}");
}

#[test]
fn corrupt_pem_file_is_a_pem_error_naming_the_file() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("corrupt");
    let good = ca
        .server_cert(["c.test"])
        .unwrap()
        .write_pem(dir.path(), "c")
        .unwrap();

    // Cut the certificate in half: the END line is gone.
    let pem_text = std::fs::read_to_string(&good.cert).unwrap();
    let broken = dir.path().join("broken.crt");
    std::fs::write(&broken, &pem_text[..pem_text.len() / 2]).unwrap();
    let err = Identity::from_pem_files(&broken, &good.key).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { what: Material::Certificate, origin, problem: PemProblem::Syntax(_) } if origin.path() == Some(broken.as_path())),
        "{err}"
    );

    // A certificate where a key should be.
    let err = Identity::from_pem_files(&good.cert, &good.cert).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { what: Material::PrivateKey, origin, problem: PemProblem::NoSection { .. } } if origin.path() == Some(good.cert.as_path())),
        "{err}"
    );

    // Valid PEM whose DER is not a certificate.
    let junk = dir.path().join("junk.crt");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Identity::from_pem_files(&junk, &good.key).unwrap_err();
    assert!(
        matches!(&err, TlsError::Pem { what: Material::Certificate, origin, .. } if origin.path() == Some(junk.as_path())),
        "{err}"
    );
}

#[test]
fn missing_files_are_read_errors_naming_the_file() {
    let dir = temp_dir("missing");
    let cert = dir.path().join("nope.crt");
    let err = Identity::from_pem_files(&cert, dir.path().join("nope.key")).unwrap_err();
    assert!(
        matches!(&err, TlsError::ReadFile { what: Material::Certificate, path, .. } if path == &cert),
        "{err}"
    );
    let ca = dir.path().join("nope-ca.pem");
    let err = ClientTls::new().ca_file(&ca).build().unwrap_err();
    assert!(
        matches!(&err, TlsError::ReadFile { what: Material::CaBundle, path, .. } if path == &ca),
        "{err}"
    );
}

#[test]
fn client_tls_requires_a_ca() {
    assert!(matches!(
        ClientTls::new().build().unwrap_err(),
        TlsError::NoTrustAnchors
    ));
}

#[test]
fn server_names_are_parsed_or_rejected_by_name() {
    assert!(matches!(
        server_name("db1.internal").unwrap(),
        rustls_pki_types::ServerName::DnsName(_)
    ));
    assert!(matches!(
        server_name("127.0.0.1").unwrap(),
        rustls_pki_types::ServerName::IpAddress(_)
    ));
    assert!(matches!(
        server_name("[::1]").unwrap(),
        rustls_pki_types::ServerName::IpAddress(_)
    ));
    for bad in ["", "has space.example", "under_score!.example", "[::1"] {
        match server_name(bad) {
            Err(TlsError::InvalidServerName { name, .. }) => assert_eq!(name, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn dev_ca_refuses_bad_names_with_a_typed_error() {
    let ca = DevCa::new().unwrap();
    assert!(matches!(
        ca.server_cert(Vec::<String>::new()),
        Err(TlsError::NoCertificateName)
    ));
    assert!(matches!(
        ca.server_cert(["bad name with spaces ü"]),
        Err(TlsError::DevCert(_))
    ));
}

/// A one-shot TLS echo server on 127.0.0.1: returns its address and a task
/// yielding the client certificate chain length it saw (or the error).
async fn echo_server(
    config: ServerConfig,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<Result<usize, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let seen = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok(seen)
    });
    (addr, task)
}

fn server_config(ca: &DevCa, leaf: &DevCert, require_client_cert: bool) -> ServerConfig {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(foobar_core::tls::PROTOCOL_VERSIONS)
        .unwrap();
    let builder = if require_client_cert {
        let roots = pem::ca_bundle_from_pem(ca.cert_pem().as_bytes()).unwrap();
        builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap(),
        )
    } else {
        builder.with_no_client_auth()
    };
    let identity = leaf.identity().unwrap();
    builder
        .with_single_cert(
            identity.chain().to_vec(),
            identity.private_key().clone_key(),
        )
        .unwrap()
}

async fn ping(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
    host: &str,
) -> std::io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = TlsConnector::from(config)
        .connect(server_name(host).unwrap(), tcp)
        .await?;
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"ping");
    Ok(())
}

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn client_verifies_a_wildcard_server_certificate_from_its_ca() {
    let ca = DevCa::new().unwrap();
    let leaf = ca.server_cert(["*.foobar.test", "127.0.0.1"]).unwrap();
    let (addr, server) = echo_server(server_config(&ca, &leaf, false)).await;
    let config = ca.client_tls().alpn(["h2", "http/1.1"]).build().unwrap();
    tokio::time::timeout(DEADLINE, ping(config, addr, "www.foobar.test"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.await.unwrap().unwrap(), 0);
}

#[tokio::test]
async fn client_refuses_a_server_from_another_ca() {
    let ca = DevCa::new().unwrap();
    let other = DevCa::with_name("someone else's CA").unwrap();
    let leaf = ca.server_cert(["127.0.0.1"]).unwrap();
    let (addr, _server) = echo_server(server_config(&ca, &leaf, false)).await;
    let config = other.client_tls().build().unwrap();
    let err = tokio::time::timeout(DEADLINE, ping(config, addr, "127.0.0.1"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn client_certificate_from_files_is_presented_for_mtls() {
    let ca = DevCa::new().unwrap();
    let dir = temp_dir("mtls");
    let leaf = ca.server_cert(["localhost"]).unwrap();
    let client = ca
        .client_cert("lb.internal")
        .unwrap()
        .write_pem(dir.path(), "lb")
        .unwrap();
    let ca_file = ca.write_pem(dir.path()).unwrap();

    let (addr, server) = echo_server(server_config(&ca, &leaf, true)).await;
    let config = ClientTls::new()
        .ca_file(&ca_file)
        .identity_files(&client.cert, &client.key)
        .build()
        .unwrap();
    tokio::time::timeout(DEADLINE, ping(config, addr, "localhost"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        server.await.unwrap().unwrap(),
        1,
        "the server saw one client certificate"
    );

    // Without the client certificate the server refuses the handshake.
    let (addr, server) = echo_server(server_config(&ca, &leaf, true)).await;
    let config = ClientTls::new().ca_file(&ca_file).build().unwrap();
    // With TLS 1.3 the client may finish first and learn of the refusal
    // only when it reads.
    let _ = tokio::time::timeout(DEADLINE, ping(config, addr, "localhost"))
        .await
        .unwrap();
    let refused = server.await.unwrap().unwrap_err();
    assert!(
        refused.contains("NoCertificatesPresented") || refused.contains("certificate"),
        "{refused}"
    );
}
