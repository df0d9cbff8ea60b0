//! The reverse proxy served as a `tower::Service` through hyper.

mod proxy_cases;
mod support;

use foobar_lb::Proxy;
use support::{serve_proxy, TestServer};

async fn serve_front(proxy: Proxy) -> TestServer {
    serve_proxy(proxy).await
}
