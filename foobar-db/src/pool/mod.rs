//! One connection pool per database host: deadpool over `mysql_async::Conn`.
//!
//! [`Manager`] creates connections with the host's options and recycles
//! them with a cheap liveness check: a connection that was used within
//! [`PoolConfig::ping_idle_after`] is handed out as is, an older one is
//! pinged (`COM_PING`) first. Session state is reset
//! (`COM_RESET_CONNECTION`) only when it may have changed — a transaction
//! left open, a connection handed out raw, a session pinned by `SET` or a
//! temporary table — and only once the caller has given the connection back,
//! never while it holds it ([`ResetPolicy`]).
//!
//! The deadpool types users touch are re-exported here ([`Pool`],
//! [`Status`], [`Timeouts`]), so nobody has to depend on deadpool directly.

mod config;
mod manager;
mod tls;

pub use self::config::{PoolConfig, ResetPolicy};
pub use self::manager::{Connection, Manager};
pub use self::tls::DbTls;
pub use deadpool::managed::{TimeoutType, Timeouts};
pub use deadpool::Status;

/// A pool of connections to one host.
pub type Pool = deadpool::managed::Pool<Manager>;

/// A connection checked out of a [`Pool`]; goes back when dropped.
pub type Object = deadpool::managed::Object<Manager>;

/// A pool error as deadpool reports it.
pub type PoolError = deadpool::managed::PoolError<mysql_async::Error>;

/// Builds the pool for one host.
pub(crate) fn build(manager: Manager, config: &PoolConfig) -> Result<Pool, crate::Error> {
    Pool::builder(manager)
        .max_size(config.max_size)
        .timeouts(Timeouts {
            wait: config.wait_timeout,
            create: config.create_timeout,
            recycle: config.recycle_timeout,
        })
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|_| crate::ConfigError::NoRuntime.into())
}

/// Maps deadpool's error to ours, naming the host and the account.
pub(crate) fn map_error(host: &str, user: &str, error: PoolError) -> crate::Error {
    use deadpool::managed::PoolError as E;
    match error {
        E::Timeout(kind) => crate::Error::PoolTimeout {
            host: host.to_owned(),
            kind: kind.into(),
        },
        E::Backend(source) => crate::Error::mysql(host, user, source),
        E::PostCreateHook(deadpool::managed::HookError::Backend(source)) => {
            crate::Error::mysql(host, user, source)
        }
        // The pool is built with a runtime and without hooks.
        E::Closed | E::NoRuntimeSpecified | E::PostCreateHook(_) => crate::Error::PoolClosed {
            host: host.to_owned(),
        },
    }
}
