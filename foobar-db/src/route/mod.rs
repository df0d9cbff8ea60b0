//! The read/write-splitting pool: [`RwPool`], [`Session`], [`Transaction`],
//! [`PooledConn`], all queried through [`Executor`](crate::Executor).
//!
//! Routing is explicit ([`RwPool::writer`], [`RwPool::reader`],
//! [`RwPool::transaction`], [`RwPool::read_only_transaction`]) or automatic
//! (`query`/`exec` on the pool): each statement is classified by
//! [`classify`](crate::classify) and sent
//!
//! - to a replica for a plain read (healthy, lag within the limit, weighted
//!   round robin; if none qualifies, to the primary or an error, see
//!   [`ReadFallback`]), subject to [`Consistency`](crate::Consistency);
//! - to the primary for everything else. While no primary is known, a write
//!   waits up to [`RwPoolBuilder::no_writer_timeout`] for one, then fails
//!   with [`Error::NoWriter`]. It is never sent to a
//!   replica.
//!
//! A [`Session`] is one logical connection: once a statement changes
//! session state (`SET`, temporary tables, user variables, `LOCK TABLES`) or
//! opens a transaction, the session keeps that primary connection until the
//! session ends (state) or the transaction ends, so nothing the caller set
//! is lost on another connection.
//!
//! A read that fails on a replica because the connection broke (the replica
//! died) before any row was returned is retried once on another host: it is
//! an autocommit read, so running it twice is harmless. A write is never
//! retried (see [`Error`](crate::Error#a-write-that-failed-may-still-have-committed)).

mod builder;
mod conn;
mod pool;
mod session;
mod transaction;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub use self::builder::RwPoolBuilder;
pub use self::conn::PooledConn;
pub use self::pool::RwPool;
pub use self::session::Session;
pub use self::transaction::Transaction;

use crate::classify::Classification;
use crate::query::Statement;
use crate::{Error, Result};

/// Where reads go when no replica qualifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadFallback {
    /// To the primary (default).
    #[default]
    Primary,
    /// Nowhere: the read fails with [`Error::NoReader`].
    Fail,
}

/// Which way a statement goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Writer,
    Reader,
}

/// Whether a statement must keep its connection beyond itself.
fn needs_held_connection(plan: &Classification) -> bool {
    plan.pins_session || plan.starts_transaction || plan.sets_next_transaction
}

/// Runs a statement on a connection, with its timeout and metrics.
async fn run_on<S: Statement>(
    conn: &mut PooledConn,
    statement: &S,
    role: Target,
    timeout: Option<Duration>,
) -> Result<S::Output> {
    let PooledConn { conn, host } = conn;
    let limit = timeout.or(host.statement_timeout);
    let started = Instant::now();
    let result = match limit {
        Some(limit) => match tokio::time::timeout(limit, statement.run(conn)).await {
            Ok(result) => result,
            Err(_) => {
                // The answer may still come: the connection is out of step
                // and must not be reused.
                conn.discard();
                host.metrics.timeouts.increment(1);
                host.metrics.errors.increment(1);
                return Err(Error::StatementTimeout {
                    host: host.id.clone(),
                    after: limit,
                });
            }
        },
        None => statement.run(conn).await,
    };
    let elapsed = started.elapsed().as_secs_f64();
    host.queries.fetch_add(1, Ordering::Relaxed);
    match role {
        Target::Writer => {
            host.metrics.writer_queries.increment(1);
            host.metrics.writer_latency.record(elapsed);
        }
        Target::Reader => {
            host.metrics.reader_queries.increment(1);
            host.metrics.reader_latency.record(elapsed);
        }
    }
    result.map_err(|e| {
        host.metrics.errors.increment(1);
        if crate::error::is_connection_error(&e) {
            conn.discard();
        }
        Error::mysql(&host.id, &host.app_user, e)
    })
}
