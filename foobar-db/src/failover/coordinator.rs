//! Which pool may act: the [`Coordinator`] seam and the built-in majority
//! of `GET_LOCK`s on the database servers.

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

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

/// What a server said about the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// This pool holds it there.
    Ours,
    /// Nobody holds it there.
    Free,
    /// Another session holds it there.
    Theirs,
}

/// How to treat a server whose lock this pool does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Visit {
    /// Take the lock if it is free.
    Take,
    /// Only look.
    Look,
}

/// The built-in coordinator: `GET_LOCK` on a strict majority of all
/// configured servers (MaxScale's `majority_of_all`).
///
/// The leader takes the lock on every server where it is free, so that
/// losing one server leaves it a majority. A pool that does not lead only
/// looks while any server shows the lock held by someone else, and takes
/// locks only when all of them are free (the leader is gone); if it ends
/// up with a minority (another pool raced it), it gives it back and waits
/// a random pause. A pool that led and falls to a minority keeps its locks
/// one more step timeout before giving them back: it has withdrawn its
/// lease by then, and a step it started before has ended.
#[derive(Debug)]
pub(crate) struct MajorityLocks {
    /// Failover account options, per server.
    servers: Vec<Opts>,
    majority: usize,
    lock_timeout: Duration,
    renew_interval: Duration,
    step_timeout: Duration,
    state: tokio::sync::Mutex<LockState>,
}

#[derive(Debug)]
struct LockState {
    sessions: Vec<Option<LockSession>>,
    /// The last round held a majority.
    leading: bool,
    /// A minority to give back, not before this.
    release_at: Option<Instant>,
    /// After giving a minority back, not before this.
    retry_at: Option<Instant>,
}

impl MajorityLocks {
    /// A coordinator over `servers` (failover-account options);
    /// `step_timeout` bounds a failover step.
    pub(crate) fn new(servers: Vec<Opts>, lock_timeout: Duration, step_timeout: Duration) -> Self {
        let wait = lock_timeout.as_secs().max(2);
        let count = servers.len();
        Self {
            majority: count / 2 + 1,
            lock_timeout: Duration::from_secs(wait),
            renew_interval: Duration::from_secs(wait) / 4,
            step_timeout,
            state: tokio::sync::Mutex::new(LockState {
                sessions: (0..count).map(|_| None).collect(),
                leading: false,
                release_at: None,
                retry_at: None,
            }),
            servers,
        }
    }

