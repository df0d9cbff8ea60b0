//! Pool sizes, timeouts and the session reset policy.

use std::time::Duration;

/// When a returned connection's session state is reset
/// (`COM_RESET_CONNECTION`: ends an open transaction, drops temporary
/// tables, clears user variables and session settings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetPolicy {
    /// Reset only a connection whose state may have changed: one handed out
    /// raw (`writer()`/`reader()`), one a session was pinned to, one that
    /// was returned inside a transaction. Connections used only through
    /// routed queries skip the round trip.
    #[default]
    OnStateChange,
    /// Reset every connection before it is reused.
    Always,
    /// Never reset: the application manages session state itself. A
    /// connection returned inside a transaction is still closed, not
    /// reused.
    Never,
}

/// Size and timeouts of each host's pool.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Connections per host, at most (default 16).
    pub max_size: usize,
    /// How long a caller waits for a free connection (default 5 s).
    pub wait_timeout: Option<Duration>,
    /// How long creating a connection may take (default 2 s).
    pub create_timeout: Option<Duration>,
    /// How long recycling (ping, reset) may take (default 1 s).
    pub recycle_timeout: Option<Duration>,
    /// A connection idle for longer than this is pinged before reuse
    /// (default 1 s); one used more recently is handed out as is (the
    /// monitor watches the host meanwhile).
    pub ping_idle_after: Duration,
    /// When session state is reset.
    pub reset: ResetPolicy,
    /// How long one statement may run before it fails with
    /// [`Error::StatementTimeout`](crate::Error::StatementTimeout) (default
    /// 30 s; `None`: no limit). Override it per call with
    /// [`Executor::with_timeout`](crate::Executor::with_timeout). With
    /// semi-synchronous replication keep it below
    /// `rpl_semi_sync_master_timeout`, so that a write stuck waiting for an
    /// acknowledgement fails instead of being acknowledged after the server
    /// gave up waiting (see [`failover`](crate::failover)).
    pub statement_timeout: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Some(Duration::from_secs(5)),
            create_timeout: Some(Duration::from_secs(2)),
            recycle_timeout: Some(Duration::from_secs(1)),
            ping_idle_after: Duration::from_secs(1),
            reset: ResetPolicy::OnStateChange,
            statement_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl PoolConfig {
    /// Sets [`PoolConfig::max_size`].
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Sets [`PoolConfig::wait_timeout`].
    pub fn wait_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Sets [`PoolConfig::create_timeout`].
    pub fn create_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.create_timeout = timeout;
        self
    }

    /// Sets [`PoolConfig::recycle_timeout`].
    pub fn recycle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.recycle_timeout = timeout;
        self
    }

    /// Sets [`PoolConfig::ping_idle_after`].
    pub fn ping_idle_after(mut self, idle: Duration) -> Self {
        self.ping_idle_after = idle;
        self
    }

    /// Sets [`PoolConfig::statement_timeout`].
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets [`PoolConfig::reset`].
    pub fn reset(mut self, policy: ResetPolicy) -> Self {
        self.reset = policy;
        self
    }
}
