//! [`LoadBalancer`]: a `tower::Service` that spreads requests over the
//! services of a [`Backends`] set.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use foobar_core::BoxError;
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::backends::{Backends, InFlight};
use crate::error::NoHealthyBackend;
use crate::key::{NoKey, RequestKey};
use crate::policy::Policy;

/// Tells a failed response from a good one, for outlier detection and error
/// counts. Errors returned by the backend's service always count as
/// failures.
pub trait Outcome {
    /// Whether this response counts as a backend failure.
    fn is_failure(&self) -> bool;
}

impl<B> Outcome for http::Response<B> {
    /// 5xx responses are failures.
    fn is_failure(&self) -> bool {
        self.status().is_server_error()
    }
}

/// Balances requests over any tower service: each call picks a backend by
/// policy and calls a clone of its service. `K` extracts the affinity key
/// for [`ConsistentHash`](crate::policy::ConsistentHash).
///
/// ```
/// use std::convert::Infallible;
/// use foobar_lb::{BackendConfig, Backends, LoadBalancer, policy::RoundRobin};
/// use tower::{service_fn, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let backends = Backends::builder(RoundRobin::new()).build();
/// for name in ["a", "b"] {
///     let svc = service_fn(move |req: http::Request<()>| async move {
///         Ok::<_, Infallible>(http::Response::new(format!("{name} {}", req.uri())))
///     });
///     backends.add(BackendConfig::new(name), svc).unwrap();
/// }
/// let lb = LoadBalancer::new(backends);
/// let first = lb.clone().oneshot(http::Request::new(())).await.unwrap();
/// let second = lb.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!((first.body().as_str(), second.body().as_str()), ("a /", "b /"));
/// # }
/// ```
#[derive(Debug)]
pub struct LoadBalancer<S, P: Policy, K = NoKey> {
    backends: Backends<S, P>,
    key: K,
}

impl<S, P: Policy, K: Clone> Clone for LoadBalancer<S, P, K> {
    fn clone(&self) -> Self {
        Self {
            backends: self.backends.clone(),
            key: self.key.clone(),
        }
    }
}

impl<S, P> LoadBalancer<S, P, NoKey>
where
    S: Clone + Send + Sync + 'static,
    P: Policy,
{
    /// Balances over `backends`, without affinity keys.
    pub fn new(backends: Backends<S, P>) -> Self {
        Self {
            backends,
            key: NoKey,
        }
    }
}

impl<S, P, K> LoadBalancer<S, P, K>
where
    S: Clone + Send + Sync + 'static,
    P: Policy,
{
    /// Uses `key` to extract each request's affinity key.
    pub fn with_key<K2>(self, key: K2) -> LoadBalancer<S, P, K2> {
        LoadBalancer {
            backends: self.backends,
            key,
        }
    }

    /// The backend set (to add, remove, drain backends at run time).
    pub fn backends(&self) -> &Backends<S, P> {
        &self.backends
    }

    /// The key extractor.
    pub fn get_ref(&self) -> &K {
        &self.key
    }
}

impl<S, P, K, Req> Service<Req> for LoadBalancer<S, P, K>
where
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Response: Outcome,
    P: Policy,
    K: RequestKey<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<Oneshot<S, Req>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is per backend, awaited inside the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = self.key.key(&req);
        let picked = self.backends.with_pick(key, None, |backend, service| {
            (self.backends.start(backend), service.clone())
        });
        match picked {
            Some((in_flight, service)) => ResponseFuture {
                inner: Some(service.oneshot(req)),
                in_flight: Some(in_flight),
            },
            None => ResponseFuture {
                inner: None,
                in_flight: None,
            },
        }
    }
}

pin_project! {
    /// The response future of [`LoadBalancer`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        in_flight: Option<InFlight>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    T: Outcome,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            metrics::counter!("foobar_lb_no_backend_total").increment(1);
            return Poll::Ready(Err(NoHealthyBackend.into()));
        };
        let result = ready!(inner.poll(cx));
        if let Some(mut in_flight) = this.in_flight.take() {
            in_flight.record(result.as_ref().map_or(true, Outcome::is_failure));
        }
        Poll::Ready(result.map_err(Into::into))
    }
}
