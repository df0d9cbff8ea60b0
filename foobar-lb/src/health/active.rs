use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};
use tower::{Service, ServiceExt};

use crate::backend::{ActiveHealth, Backend};
use crate::backends::Backends;
use crate::policy::Policy;

/// What an active check does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CheckKind {
    /// Open a TCP connection to the backend's address.
    Tcp,
    /// Send `GET path` through the backend's own service (so HTTPS and mTLS
    /// upstreams are checked the way requests reach them) and expect a
    /// status in `expect_min..=expect_max`.
    Http {
        /// The path (and query) to request.
        path: String,
        /// Lowest acceptable status.
        expect_min: StatusCode,
        /// Highest acceptable status.
        expect_max: StatusCode,
    },
}

/// Active health checks, HAProxy's model: every `interval` each backend is
/// probed (each probe bounded by `timeout`); `fall` failures in a row mark
/// it down, `rise` successes in a row bring it back.
///
/// ```no_run
/// use std::time::Duration;
/// use foobar_lb::health::HealthCheck;
/// # fn f(proxy: &foobar_lb::Proxy) {
/// HealthCheck::http("/healthz")
///     .interval(Duration::from_secs(2))
///     .rise(2)
///     .fall(3)
///     .spawn_http(proxy.backends());
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct HealthCheck {
    kind: CheckKind,
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
}

impl HealthCheck {
    /// A TCP connect check (needs [`BackendConfig::addr`](crate::BackendConfig::addr)).
    pub fn tcp() -> Self {
        Self::with_kind(CheckKind::Tcp)
    }

    /// An HTTP check of `path`, expecting a 2xx status.
    pub fn http(path: impl Into<String>) -> Self {
        Self::with_kind(CheckKind::Http {
            path: path.into(),
            expect_min: StatusCode::OK,
            expect_max: StatusCode::from_u16(299).unwrap_or(StatusCode::OK),
        })
    }

