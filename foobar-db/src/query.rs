//! One query API for the pool, sessions, transactions and connections.
//!
//! [`Executor`] has one required method, [`Executor::run`]; every query
//! method (`query`, `query_first`, `query_drop`, `exec`, `exec_first`,
//! `exec_drop`) is provided on top of it, the way sqlx's `Executor` works.
//! It is implemented for `&RwPool` (routed by statement), `&mut Session`,
//! `&mut Transaction` and `&mut PooledConn`:
//!
//! ```no_run
//! use std::time::Duration;
//! use foobar_db::{Executor, RwPool};
//!
//! # async fn run(db: RwPool) -> Result<(), foobar_db::Error> {
//! let names: Vec<String> = db.query("SELECT name FROM products").await?;
//! db.exec_drop("INSERT INTO orders (product) VALUES (?)", ("tea",)).await?;
//! // A report that may take longer than the pool's statement timeout.
//! let total: Option<u64> = db
//!     .with_timeout(Duration::from_secs(120))
//!     .query_first("SELECT SUM(amount) FROM orders")
//!     .await?;
//! # let _ = (names, total); Ok(()) }
//! ```
//!
//! Every statement has a timeout: the pool's
//! [`PoolConfig::statement_timeout`](crate::PoolConfig::statement_timeout),
//! or the one given with [`Executor::with_timeout`]. A statement that runs
//! out of time fails with [`Error::StatementTimeout`](crate::Error::StatementTimeout)
//! and its connection is closed, never reused; a write may still have
//! committed (see [`Error`](crate::Error#a-write-that-failed-may-still-have-committed)).

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, DriverError, Params, Row};

use crate::Result;

mod sealed {
    pub trait Sealed {}
}

/// One statement execution, generic over what it returns. Made by the
/// query methods of [`Executor`]; it cannot be implemented outside this
/// crate.
pub trait Statement: sealed::Sealed + Send + Sync {
    /// What the statement returns.
    type Output: Send;

    /// The SQL text.
    fn sql(&self) -> &str;

    /// Runs it on a connection.
    fn run<'a>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = std::result::Result<Self::Output, mysql_async::Error>> + Send + 'a;
}

/// Runs statements: the pool, a session, a transaction or a connection.
pub trait Executor: Send + Sized {
    /// Runs `statement` with `timeout` (`None`: the pool's statement
    /// timeout). The query methods below call this.
    fn run<'q, S>(
        self,
        statement: S,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<S::Output>> + Send + 'q
    where
        Self: 'q,
        S: Statement + 'q;

    /// This executor with another statement timeout for the next call.
    fn with_timeout(self, timeout: Duration) -> WithTimeout<Self> {
        WithTimeout {
            inner: self,
            timeout,
        }
    }

    /// Runs a text query and collects the rows.
    fn query<'q, T>(self, sql: &'q str) -> impl Future<Output = Result<Vec<T>>> + Send + 'q
    where
        Self: 'q,
        T: FromRow + Send + 'static,
    {
        self.run(QueryAll::<T>::new(sql), None)
    }

    /// Runs a text query; the first row.
    fn query_first<'q, T>(self, sql: &'q str) -> impl Future<Output = Result<Option<T>>> + Send + 'q
    where
        Self: 'q,
        T: FromRow + Send + 'static,
    {
        self.run(QueryFirst::<T>::new(sql), None)
    }

    /// Runs a text query; drops the result.
    fn query_drop<'q>(self, sql: &'q str) -> impl Future<Output = Result<()>> + Send + 'q
    where
        Self: 'q,
    {
        self.run(QueryDrop(sql), None)
    }

    /// Runs a prepared statement and collects the rows.
    fn exec<'q, T, P>(
        self,
        sql: &'q str,
        params: P,
    ) -> impl Future<Output = Result<Vec<T>>> + Send + 'q
    where
        Self: 'q,
        T: FromRow + Send + 'static,
        P: Into<Params>,
    {
        self.run(ExecAll::<T>::new(sql, params.into()), None)
    }

    /// Runs a prepared statement; the first row.
    fn exec_first<'q, T, P>(
        self,
        sql: &'q str,
        params: P,
    ) -> impl Future<Output = Result<Option<T>>> + Send + 'q
    where
        Self: 'q,
        T: FromRow + Send + 'static,
        P: Into<Params>,
    {
        self.run(ExecFirst::<T>::new(sql, params.into()), None)
    }

    /// Runs a prepared statement; drops the result.
    fn exec_drop<'q, P>(
        self,
        sql: &'q str,
        params: P,
    ) -> impl Future<Output = Result<()>> + Send + 'q
    where
        Self: 'q,
        P: Into<Params>,
    {
        self.run(ExecDrop(sql, params.into()), None)
    }
}

