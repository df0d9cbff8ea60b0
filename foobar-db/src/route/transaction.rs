//! [`Transaction`]: statements on one connection until commit or rollback.

use std::time::Duration;

use mysql_async::Conn;

use super::{run_on, PooledConn, RwPool, Target};
use crate::query::{Executor, QueryDrop, Statement};
use crate::Result;

/// A transaction on one connection: the primary, or a replica for
/// [`RwPool::read_only_transaction`]. Dropped without [`commit`](Self::commit)
/// it is rolled back (the connection is reset before reuse).
#[derive(Debug)]
pub struct Transaction {
    pool: RwPool,
    conn: PooledConn,
    role: Target,
}

impl Executor for &mut Transaction {
    async fn run<'q, S>(self, statement: S, timeout: Option<Duration>) -> Result<S::Output>
    where
        Self: 'q,
        S: Statement + 'q,
    {
        run_on(&mut self.conn, &statement, self.role, timeout).await
    }
}

impl Transaction {
    pub(super) async fn start(pool: RwPool, mut conn: PooledConn, statement: &str) -> Result<Self> {
        let role = if pool.is_writer(&conn) {
            Target::Writer
        } else {
            Target::Reader
        };
        // Until COMMIT, a drop must roll back: the reset on reuse does.
        conn.conn.mark_state_changed();
        run_on(&mut conn, &QueryDrop(statement), role, None).await?;
        Ok(Self { pool, conn, role })
    }

    /// The host the transaction runs on.
    pub fn host(&self) -> &str {
        self.conn.host()
    }

    /// The underlying connection, for anything the methods here lack.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Commits. An error means the transaction may or may not have
    /// committed if it is a connection error (see
    /// [`Error`](crate::Error#a-write-that-failed-may-still-have-committed)).
    pub async fn commit(mut self) -> Result<()> {
        run_on(&mut self.conn, &QueryDrop("COMMIT"), self.role, None).await?;
        if self.role == Target::Writer {
            let pool = self.pool.clone();
            pool.wrote(&mut self.conn, &pool.inner.mark).await;
        }
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<()> {
        run_on(&mut self.conn, &QueryDrop("ROLLBACK"), self.role, None).await
    }
}
