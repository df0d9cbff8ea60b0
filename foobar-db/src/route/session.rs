//! [`Session`]: one logical connection over routed statements.

use std::time::Duration;

use super::{needs_held_connection, run_on, PooledConn, RwPool, Target};
use crate::classify::{classify, Route};
use crate::consistency::WriteMark;
use crate::query::{Executor, Statement};
use crate::Result;

/// One logical connection: routed statements, with session state and open
/// transactions kept on one primary connection.
///
/// A `SET`, a temporary table, a user variable, `LOCK TABLES` (anything the
/// classifier says pins the session) pins the session to the primary
/// connection it ran on until the session is dropped. `BEGIN`/`START
/// TRANSACTION` keep the connection until `COMMIT`/`ROLLBACK`. The held
/// connection's state is reset when it goes back to the pool.
///
/// A statement that fails changes nothing the session tracks, with two
/// exceptions: a failed `COMMIT` or `ROLLBACK` still ends the transaction
/// (the server rolls back what it could not commit), and a statement whose
/// connection broke releases the connection, with whatever state and open
/// transaction it held.
#[derive(Debug)]
pub struct Session {
    pool: RwPool,
    held: Option<Held>,
    mark: WriteMark,
}

#[derive(Debug)]
struct Held {
    conn: PooledConn,
    /// Session state lives on this connection: keep it to the end.
    pinned: bool,
    /// A transaction is open (or `SET TRANSACTION` awaits one).
    in_transaction: bool,
}

impl Executor for &mut Session {
    async fn run<'q, S>(self, statement: S, timeout: Option<Duration>) -> Result<S::Output>
    where
        Self: 'q,
        S: Statement + 'q,
    {
        self.run_statement(&statement, timeout).await
    }
}

impl Session {
    pub(super) fn new(pool: RwPool) -> Self {
        Self {
            pool,
            held: None,
            mark: WriteMark::default(),
        }
    }

    /// Whether the session is pinned to a primary connection.
    pub fn is_pinned(&self) -> bool {
        self.held.as_ref().is_some_and(|held| held.pinned)
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.held.as_ref().is_some_and(|held| held.in_transaction)
    }

    /// The host of the connection the session holds, if any.
    pub fn held_host(&self) -> Option<&str> {
        self.held.as_ref().map(|held| held.conn.host())
    }

    async fn run_statement<S: Statement>(
        &mut self,
        statement: &S,
        timeout: Option<Duration>,
    ) -> Result<S::Output> {
        let plan = classify(statement.sql());
        if self.held.is_none() && needs_held_connection(&plan) {
            let read_only =
                plan.starts_transaction && plan.read_only_transaction && !plan.pins_session;
            let target = if read_only {
                Target::Reader
            } else {
                Target::Writer
            };
            let mut conn = self.pool.checkout(target, None).await?;
            conn.conn.mark_state_changed();
            self.held = Some(Held {
                conn,
                pinned: false,
                in_transaction: false,
            });
        }
        let Some(held) = self.held.as_mut() else {
            return self
                .pool
                .routed(statement, plan.route, &self.mark, timeout)
                .await;
        };
        let on_writer = self.pool.is_writer(&held.conn);
        let role = if on_writer {
            Target::Writer
        } else {
            Target::Reader
        };
        let result = run_on(&mut held.conn, statement, role, timeout).await;
        match &result {
            Ok(_) => {
                if plan.pins_session || plan.autocommit == Some(false) {
                    held.pinned = true;
                }
                if plan.ends_transaction {
                    held.in_transaction = false;
                }
                if plan.starts_transaction || plan.sets_next_transaction {
                    held.in_transaction = true;
                }
            }
            Err(error) => {
                if plan.ends_transaction {
                    held.in_transaction = false;
                }
                if error.is_connection_error() {
                    held.pinned = false;
                    held.in_transaction = false;
                }
            }
        }
        let output = match result {
            Ok(output) => output,
            Err(error) => {
                self.release_if_idle();
                return Err(error);
            }
        };
        let wrote = on_writer && plan.route == Route::Primary && !held.in_transaction;
        if wrote {
            self.pool.wrote(&mut held.conn, &self.mark).await;
        }
        self.release_if_idle();
        Ok(output)
    }

    /// Gives the connection back when nothing keeps it.
    fn release_if_idle(&mut self) {
        if self
            .held
            .as_ref()
            .is_some_and(|held| !held.pinned && !held.in_transaction)
        {
            self.held = None;
        }
    }
}
