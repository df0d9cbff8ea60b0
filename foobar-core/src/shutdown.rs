//! The shared shutdown signal.
//!
//! One [`Shutdown`] is cloned into every server and background task (health
//! checks, monitors, pushes, reloads). Triggering it starts a graceful stop
//! everywhere at once.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// A cloneable, level-triggered shutdown signal.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let shutdown = foobar_core::Shutdown::new();
/// let waiter = shutdown.clone();
/// let task = tokio::spawn(async move { waiter.wait().await; "stopped" });
/// shutdown.trigger();
/// assert_eq!(task.await.unwrap(), "stopped");
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal that has not fired yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal that fires on SIGTERM or Ctrl-C (SIGINT), or when triggered.
    ///
    /// Must be called inside a Tokio runtime: it spawns the task that waits
    /// for the operating system's signals.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = os_signal() => {
                    tracing::info!("shutdown signal received");
                    trigger.trigger();
                }
                () = trigger.wait() => {}
            }
        });
        shutdown
    }

    /// A signal that fires when `future` completes, or when triggered.
    pub fn on_future<F>(future: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = future => trigger.trigger(),
                () = trigger.wait() => {}
            }
        });
        shutdown
    }

    /// Fires the signal. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once the signal has fired (at once if it already has).
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// A future completing once the signal has fired, owning what it needs
    /// (to keep across polls without borrowing the signal).
    pub(crate) fn waiter(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }

    /// A signal that fires with this one but can also be fired on its own,
    /// without affecting this one (to stop one part early).
    pub fn child(&self) -> Self {
        Self {
            token: self.token.child_token(),
        }
    }
}

#[cfg(unix)]
async fn os_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                () = ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the process");
            ctrl_c().await;
        }
    }
}

/// Ctrl-C, or never if the handler cannot be installed (a failed install
/// must not read as a signal).
async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}

#[cfg(not(unix))]
async fn os_signal() {
    ctrl_c().await;
}
