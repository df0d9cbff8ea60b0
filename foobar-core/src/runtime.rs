//! Thread-per-core serving: one single-threaded Tokio runtime per worker.
//!
//! On a small machine a proxy spends most of its time in the kernel; a
//! work-stealing runtime adds cross-thread wake-ups on top. Running one
//! `current_thread` runtime per core, each with its own [`Server`] bound with
//! [`reuse_port`], lets the kernel spread connections over the workers while
//! each connection stays on one thread.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use foobar_core::{runtime, Server, Shutdown};
//!
//! let shutdown = Shutdown::new();
//! runtime::run_per_core(runtime::available_workers(), move |_worker| {
//!     let shutdown = shutdown.clone();
//!     async move {
//!         let app = tower::service_fn(|_req: http::Request<foobar_core::RequestBody>| async {
//!             Ok::<_, Infallible>(http::Response::new(String::from("hi")))
//!         });
//!         Server::builder()
//!             .bind("127.0.0.1:8080")?
//!             .reuse_port(true)
//!             .shutdown(shutdown)
//!             .build()?
//!             .serve(app)
//!             .await
//!     }
//! })
//! .expect("workers");
//! ```
//!
//! [`Server`]: crate::Server
//! [`reuse_port`]: crate::ServerBuilder::reuse_port

use std::future::Future;
use std::num::NonZeroUsize;

use crate::error::{Error, Result};

/// The number of cores this process may use (at least 1).
pub fn available_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// Runs `worker(i)` for `i` in `0..workers`, each on its own thread with its
/// own single-threaded runtime, and waits for all of them.
///
/// # Errors
/// The first worker's error, in worker order; [`Error::Runtime`] if a thread
/// or runtime cannot be started or a worker panicked.
pub fn run_per_core<F, Fut>(workers: NonZeroUsize, worker: F) -> Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + 'static,
{
    let worker = std::sync::Arc::new(worker);
    let threads = (0..workers.get())
        .map(|index| {
            let worker = worker.clone();
            std::thread::Builder::new()
                .name(format!("foobar-worker-{index}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| {
                            Error::Runtime(format!("cannot start worker {index}'s runtime: {e}"))
                        })?;
                    runtime.block_on(worker(index))
                })
                .map_err(|e| Error::Runtime(format!("cannot start worker thread {index}: {e}")))
        })
        .collect::<Vec<_>>();
    let mut first_error = None;
    for (index, thread) in threads.into_iter().enumerate() {
        let outcome = match thread {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(Error::Runtime(format!("worker {index} panicked")))),
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            tracing::error!(worker = index, %error, "worker failed");
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}
