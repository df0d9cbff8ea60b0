//! The deadpool manager for `mysql_async` connections.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::managed::{Metrics, RecycleError, RecycleResult};
use mysql_async::consts::StatusFlags;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use super::config::ResetPolicy;

/// A pooled `mysql_async` connection with what the pool knows about its
/// session state. Dereferences to [`Conn`].
#[derive(Debug)]
pub struct Connection {
    conn: Conn,
    state_changed: bool,
    discarded: bool,
}

impl Connection {
    /// Marks the session state as changed: it is reset before the
    /// connection is reused (under [`ResetPolicy::OnStateChange`]).
    pub fn mark_state_changed(&mut self) {
        self.state_changed = true;
    }

    /// Marks the connection as unusable (a statement timed out, the
    /// connection broke): it is closed instead of going back to the pool.
    pub fn discard(&mut self) {
        self.discarded = true;
    }

    /// Whether the session state is marked as changed.
    pub fn state_changed(&self) -> bool {
        self.state_changed
    }

    /// Whether the server reported an open transaction in its last reply.
    pub fn in_transaction(&self) -> bool {
        self.conn.last_ok_packet().is_some_and(|ok| {
            ok.status_flags()
                .contains(StatusFlags::SERVER_STATUS_IN_TRANS)
        })
    }
}

impl Deref for Connection {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// Creates and recycles connections to one host.
#[derive(Debug)]
pub struct Manager {
    opts: Opts,
    reset: ResetPolicy,
    ping_idle_after: Duration,
}

impl Manager {
    /// A manager for the host `opts` points at.
    pub fn new(opts: Opts, reset: ResetPolicy, ping_idle_after: Duration) -> Self {
        Self {
            opts,
            reset,
            ping_idle_after,
        }
    }

    /// The connection options.
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    /// A pool of this manager's connections, sized and timed by `config`
    /// (the manager's own reset policy and ping interval stay).
    pub fn into_pool(self, config: &super::PoolConfig) -> Result<super::Pool, crate::Error> {
        super::build(self, config)
    }
}

impl deadpool::managed::Manager for Manager {
    type Type = Connection;
    type Error = mysql_async::Error;

    async fn create(&self) -> Result<Connection, mysql_async::Error> {
        let conn = Conn::new(self.opts.clone()).await?;
        Ok(Connection {
            conn,
            state_changed: false,
            discarded: false,
        })
    }

    async fn recycle(
        &self,
        obj: &mut Connection,
        metrics: &Metrics,
    ) -> RecycleResult<mysql_async::Error> {
        if obj.discarded {
            return Err(RecycleError::message("discarded"));
        }
        if obj.conn.is_disconnected() {
            return Err(RecycleError::message("connection closed"));
        }
        let in_transaction = obj.in_transaction();
        let must_reset = match self.reset {
            ResetPolicy::Always => true,
            ResetPolicy::OnStateChange => obj.state_changed || in_transaction,
            ResetPolicy::Never if in_transaction => {
                return Err(RecycleError::message("returned inside a transaction"));
            }
            ResetPolicy::Never => false,
        };
        if must_reset {
            // COM_RESET_CONNECTION doubles as the liveness check.
            if !obj.conn.reset().await? {
                return Err(RecycleError::message("server cannot reset sessions"));
            }
            obj.state_changed = false;
        } else if metrics.last_used() >= self.ping_idle_after {
            obj.conn.ping().await?;
        }
        Ok(())
    }
}
