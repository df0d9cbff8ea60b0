//! The connection-flood client of `bench/floods.sh` (not a test): holds
//! connections against a TLS listener on loopback, or opens TLS
//! handshakes as fast as it can, for a bounded time, and prints what it
//! saw as one line of `key=value` pairs.
//!
//! ```text
//! flood idle      TARGET COUNT SECONDS SOURCES   hold COUNT silent TCP connections
//! flood stalled   TARGET COUNT SECONDS SOURCES   hold COUNT handshakes stopped after the ClientHello
//! flood handshake TARGET TASKS SECONDS CA_PEM    TASKS loops of connect, full handshake, close, from 127.0.0.2
//! ```
//!
//! Connections come from `SOURCES` addresses, 127.0.1.1 onwards, so that
//! per-client connection limits are not what stops them; any the server
//! closes are opened again, as an attacker would.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    /// Connections the server ended (or refused at once).
    ended: AtomicU64,
    /// Connects that failed (the listener's backlog full, descriptors out).
    failed: AtomicU64,
    handshakes: AtomicU64,
}

fn usage() -> ! {
    eprintln!("usage: flood idle|stalled TARGET COUNT SECONDS SOURCES | flood handshake TARGET TASKS SECONDS CA_PEM");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [mode, target, count, seconds, last] = args.as_slice() else {
        usage()
    };
    let target: SocketAddr = target.parse().unwrap_or_else(|_| usage());
    assert!(target.ip().is_loopback(), "floods target loopback only");
    let count: usize = count.parse().unwrap_or_else(|_| usage());
    let seconds: u64 = seconds.parse().unwrap_or_else(|_| usage());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let counts = Arc::new(Counts::default());
    let until = Instant::now() + Duration::from_secs(seconds.min(600));
    runtime.block_on(async {
        let mut tasks = Vec::new();
        match mode.as_str() {
            "idle" | "stalled" => {
                let sources: u32 = last.parse().unwrap_or_else(|_| usage());
                let hello = (mode == "stalled").then(client_hello);
                for i in 0..count {
                    let source = source_addr(i as u32 % sources.clamp(1, 65_000));
                    let hello = hello.clone();
                    let counts = counts.clone();
                    tasks.push(tokio::spawn(hold(target, source, hello, until, counts)));
                    if i % 500 == 499 {
                        // Let the listener's backlog drain.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            "handshake" => {
                let config = foobar_core::tls::ClientTls::new()
                    .ca_file(last)
                    .build()
                    .expect("the CA loads");
                for _ in 0..count {
                    tasks.push(tokio::spawn(handshakes(
                        target,
                        config.clone(),
                        until,
                        counts.clone(),
                    )));
                }
            }
            _ => usage(),
        }
        for task in tasks {
            let _ = task.await;
        }
    });
    println!(
        "opened={} ended={} failed={} handshakes={}",
        counts.opened.load(Ordering::Relaxed),
        counts.ended.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.handshakes.load(Ordering::Relaxed),
    );
}

/// The `n`th source address: 127.0.1.1, 127.0.1.2, ...
fn source_addr(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 1, 1)) + n))
}

/// A TLS 1.3 ClientHello (with TLS 1.2 offered too), as rustls writes it.
fn client_hello() -> Arc<Vec<u8>> {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("a name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("a ClientHello");
    Arc::new(hello)
}

async fn connect_from(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(source, 0))?;
    tokio::time::timeout(Duration::from_secs(5), socket.connect(target))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Holds one connection (sending `hello` first, if any, and nothing more)
/// until `until`, opening it again whenever the server ends it.
async fn hold(
    target: SocketAddr,
    source: IpAddr,
    hello: Option<Arc<Vec<u8>>>,
    until: Instant,
    counts: Arc<Counts>,
) {
    let mut buf = vec![0; 16 * 1024];
    while Instant::now() < until {
        let Ok(mut stream) = connect_from(source, target).await else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        counts.opened.fetch_add(1, Ordering::Relaxed);
        if let Some(hello) = &hello {
            if stream.write_all(hello).await.is_err() {
                counts.ended.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        // Read (and drop) whatever the server sends, until it ends the
        // connection or time is up.
        let left = until.saturating_duration_since(Instant::now());
        let ended = tokio::time::timeout(left, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if ended.is_ok() {
            counts.ended.fetch_add(1, Ordering::Relaxed);
            // An attacker comes back, but not in a hot loop.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Full handshakes from 127.0.0.2, one after another, until `until`.
async fn handshakes(
    target: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    until: Instant,
    counts: Arc<Counts>,
) {
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("a name");
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    while Instant::now() < until {
        let Ok(tcp) = connect_from(source, target).await else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        counts.opened.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(Duration::from_secs(5), connector.connect(name.clone(), tcp))
            .await
        {
            Ok(Ok(_tls)) => counts.handshakes.fetch_add(1, Ordering::Relaxed),
            _ => counts.ended.fetch_add(1, Ordering::Relaxed),
        };
    }
}
