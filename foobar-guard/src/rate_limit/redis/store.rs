//! The Redis side of the shared limits: one connection (reconnecting), the
//! GCRA script, the timeout every call runs under, and whether Redis is
//! taken as up. After a failure, requests stop asking Redis at once and a
//! background probe pings it with back-off until it answers again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The script, loaded once per Redis server (and again after a restart:
/// `EVALSHA` falls back to `SCRIPT LOAD` on `NOSCRIPT`).
const GCRA: &str = include_str!("gcra.lua");

/// What Redis granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Grant {
    /// This many tokens (at least one).
    Tokens(u32),
    /// None: the bucket holds fewer than the tokens wanted for this long.
    Empty(Duration),
}

/// Why Redis gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// Redis was taken as down; it was not asked.
    Down,
    /// No answer within the timeout.
    Timeout,
    /// An error (connection refused or lost, a script error).
    Error,
}

/// How Redis is reached and how failures are handled.
pub(super) struct StoreConfig {
    pub(super) timeout: Duration,
    pub(super) backoff_min: Duration,
    pub(super) backoff_max: Duration,
    /// Microseconds per token.
    pub(super) interval_us: f64,
    pub(super) burst: u32,
}

pub(super) struct Store {
    conn: ConnectionManager,
    script: redis::Script,
    config: StoreConfig,
    up: AtomicBool,
    latency: Histogram,
    timeouts: Counter,
    errors: Counter,
    up_gauge: Gauge,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("up", &self.is_up())
            .field("timeout", &self.config.timeout)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects lazily: nothing is sent before the first decision.
    /// Must run inside a Tokio runtime (the connection manager spawns).
    pub(super) fn new(client: redis::Client, config: StoreConfig) -> redis::RedisResult<Self> {
        // The manager reconnects by itself on a lost connection; one quick
        // attempt per command is enough, as the probe below paces retries.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(config.timeout.max(Duration::from_millis(500))))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(config.backoff_min.max(Duration::from_millis(10)));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)?;
        let up_gauge = metrics::gauge!("foobar_rate_limit_redis_up");
        up_gauge.set(1.0);
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA),
            config,
            up: AtomicBool::new(true),
            latency: metrics::histogram!("foobar_rate_limit_redis_duration_seconds"),
            timeouts: metrics::counter!("foobar_rate_limit_redis_failures_total", "reason" => "timeout"),
            errors: metrics::counter!("foobar_rate_limit_redis_failures_total", "reason" => "error"),
            up_gauge,
        })
    }

    /// Whether Redis is asked (it answered the last call or probe).
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The longest a request waits for Redis.
    pub(super) fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Takes up to `want` tokens of `key` in one script call, within the
    /// timeout.
    pub(super) async fn take(self: Arc<Self>, key: Vec<u8>, want: u32) -> Result<Grant, Failure> {
        let timeout = self.config.timeout;
        self.take_within(key, want, timeout).await
    }

    /// [`take`](Self::take), within `timeout` (at most the configured one).
    pub(super) async fn take_within(
        self: Arc<Self>,
        key: Vec<u8>,
        want: u32,
        timeout: Duration,
    ) -> Result<Grant, Failure> {
        if !self.is_up() {
            return Err(Failure::Down);
        }
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let mut call = self.script.key(key);
        call.arg(self.config.interval_us)
            .arg(self.config.burst)
            .arg(want);
        let answer =
            tokio::time::timeout(timeout, call.invoke_async::<(i64, i64)>(&mut conn)).await;
        self.latency.record(started.elapsed());
        match answer {
            Ok(Ok((granted, _))) if granted > 0 => Ok(Grant::Tokens(
                u32::try_from(granted).unwrap_or(want).min(want),
            )),
            Ok(Ok((_, wait_us))) => Ok(Grant::Empty(Duration::from_micros(
                u64::try_from(wait_us).unwrap_or(0),
            ))),
            Ok(Err(error)) => {
                self.errors.increment(1);
                self.went_down(&error.to_string());
                Err(Failure::Error)
            }
            Err(_) => {
                self.timeouts.increment(1);
                self.went_down("no answer within the timeout");
                Err(Failure::Timeout)
            }
        }
    }

    /// Stops asking Redis and starts the probe (once per outage).
    fn went_down(self: &Arc<Self>, cause: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.up_gauge.set(0.0);
            tracing::warn!(
                cause,
                "Redis is unavailable; rate limits fall back until it answers again"
            );
            tokio::spawn(probe(Arc::downgrade(self)));
        }
    }
}

/// Pings Redis with exponential back-off until it answers within the
/// timeout, then lets requests ask it again. Ends with the store.
async fn probe(store: Weak<Store>) {
    let mut delay = match store.upgrade() {
        Some(store) => store.config.backoff_min,
        None => return,
    };
    loop {
        tokio::time::sleep(delay).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        let mut conn = store.conn.clone();
        let ping = redis::cmd("PING");
        let answer =
            tokio::time::timeout(store.config.timeout, ping.query_async::<String>(&mut conn)).await;
        if let Ok(Ok(_)) = answer {
            store.up.store(true, Ordering::Release);
            store.up_gauge.set(1.0);
            tracing::info!("Redis answers again; shared rate limits resume");
            return;
        }
        delay = (delay * 2).min(store.config.backoff_max);
    }
}
