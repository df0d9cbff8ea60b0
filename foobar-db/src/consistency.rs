//! Read-your-writes: what a read after a write must see.
//!
//! By default ([`Consistency::Eventual`]) a read goes to any replica within
//! the lag limit and may not yet see a write just made. Two opt-in modes fix
//! that for reads that follow a write — within a
//! [`Session`](crate::Session), or across the pool's own one-shot
//! `query`/`exec` calls:
//!
//! - [`Consistency::Gtid`]: after a write the pool reads its GTID
//!   (`@@last_gtid` on MariaDB, `@@global.gtid_executed` on MySQL); the next
//!   read first waits on the chosen replica until it has applied that GTID
//!   (`MASTER_GTID_WAIT` / `WAIT_FOR_EXECUTED_GTID_SET`) for at most the
//!   timeout, then goes to the primary instead. Costs a round trip after
//!   each write and before each read that follows one.
//! - [`Consistency::PrimaryAfterWrite`]: reads go to the primary for a fixed
//!   window after a write. No extra round trips; more load on the primary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

/// The read-after-write guarantee.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consistency {
    /// Reads may miss recent writes (replication lag).
    #[default]
    Eventual,
    /// A read after a write waits (up to `wait_timeout`) until the replica
    /// has applied the write's GTID, else goes to the primary.
    Gtid {
        /// The longest wait on a replica.
        wait_timeout: Duration,
    },
    /// Reads go to the primary for this long after a write.
    PrimaryAfterWrite(Duration),
}

impl Consistency {
    /// [`Consistency::Gtid`] with the given replica wait.
    pub fn gtid(wait_timeout: Duration) -> Self {
        Self::Gtid { wait_timeout }
    }
}

/// The last write of a session (or of the whole pool): when, and its GTID.
#[derive(Debug)]
pub(crate) struct WriteMark {
    epoch: Instant,
    /// Milliseconds since `epoch` plus one; 0 means never.
    last_write: AtomicU64,
    gtid: ArcSwapOption<String>,
}

impl Default for WriteMark {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last_write: AtomicU64::new(0),
            gtid: ArcSwapOption::empty(),
        }
    }
}

impl WriteMark {
    pub(crate) fn wrote(&self, gtid: Option<String>) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        self.last_write.store(ms, Ordering::Release);
        if let Some(gtid) = gtid.filter(|g| !g.is_empty()) {
            self.gtid.store(Some(Arc::new(gtid)));
        }
    }

    /// Whether a write happened less than `window` ago.
    pub(crate) fn wrote_within(&self, window: Duration) -> bool {
        match self.last_write.load(Ordering::Acquire) {
            0 => false,
            at => {
                let now =
                    u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
                now.saturating_sub(at) < u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
            }
        }
    }

    pub(crate) fn gtid(&self) -> Option<Arc<String>> {
        self.gtid.load_full()
    }
}

/// Whether a server version is MariaDB's (10.x and 11.x; MySQL is 5.x, 8.x, 9.x).
pub(crate) fn is_mariadb(version: (u16, u16, u16)) -> bool {
    (10..=11).contains(&version.0)
}

/// The statement that reads the GTID a write produced.
pub(crate) fn last_gtid_query(version: (u16, u16, u16)) -> &'static str {
    if is_mariadb(version) {
        "SELECT @@last_gtid"
    } else {
        "SELECT @@global.gtid_executed"
    }
}

/// The statement that waits on a replica until it has applied a GTID;
/// returns 0 once applied.
pub(crate) fn wait_query(version: (u16, u16, u16)) -> &'static str {
    if is_mariadb(version) {
        "SELECT MASTER_GTID_WAIT(?, ?)"
    } else {
        "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)"
    }
}
