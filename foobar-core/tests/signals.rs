//! `Shutdown::on_signals` turns SIGTERM into a graceful stop. Alone in its
//! own test binary because it signals its own process.

use std::time::Duration;

use foobar_core::{Server, Shutdown};

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    let shutdown = Shutdown::on_signals();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown.clone())
        .build()
        .unwrap();
    let served = tokio::spawn(server.serve(tower::service_fn(
        |_req: http::Request<foobar_core::RequestBody>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        },
    )));
    // Let the signal task register its handler before the signal is sent.
    tokio::task::yield_now().await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let stopped = tokio::time::timeout(Duration::from_secs(10), served).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "server stopped on SIGTERM: {stopped:?}"
    );
    assert!(shutdown.is_triggered());
}
