//! gRPC with foobar: a tonic server behind foobar-guard's request layers,
//! and a tonic client balanced by [`foobar_lb::LoadBalancer`] over tonic
//! `Channel`s (power of two choices over peak-EWMA latency, outlier
//! ejection). Nothing here is HTTP-proxy specific: the balancer and the
//! layers are plain tower, and this is their second protocol.
//!
//! The service is written by hand, as tonic's code generator would write
//! it, so that building needs no `protoc`:
//!
//! ```text
//! package foobar.example;
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; string served_by = 2; string client = 3; }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use foobar_core::Shutdown;
use foobar_guard::rate_limit::RateLimitLayer;
use foobar_guard::{ClientAddr, FirewallLayer, Rules};
use foobar_lb::health::OutlierDetection;
use foobar_lb::policy::PeakEwmaP2c;
use foobar_lb::{BackendConfig, Backends, LoadBalancer};
use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, ServerTlsConfig};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::AppError;

/// The messages, as `prost` derives them from the `.proto` above.
pub mod proto {
    /// The request.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct HelloRequest {
        /// Whom to greet.
        #[prost(string, tag = "1")]
        pub name: String,
    }

    /// The reply.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct HelloReply {
        /// The greeting.
        #[prost(string, tag = "1")]
        pub message: String,
        /// The server that answered.
        #[prost(string, tag = "2")]
        pub served_by: String,
        /// The client address the server saw.
        #[prost(string, tag = "3")]
        pub client: String,
    }
}

use proto::{HelloReply, HelloRequest};

/// The method's path.
const SAY_HELLO: &str = "/foobar.example.Greeter/SayHello";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The `Greeter` service: answers `SayHello` with its own name and the
/// client address the guard layers found.
#[derive(Clone, Debug)]
pub struct Greeter {
    name: Arc<str>,
    delay: Duration,
}

impl Greeter {
    /// A greeter named `name` that answers after `delay` (to play a slow
    /// backend).
    pub fn new(name: impl Into<Arc<str>>, delay: Duration) -> Self {
        Self {
            name: name.into(),
            delay,
        }
    }
}

impl NamedService for Greeter {
    const NAME: &'static str = "foobar.example.Greeter";
}

impl tower::Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != SAY_HELLO {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let method = SayHello(self.clone());
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
            Ok(grpc.unary(method, req).await)
        })
    }
}

/// `SayHello`, as a unary method.
struct SayHello(Greeter);

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFuture<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let greeter = self.0.clone();
        // Set by the request-level firewall, from tonic's connect info.
        let client = request
            .extensions()
            .get::<ClientAddr>()
            .map(|c| c.0.to_string())
            .unwrap_or_default();
        Box::pin(async move {
            if !greeter.delay.is_zero() {
                tokio::time::sleep(greeter.delay).await;
            }
            Ok(Response::new(HelloReply {
                message: format!("hello, {}", request.get_ref().name),
                served_by: greeter.name.to_string(),
                client,
            }))
        })
    }
}

/// A `Greeter` client over any gRPC transport: a `Channel`, or a
/// [`LoadBalancer`] of them.
#[derive(Debug, Clone)]
pub struct GreeterClient<T> {
    grpc: tonic::client::Grpc<T>,
}

impl<T> GreeterClient<T>
where
    T: tonic::client::GrpcService<Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<foobar_core::BoxError> + Send,
    T::Error: Into<foobar_core::BoxError>,
{
    /// A client sending through `transport`.
    pub fn new(transport: T) -> Self {
        Self {
            grpc: tonic::client::Grpc::new(transport),
        }
    }

    /// Calls `SayHello`.
    ///
    /// # Errors
    /// The call's gRPC status; a transport failure is `Unavailable`.
    pub async fn say_hello(&mut self, name: &str) -> Result<HelloReply, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("not ready: {}", e.into())))?;
        let request = Request::new(HelloRequest {
            name: name.to_owned(),
        });
        let codec = ProstCodec::<HelloRequest, HelloReply>::default();
        let path = PathAndQuery::from_static(SAY_HELLO);
        Ok(self.grpc.unary(request, path, codec).await?.into_inner())
    }
}

/// The balanced transport: P2C over peak-EWMA latency across tonic
/// channels, ejecting a backend after consecutive failures.
pub type Balanced = LoadBalancer<Channel, PeakEwmaP2c>;

/// A client balanced over `urls` (`http://` or, with `tls`, `https://`).
/// The channels connect lazily; the returned set adds, removes and
/// inspects backends at run time.
///
/// # Errors
/// A URL tonic cannot use; a backend named twice.
pub fn balanced_client(
    urls: &[String],
    tls: Option<&ClientTlsConfig>,
    outlier: OutlierDetection,
    shutdown: &Shutdown,
) -> Result<(GreeterClient<Balanced>, Backends<Channel, PeakEwmaP2c>), AppError> {
    let backends = Backends::builder(PeakEwmaP2c::new())
        .name("grpc")
        .outlier_detection(outlier)
        .initial_rtt(Duration::from_millis(1))
        .shutdown(shutdown.clone())
        .build();
    for url in urls {
        let mut endpoint =
            Endpoint::from_shared(url.clone())?.connect_timeout(Duration::from_secs(1));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        backends.add(BackendConfig::new(url.as_str()), endpoint.connect_lazy())?;
    }
    Ok((
        GreeterClient::new(LoadBalancer::new(backends.clone())),
        backends,
    ))
}

/// What a greeter server enforces on every call.
#[derive(Debug, Clone)]
pub struct GuardPolicy {
    /// Which clients may call.
    pub rules: Rules,
    /// Calls per second per client, and the burst.
    pub rate: (u32, u32),
}

/// Serves a [`Greeter`] on `listener` behind the request-level firewall
/// and rate limit, over TLS when `tls` is given, until `shutdown` fires.
/// The guard layers find the client in tonic's `TcpConnectInfo` (or
/// `TlsConnectInfo`) and answer refusals as gRPC statuses.
///
/// # Errors
/// A zero rate; a TLS configuration tonic rejects; a failed server.
pub async fn serve(
    listener: tokio::net::TcpListener,
    greeter: Greeter,
    policy: GuardPolicy,
    tls: Option<ServerTlsConfig>,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .layer(FirewallLayer::new(policy.rules))
        .layer(RateLimitLayer::per_second(policy.rate.0, policy.rate.1)?)
        .add_service(greeter)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async move { shutdown.wait().await },
        )
        .await?;
    Ok(())
}

/// The addresses of `n` listeners bound on 127.0.0.1, with the listeners.
///
/// # Errors
/// When a port cannot be bound.
pub async fn loopback_listeners(
    n: usize,
) -> std::io::Result<Vec<(SocketAddr, tokio::net::TcpListener)>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        out.push((listener.local_addr()?, listener));
    }
    Ok(out)
}
