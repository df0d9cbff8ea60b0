//! Which pool may act: the [`Coordinator`] seam and the built-in majority
//! of `GET_LOCK`s on the database servers.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

/// A boxed future returned by a [`Coordinator`].
pub type CoordinatorFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides which of several pools may promote and fence: the one holding
/// the lease.
///
/// The built-in coordinator takes a named lock on a majority of the
/// database servers (see [`failover`](crate::failover)); implement this to
/// use a lease from etcd, Consul or ZooKeeper instead. The lease must be
/// exclusive: at any moment at most one pool may hold an unexpired lease.
pub trait Coordinator: Send + Sync + fmt::Debug + 'static {
    /// Takes or renews this pool's lease. Called every
    /// [`renew_interval`](Coordinator::renew_interval); it should answer
    /// within that time.
    fn renew(&self) -> CoordinatorFuture<'_, Lease>;

    /// Gives the lease up: the pool is shutting down.
    fn release(&self) -> CoordinatorFuture<'_, ()>;

    /// How often [`renew`](Coordinator::renew) is called.
    fn renew_interval(&self) -> Duration;
}

/// Whether a pool may act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lease {
    /// Held: acting is safe until `until` (no other pool can hold it
    /// before then).
    Held {
        /// When it expires unless renewed.
        until: Instant,
    },
    /// Another pool holds it, or it cannot be had now.
    NotHeld,
}

impl Lease {
    /// Whether the lease is still held `margin` from now (a step that may
    /// take `margin` can start).
    pub fn holds_for(&self, margin: Duration) -> bool {
        match self {
            Self::Held { until } => Instant::now() + margin < *until,
            Self::NotHeld => false,
        }
    }
}

/// The lock every pool of a cluster takes.
const LOCK_NAME: &str = "foobar_db_failover";

/// One session per server holding (or trying for) the lock.
#[derive(Debug)]
struct LockSession {
    conn: Conn,
    held: bool,
}

/// The built-in coordinator: `GET_LOCK` on a strict majority of all
/// configured servers (MaxScale's `majority_of_all`).
#[derive(Debug)]
pub(crate) struct MajorityLocks {
    /// `(host id, failover account options with a short wait_timeout)`.
    servers: Vec<(String, Opts)>,
    majority: usize,
    lock_timeout: Duration,
    renew_interval: Duration,
    sessions: tokio::sync::Mutex<Vec<Option<LockSession>>>,
    /// After giving a minority back, when to try again.
    retry_at: std::sync::Mutex<Option<Instant>>,
}

impl MajorityLocks {
    /// A coordinator over `servers` (id and failover-account options).
    pub(crate) fn new(servers: Vec<(String, Opts)>, lock_timeout: Duration) -> Self {
        let wait = usize::try_from(lock_timeout.as_secs().max(2)).unwrap_or(usize::MAX);
        let servers: Vec<(String, Opts)> = servers
            .into_iter()
            .map(|(id, opts)| {
                let opts = OptsBuilder::from_opts(opts).wait_timeout(Some(wait)).into();
                (id, opts)
            })
            .collect();
        let count = servers.len();
        Self {
            majority: count / 2 + 1,
            lock_timeout: Duration::from_secs(wait as u64),
            renew_interval: Duration::from_secs(wait as u64) / 4,
            sessions: tokio::sync::Mutex::new((0..count).map(|_| None).collect()),
            retry_at: std::sync::Mutex::new(None),
            servers,
        }
    }

    async fn round(&self) -> Lease {
        let started = Instant::now();
        let mut sessions = self.sessions.lock().await;
        let pause = self
            .retry_at
            .lock()
            .map(|at| at.is_some_and(|at| started < at))
            .unwrap_or(false);
        if pause {
            return Lease::NotHeld;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (index, slot) in sessions.iter_mut().enumerate() {
            let session = slot.take();
            let opts = self.servers[index].1.clone();
            let limit = self.renew_interval;
            tasks.spawn(async move {
                let session = tokio::time::timeout(limit, touch(session, opts))
                    .await
                    .ok()
                    .and_then(Result::ok);
                (index, session)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, session)) = joined {
                sessions[index] = session;
            }
        }
        let held = sessions
            .iter()
            .filter(|s| s.as_ref().is_some_and(|s| s.held))
            .count();
        if held >= self.majority {
            // Every held lock was confirmed at or after `started`: the
            // servers keep them for `lock_timeout` after that at least.
            return Lease::Held {
                until: started + self.lock_timeout - self.renew_interval,
            };
        }
        if held > 0 {
            // A minority blocks the others as much as us: give it back and
            // try again after a random pause, so that one pool wins.
            for session in sessions.iter_mut().flatten().filter(|s| s.held) {
                let released = session
                    .conn
                    .exec_drop("SELECT RELEASE_LOCK(?)", (LOCK_NAME,));
                if tokio::time::timeout(self.renew_interval, released)
                    .await
                    .is_ok_and(|r| r.is_ok())
                {
                    session.held = false;
                }
            }
            for slot in sessions.iter_mut() {
                if slot.as_ref().is_some_and(|s| s.held) {
                    // Not released: dropping the session releases it.
                    *slot = None;
                }
            }
            if let Ok(mut at) = self.retry_at.lock() {
                *at = Some(Instant::now() + jitter(self.renew_interval));
            }
        }
        Lease::NotHeld
    }
}

/// Takes the lock on a session (connecting first if needed), or checks
/// that it still holds it.
async fn touch(
    session: Option<LockSession>,
    opts: Opts,
) -> Result<LockSession, mysql_async::Error> {
    let mut session = match session {
        Some(session) => session,
        None => LockSession {
            conn: Conn::new(opts).await?,
            held: false,
        },
    };
    let held: Option<Option<i64>> = if session.held {
        session
            .conn
            .exec_first("SELECT IS_USED_LOCK(?) = CONNECTION_ID()", (LOCK_NAME,))
            .await?
    } else {
        session
            .conn
            .exec_first("SELECT GET_LOCK(?, 0)", (LOCK_NAME,))
            .await?
    };
    session.held = held == Some(Some(1));
    Ok(session)
}

/// A random pause between `base` and twice `base`.
fn jitter(base: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    let fraction = (hasher.finish() % 1000) as u32;
    base + base * fraction / 1000
}

impl super::Coordinator for MajorityLocks {
    fn renew(&self) -> CoordinatorFuture<'_, Lease> {
        Box::pin(self.round())
    }

    fn release(&self) -> CoordinatorFuture<'_, ()> {
        Box::pin(async move {
            let mut sessions = self.sessions.lock().await;
            for session in sessions.iter_mut().filter_map(Option::take) {
                // Closing the session releases its locks.
                let _ = tokio::time::timeout(self.renew_interval, session.conn.disconnect()).await;
            }
        })
    }

    fn renew_interval(&self) -> Duration {
        self.renew_interval
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{jitter, Lease};

    #[test]
    fn a_lease_holds_only_with_time_to_spare() {
        let lease = Lease::Held {
            until: Instant::now() + Duration::from_secs(2),
        };
        assert!(lease.holds_for(Duration::from_millis(500)));
        assert!(!lease.holds_for(Duration::from_secs(3)));
        assert!(!Lease::NotHeld.holds_for(Duration::ZERO));
    }

    #[test]
    fn pauses_are_random_within_bounds() {
        let base = Duration::from_millis(100);
        let pauses: Vec<Duration> = (0..20).map(|_| jitter(base)).collect();
        assert!(pauses.iter().all(|p| *p >= base && *p < base * 2));
        assert!(pauses.iter().any(|p| *p != pauses[0]));
    }
}
