//! [`PooledConn`]: a connection checked out of one host's pool.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::Conn;

use super::{run_on, Target};
use crate::pool::Object;
use crate::query::{Executor, Statement};
use crate::topology::{Host, Role};
use crate::Result;

/// A connection checked out of one host's pool; returns to it when dropped.
/// Dereferences to [`mysql_async::Conn`]; its [`Executor`] methods count in
/// the per-host metrics and the status like routed queries.
#[derive(Debug)]
pub struct PooledConn {
    pub(super) conn: Object,
    pub(super) host: Arc<Host>,
}

impl PooledConn {
    pub(super) fn new(conn: Object, host: Arc<Host>) -> Self {
        Self { conn, host }
    }

    /// The host's `host:port`.
    pub fn host(&self) -> &str {
        &self.host.id
    }

    /// The host's role as last seen, for the query metrics.
    fn target(&self) -> Target {
        if self.host.role() == Role::Primary {
            Target::Writer
        } else {
            Target::Reader
        }
    }
}

impl Executor for &mut PooledConn {
    async fn run<'q, S>(self, statement: S, timeout: Option<Duration>) -> Result<S::Output>
    where
        Self: 'q,
        S: Statement + 'q,
    {
        let role = self.target();
        run_on(self, &statement, role, timeout).await
    }
}

impl Deref for PooledConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}
