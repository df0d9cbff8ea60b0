//! Thread-per-core workers sharing one port through SO_REUSEPORT.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use foobar_core::RequestBody;
use foobar_core::{runtime, Server, Shutdown};
use http::{Request, StatusCode};
use support::*;

#[test]
fn workers_share_a_port_and_stop_together() {
    // A free port: bound and released before the workers bind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let shutdown = Shutdown::new();
    let workers = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || {
            runtime::run_per_core(NonZeroUsize::new(2).unwrap(), move |worker| {
                let shutdown = shutdown.clone();
                async move {
                    let app = tower::service_fn(move |_req: Request<RequestBody>| async move {
                        let thread = std::thread::current().name().unwrap_or_default().to_owned();
                        text(StatusCode::OK, format!("{worker} {thread}"))
                    });
                    Server::builder()
                        .bind_addr(addr)
                        .reuse_port(true)
                        .shutdown(shutdown)
                        .build()?
                        .serve(app)
                        .await
                }
            })
        })
    };

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seen = client.block_on(async {
        let mut seen = HashSet::new();
        // Connections spread by the kernel's hash of the 4-tuple: a few
        // hundred reach both workers with overwhelming probability.
        for _ in 0..300 {
            let Ok((status, body)) =
                tokio::time::timeout(Duration::from_secs(2), try_get(addr)).await
            else {
                continue;
            };
            if status == StatusCode::OK {
                let (worker, thread) = body.split_once(' ').unwrap();
                assert_eq!(
                    thread,
                    format!("foobar-worker-{worker}"),
                    "served on the worker's own thread"
                );
                seen.insert(worker.to_owned());
                if seen.len() == 2 {
                    break;
                }
            }
        }
        seen
    });
    assert_eq!(seen.len(), 2, "both workers served: {seen:?}");

    shutdown.trigger();
    let result = workers.join().unwrap();
    assert!(result.is_ok(), "{result:?}");
}

/// A GET that tolerates the workers not having bound the port yet.
async fn try_get(addr: SocketAddr) -> (StatusCode, String) {
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return get_h1(addr, "/").await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
