//! The accept loop survives running out of file descriptors (EMFILE): it
//! pauses and retries instead of spinning or exiting, and serves again once
//! descriptors are free. Alone in its own test binary because it lowers the
//! process's descriptor limit.

mod support;

use std::time::Duration;

use foobar_core::metrics::PrometheusExporter;
use foobar_core::RequestBody;
use foobar_core::Server;
use http::{Request, StatusCode};
use support::*;
use tokio::net::TcpStream;

#[tokio::test]
async fn accept_backs_off_on_emfile_and_recovers() {
    let exporter = PrometheusExporter::install().unwrap();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build()
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(
        server.serve(tower::service_fn(|_req: Request<RequestBody>| async {
            text(StatusCode::OK, "ok")
        })),
    );
    let (status, _) = get_h1(addr, "/").await;
    assert_eq!(status, StatusCode::OK);

    // Leave room for a few descriptors only, then fill them with client
    // connections: each costs one descriptor here and one for the server's
    // accepted side, so the server soon hits EMFILE.
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::Resource::NOFILE.set(open_now + 16, hard).unwrap();
    let mut clients = Vec::new();
    while let Ok(Ok(stream)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
    {
        clients.push(stream);
        if clients.len() > 64 {
            break;
        }
    }
    let backed_off = wait_until(Duration::from_secs(10), || async {
        exporter.render().lines().any(|l| {
            l.starts_with("foobar_accept_errors_total ")
                && l.split(' ').nth(1).is_some_and(|v| v != "0")
        })
    })
    .await;
    assert!(
        backed_off,
        "accept errors are counted: {}",
        exporter.render()
    );

    // Free the descriptors: the server serves again, it did not exit.
    drop(clients);
    rlimit::Resource::NOFILE
        .set(hard.min(65_536), hard)
        .unwrap();
    let recovered = wait_until(Duration::from_secs(10), || async {
        tokio::time::timeout(Duration::from_secs(2), get_h1(addr, "/"))
            .await
            .is_ok_and(|(s, _)| s == StatusCode::OK)
    })
    .await;
    assert!(recovered, "the server serves again after EMFILE");
}
