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

thread_local! {
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the [`run_per_core`] worker this thread is, or `None` on
/// any other thread. State kept per worker (a connection pool's idle list,
/// say) uses it so that what one worker's runtime opened stays with that
/// runtime: a socket is driven by the runtime that registered it.
pub fn current_worker() -> Option<usize> {
    WORKER.with(std::cell::Cell::get)
}

/// The number of cores this process may use (at least 1).
pub fn available_workers() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// Why [`run_per_core`] failed: a worker's own error, or a worker that
/// could not start or panicked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError<E> {
    /// A worker returned an error.
    #[error("worker {worker}: {source}")]
    Failed {
        /// The worker's index.
        worker: usize,
        /// Its error.
        #[source]
        source: E,
    },
    /// A worker's thread or runtime could not be started.
    #[error("cannot start worker {worker}: {source}")]
    Start {
        /// The worker's index.
        worker: usize,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A worker panicked.
    #[error("worker {worker} panicked")]
    Panicked {
        /// The worker's index.
        worker: usize,
    },
}

/// Runs `worker(i)` for `i` in `0..workers`, each on its own thread with its
/// own single-threaded runtime, and waits for all of them.
///
/// # Errors
/// The first worker's failure, in worker order.
pub fn run_per_core<F, Fut, E>(workers: NonZeroUsize, worker: F) -> Result<(), WorkerError<E>>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let worker = std::sync::Arc::new(worker);
    let threads = (0..workers.get())
        .map(|index| {
            let worker = worker.clone();
            std::thread::Builder::new()
                .name(format!("foobar-worker-{index}"))
                .spawn(move || {
                    WORKER.with(|cell| cell.set(Some(index)));
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|source| WorkerError::Start {
                            worker: index,
                            source,
                        })?;
                    runtime
                        .block_on(worker(index))
                        .map_err(|source| WorkerError::Failed {
                            worker: index,
                            source,
                        })
                })
                .map_err(|source| WorkerError::Start {
                    worker: index,
                    source,
                })
        })
        .collect::<Vec<_>>();
    let mut first_error = None;
    for (index, thread) in threads.into_iter().enumerate() {
        let outcome = match thread {
            Ok(handle) => handle
                .join()
                .unwrap_or(Err(WorkerError::Panicked { worker: index })),
            Err(error) => Err(error),
        };
        if let Err(error) = outcome {
            tracing::error!(worker = index, %error, "worker failed");
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}