    fn with_kind(kind: CheckKind) -> Self {
        Self {
            kind,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }

    /// Expect exactly this status (HTTP checks).
    pub fn expect_status(mut self, status: StatusCode) -> Self {
        if let CheckKind::Http {
            expect_min,
            expect_max,
            ..
        } = &mut self.kind
        {
            *expect_min = status;
            *expect_max = status;
        }
        self
    }

    /// Time between checks of one backend. Default: 2 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Longest a probe may take before it counts as failed; capped at the
    /// interval. Default: 1 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Successes in a row that bring a down backend back. Default: 2.
    pub fn rise(mut self, rise: u32) -> Self {
        self.rise = rise.max(1);
        self
    }

    /// Failures in a row that take a backend out. Default: 3.
    pub fn fall(mut self, fall: u32) -> Self {
        self.fall = fall.max(1);
        self
    }

    /// Checks the set in a background task until its shutdown signal
    /// fires. HTTP checks go through each backend's service.
    pub fn spawn_http<S, P, B, RB>(self, backends: &Backends<S, P>) -> JoinHandle<()>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone + Send + Sync + 'static,
        S::Future: Send,
        B: Default + Send + 'static,
        RB: Send + 'static,
        P: Policy,
    {
        let kind = self.kind.clone();
        self.spawn_with(backends, move |backend, service: S| {
            let kind = kind.clone();
            Box::pin(async move {
                match kind {
                    CheckKind::Tcp => tcp_probe(&backend).await,
                    CheckKind::Http {
                        path,
                        expect_min,
                        expect_max,
                    } => {
                        let Ok(req) = Request::builder()
                            .method(Method::GET)
                            .uri(path.as_str())
                            .header(http::header::USER_AGENT, "foobar-lb-health-check")
                            .body(B::default())
                        else {
                            return false;
                        };
                        match service.oneshot(req).await {
                            Ok(resp) => (expect_min..=expect_max).contains(&resp.status()),
                            Err(_) => false,
                        }
                    }
                }
            })
        })
    }

    /// TCP checks for a set of any kind of service.
    pub fn spawn_tcp<S, P>(self, backends: &Backends<S, P>) -> JoinHandle<()>
    where
        S: Clone + Send + Sync + 'static,
        P: Policy,
    {
        self.spawn_with(backends, |backend, _service: S| {
            Box::pin(async move { tcp_probe(&backend).await })
        })
    }

    fn spawn_with<S, P, F>(self, backends: &Backends<S, P>, probe: F) -> JoinHandle<()>
    where
        S: Clone + Send + Sync + 'static,
        P: Policy,
        F: Fn(Arc<Backend>, S) -> Pin<Box<dyn Future<Output = bool> + Send>>
            + Send
            + Sync
            + 'static,
    {
        let backends = backends.clone();
        let shutdown = backends.shutdown_signal().clone();
        tokio::spawn(async move {
            tokio::select! {
                () = self.run(&backends, probe) => {}
                () = shutdown.wait() => {}
            }
        })
    }

    async fn run<S, P, F>(&self, backends: &Backends<S, P>, probe: F)
    where
        S: Clone + Send + Sync + 'static,
        P: Policy,
        F: Fn(Arc<Backend>, S) -> Pin<Box<dyn Future<Output = bool> + Send>>,
    {
        let timeout = self.timeout.min(self.interval);
        // Consecutive (successes, failures) per backend, by identity.
        let mut streaks: HashMap<usize, (u32, u32)> = HashMap::new();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let members = backends.members();
            let mut probes = JoinSet::new();
            for (index, (backend, service)) in members.iter().enumerate() {
                let probe = probe(backend.clone(), service.clone());
                probes.spawn(async move {
                    let ok = tokio::time::timeout(timeout, probe).await.unwrap_or(false);
                    (index, ok)
                });
            }
            let mut refreshed = false;
            while let Some(result) = probes.join_next().await {
                let Ok((index, ok)) = result else { continue };
                let backend = &members[index].0;
                let key = Arc::as_ptr(backend) as usize;
                let streak = streaks.entry(key).or_insert((0, 0));
                *streak = if ok {
                    (streak.0 + 1, 0)
                } else {
                    (0, streak.1 + 1)
                };
                if self.judge(backends, backend, *streak) {
                    // At once, so requests stop (or start) going there
                    // without waiting for slower probes of this round.
                    backends.refresh();
                    refreshed = true;
                }
            }
            streaks.retain(|key, _| members.iter().any(|(b, _)| Arc::as_ptr(b) as usize == *key));
            if !refreshed && members.iter().any(|(b, _)| b.is_ejected()) {
                // Ends ejections that are due, should their timer be gone.
                backends.refresh();
            }
        }
    }

    /// Applies rise/fall to one backend's streak; true if it changed state.
    fn judge<S, P>(
        &self,
        backends: &Backends<S, P>,
        backend: &Backend,
        (ok, failed): (u32, u32),
    ) -> bool
    where
        S: Clone + Send + Sync + 'static,
        P: Policy,
    {
        let current = backend.active_health();
        let next = match current {
            ActiveHealth::Down if ok >= self.rise => ActiveHealth::Up,
            ActiveHealth::Unknown if ok >= 1 => ActiveHealth::Up,
            ActiveHealth::Up | ActiveHealth::Unknown if failed >= self.fall => ActiveHealth::Down,
            other => other,
        };
        if next == current {
            return false;
        }
        let changed = backend.set_active_health(next);
        match next {
            ActiveHealth::Down => backends.record_event(
                backend,
                "down",
                &format!("down after {failed} failed checks"),
            ),
            ActiveHealth::Up if current == ActiveHealth::Down => {
                backends.record_event(backend, "up", &format!("up after {ok} passed checks"));
            }
            _ => {}
        }
        changed
    }
}

async fn tcp_probe(backend: &Backend) -> bool {
    match backend.addr() {
        Some(addr) => TcpStream::connect(addr).await.is_ok(),
        None => {
            tracing::warn!(
                backend = backend.id(),
                "TCP health check without an address: counted as failed"
            );
            false
        }
    }
}
