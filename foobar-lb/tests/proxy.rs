//! The reverse proxy served as a `tower::Service` through hyper.

mod proxy_cases;
mod support;

use foobar_core::HttpConfig;
use foobar_lb::Proxy;
use support::{serve_proxy, serve_with, TestServer};

async fn serve_front(proxy: Proxy) -> TestServer {
    serve_proxy(proxy).await
}

async fn serve_front_with(proxy: Proxy, http: HttpConfig) -> TestServer {
    serve_with("127.0.0.1:0", proxy, http).await
}