/// An [`Executor`] with its own statement timeout
/// ([`Executor::with_timeout`]).
#[derive(Debug)]
pub struct WithTimeout<E> {
    inner: E,
    timeout: Duration,
}

impl<E: Executor> Executor for WithTimeout<E> {
    fn run<'q, S>(
        self,
        statement: S,
        _timeout: Option<Duration>,
    ) -> impl Future<Output = Result<S::Output>> + Send + 'q
    where
        Self: 'q,
        S: Statement + 'q,
    {
        self.inner.run(statement, Some(self.timeout))
    }
}

/// A row as `T`; a mismatch is an error (`DriverError::FromRow`), never a
/// panic.
fn convert<T: FromRow>(row: Row) -> std::result::Result<T, mysql_async::Error> {
    T::from_row_opt(row).map_err(|e| mysql_async::Error::Driver(DriverError::FromRow { row: e.0 }))
}

fn convert_all<T: FromRow>(rows: Vec<Row>) -> std::result::Result<Vec<T>, mysql_async::Error> {
    rows.into_iter().map(convert).collect()
}

pub(crate) struct QueryAll<'q, T>(&'q str, PhantomData<fn() -> T>);
impl<'q, T> QueryAll<'q, T> {
    fn new(sql: &'q str) -> Self {
        Self(sql, PhantomData)
    }
}
impl<T> sealed::Sealed for QueryAll<'_, T> {}
impl<T: FromRow + Send + 'static> Statement for QueryAll<'_, T> {
    type Output = Vec<T>;
    fn sql(&self) -> &str {
        self.0
    }
    async fn run(&self, conn: &mut Conn) -> std::result::Result<Vec<T>, mysql_async::Error> {
        convert_all(conn.query::<Row, _>(self.0).await?)
    }
}

pub(crate) struct QueryFirst<'q, T>(&'q str, PhantomData<fn() -> T>);
impl<'q, T> QueryFirst<'q, T> {
    fn new(sql: &'q str) -> Self {
        Self(sql, PhantomData)
    }
}
impl<T> sealed::Sealed for QueryFirst<'_, T> {}
impl<T: FromRow + Send + 'static> Statement for QueryFirst<'_, T> {
    type Output = Option<T>;
    fn sql(&self) -> &str {
        self.0
    }
    async fn run(&self, conn: &mut Conn) -> std::result::Result<Option<T>, mysql_async::Error> {
        conn.query_first::<Row, _>(self.0)
            .await?
            .map(convert)
            .transpose()
    }
}

pub(crate) struct QueryDrop<'q>(pub(crate) &'q str);
impl sealed::Sealed for QueryDrop<'_> {}
impl Statement for QueryDrop<'_> {
    type Output = ();
    fn sql(&self) -> &str {
        self.0
    }
    fn run<'a>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = std::result::Result<(), mysql_async::Error>> + Send + 'a {
        conn.query_drop(self.0)
    }
}

pub(crate) struct ExecAll<'q, T>(&'q str, Params, PhantomData<fn() -> T>);
impl<'q, T> ExecAll<'q, T> {
    fn new(sql: &'q str, params: Params) -> Self {
        Self(sql, params, PhantomData)
    }
}
impl<T> sealed::Sealed for ExecAll<'_, T> {}
impl<T: FromRow + Send + 'static> Statement for ExecAll<'_, T> {
    type Output = Vec<T>;
    fn sql(&self) -> &str {
        self.0
    }
    async fn run(&self, conn: &mut Conn) -> std::result::Result<Vec<T>, mysql_async::Error> {
        convert_all(conn.exec::<Row, _, _>(self.0, self.1.clone()).await?)
    }
}

pub(crate) struct ExecFirst<'q, T>(&'q str, Params, PhantomData<fn() -> T>);
impl<'q, T> ExecFirst<'q, T> {
    fn new(sql: &'q str, params: Params) -> Self {
        Self(sql, params, PhantomData)
    }
}
impl<T> sealed::Sealed for ExecFirst<'_, T> {}
impl<T: FromRow + Send + 'static> Statement for ExecFirst<'_, T> {
    type Output = Option<T>;
    fn sql(&self) -> &str {
        self.0
    }
    async fn run(&self, conn: &mut Conn) -> std::result::Result<Option<T>, mysql_async::Error> {
        conn.exec_first::<Row, _, _>(self.0, self.1.clone())
            .await?
            .map(convert)
            .transpose()
    }
}

pub(crate) struct ExecDrop<'q>(&'q str, Params);
impl sealed::Sealed for ExecDrop<'_> {}
impl Statement for ExecDrop<'_> {
    type Output = ();
    fn sql(&self) -> &str {
        self.0
    }
    fn run<'a>(
        &'a self,
        conn: &'a mut Conn,
    ) -> impl Future<Output = std::result::Result<(), mysql_async::Error>> + Send + 'a {
        conn.exec_drop(self.0, self.1.clone())
    }
}