    /// Visits every server at once; what each said (`None`: no answer).
    async fn visit_all(
        &self,
        state: &mut LockState,
        visit: impl Fn(usize) -> Option<Visit>,
    ) -> Vec<Option<Seen>> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut seen = vec![None; self.servers.len()];
        for (index, slot) in state.sessions.iter_mut().enumerate() {
            let Some(how) = visit(index) else {
                continue;
            };
            let session = slot.take();
            let opts = self.servers[index].clone();
            let limit = self.renew_interval;
            let wait = self.lock_timeout;
            tasks.spawn(async move {
                let visited = tokio::time::timeout(limit, touch(session, opts, wait, how))
                    .await
                    .ok()
                    .and_then(Result::ok);
                (index, visited)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, Some((session, said)))) = joined {
                state.sessions[index] = Some(session);
                seen[index] = Some(said);
            }
        }
        seen
    }

    async fn round(&self) -> Lease {
        let started = Instant::now();
        let mut state = self.state.lock().await;
        if state.retry_at.is_some_and(|at| started < at) {
            return Lease::NotHeld;
        }
        let leading = state.leading;
        let mut seen = self
            .visit_all(&mut state, |_| {
                Some(if leading { Visit::Take } else { Visit::Look })
            })
            .await;
        let answered = seen.iter().flatten().count();
        if !leading
            && answered >= self.majority
            && seen.iter().flatten().all(|s| *s != Seen::Theirs)
        {
            // Nobody leads: take what is free.
            let free: Vec<bool> = seen.iter().map(|s| *s == Some(Seen::Free)).collect();
            let taken = self
                .visit_all(&mut state, |i| free[i].then_some(Visit::Take))
                .await;
            for (slot, now) in seen.iter_mut().zip(taken) {
                if now.is_some() {
                    *slot = now;
                }
            }
        }
        let held = seen.iter().filter(|s| **s == Some(Seen::Ours)).count();
        if held >= self.majority {
            state.leading = true;
            state.release_at = None;
            // Every lock counted was confirmed at or after `started`: the
            // servers keep it for `lock_timeout` after that at least.
            return Lease::Held {
                until: started + self.lock_timeout - self.renew_interval,
            };
        }
        let now = Instant::now();
        if state.leading {
            // The lease is withdrawn with this answer; the locks go after a
            // step that started before could have ended.
            state.leading = false;
            state.release_at = Some(now + self.step_timeout);
        }
        if held > 0 && state.release_at.is_none_or(|at| now >= at) {
            self.release(&mut state).await;
            state.release_at = None;
            state.retry_at = Some(Instant::now() + jitter(self.renew_interval));
        }
        Lease::NotHeld
    }

    /// Gives every held lock back (a session that cannot say so is closed,
    /// which releases it too).
    async fn release(&self, state: &mut LockState) {
        for slot in &mut state.sessions {
            let Some(session) = slot.as_mut().filter(|s| s.held) else {
                continue;
            };
            let released = session
                .conn
                .exec_drop("SELECT RELEASE_LOCK(?)", (LOCK_NAME,));
            if tokio::time::timeout(self.renew_interval, released)
                .await
                .is_ok_and(|r| r.is_ok())
            {
                session.held = false;
            } else {
                *slot = None;
            }
        }
    }
}

/// Visits one server: checks a lock this session holds, or takes or looks
/// at one it does not (connecting first if needed, with the server-side
/// `wait_timeout` that bounds how long a vanished session keeps its lock).
async fn touch(
    session: Option<LockSession>,
    opts: Opts,
    wait_timeout: Duration,
    visit: Visit,
) -> Result<(LockSession, Seen), mysql_async::Error> {
    let mut session = match session {
        Some(session) => session,
        None => {
            let mut conn = Conn::new(opts).await?;
            conn.query_drop(format!(
                "SET SESSION wait_timeout = {}",
                wait_timeout.as_secs()
            ))
            .await?;
            LockSession { conn, held: false }
        }
    };
    let seen = if session.held {
        let mine: Option<Option<i64>> = session
            .conn
            .exec_first("SELECT IS_USED_LOCK(?) = CONNECTION_ID()", (LOCK_NAME,))
            .await?;
        if mine == Some(Some(1)) {
            Seen::Ours
        } else {
            Seen::Theirs
        }
    } else if visit == Visit::Take {
        let got: Option<Option<i64>> = session
            .conn
            .exec_first("SELECT GET_LOCK(?, 0)", (LOCK_NAME,))
            .await?;
        if got == Some(Some(1)) {
            Seen::Ours
        } else {
            Seen::Theirs
        }
    } else {
        let holder: Option<Option<u64>> = session
            .conn
            .exec_first("SELECT IS_USED_LOCK(?)", (LOCK_NAME,))
            .await?;
        if matches!(holder, Some(Some(_))) {
            Seen::Theirs
        } else {
            Seen::Free
        }
    };
    session.held = seen == Seen::Ours;
    Ok((session, seen))
}

/// A random pause shorter than `base`.
fn jitter(base: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    let fraction = (hasher.finish() % 1000) as u32;
    base * fraction / 1000
}

impl super::Coordinator for MajorityLocks {
    fn renew(&self) -> CoordinatorFuture<'_, Lease> {
        Box::pin(self.round())
    }

    fn release(&self) -> CoordinatorFuture<'_, ()> {
        Box::pin(async move {
            let mut state = self.state.lock().await;
            for session in state.sessions.iter_mut().filter_map(Option::take) {
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
        assert!(pauses.iter().all(|p| *p < base));
        assert!(pauses.iter().any(|p| *p != pauses[0]));
    }
}
