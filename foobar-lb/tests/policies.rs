//! Distribution of each policy over real backends behind the proxy.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use foobar_lb::policy::{
    ConsistentHash, LeastOutstanding, PeakEwmaP2c, Random, RoundRobin, WeightedRoundRobin,
};
use foobar_lb::{BackendConfig, Backends, HttpKey, LoadBalancer, Policy, Proxy};
use http::header::HeaderName;
use http::{Request, StatusCode};
use support::*;
use tower::ServiceExt;

async fn count(url: &str, n: usize) -> HashMap<String, usize> {
    let client = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let (status, body) = get(&client, url).await;
        assert_eq!(status, StatusCode::OK);
        *counts.entry(body).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn round_robin_is_exact() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    for backend in [&a, &b, &c] {
        proxy.add_backend(&backend.url()).unwrap();
    }
    let front = serve_proxy(proxy).await;
    let counts = count(&front.url(), 300).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    for name in ["a", "b", "c"] {
        assert_eq!(counts[name], 100, "{counts:?}");
    }
}

#[tokio::test]
async fn smooth_weighted_round_robin_follows_weights_exactly() {
    let (a, b) = (named("a").await, named("b").await);
    let proxy = Proxy::builder(WeightedRoundRobin::new()).build().unwrap();
    proxy.add_weighted_backend(&a.url(), 3).unwrap();
    proxy.add_weighted_backend(&b.url(), 1).unwrap();
    let front = serve_proxy(proxy.clone()).await;
    let counts = count(&front.url(), 400).await;
    assert_eq!((counts["a"], counts["b"]), (300, 100));

    // Re-weighting at run time keeps the backends and their counters.
    let before = proxy.backends().get(&a.url()).unwrap().requests_total();
    proxy.backends().set_weight(&a.url(), 1).unwrap();
    let counts = count(&front.url(), 200).await;
    assert_eq!((counts["a"], counts["b"]), (100, 100));
    let after = proxy.backends().get(&a.url()).unwrap().requests_total();
    assert_eq!(after, before + 100);
}

#[tokio::test]
async fn weighted_random_is_within_tolerance() {
    let (a, b) = (named("a").await, named("b").await);
    let proxy = Proxy::builder(Random::new()).build().unwrap();
    proxy.add_weighted_backend(&a.url(), 3).unwrap();
    proxy.add_weighted_backend(&b.url(), 1).unwrap();
    let front = serve_proxy(proxy).await;
    let counts = count(&front.url(), 2000).await;
    let share = counts["a"] as f64 / 2000.0;
    assert!(
        (0.70..=0.80).contains(&share),
        "share of a = {share}, {counts:?}"
    );
}

/// Sends `per_task × tasks` requests with `tasks` concurrent clients.
async fn concurrent_counts(url: String, tasks: usize, per_task: usize) -> HashMap<String, usize> {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let url = url.clone();
        handles.push(tokio::spawn(async move {
            let client = client();
            let mut names = Vec::new();
            for _ in 0..per_task {
                let (status, body) = get(&client, &url).await;
                assert_eq!(status, StatusCode::OK);
                names.push(body);
            }
            names
        }));
    }
    let mut counts = HashMap::new();
    for handle in handles {
        for name in handle.await.unwrap() {
            *counts.entry(name).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn p2c_peak_ewma_prefers_the_fast_backend() {
    let fast = named("fast").await;
    let slowed = slow("slow", Duration::from_millis(30)).await;
    let proxy = Proxy::builder(PeakEwmaP2c::new()).build().unwrap();
    proxy.add_backend(&fast.url()).unwrap();
    proxy.add_backend(&slowed.url()).unwrap();
    let front = serve_proxy(proxy).await;
    let counts = concurrent_counts(front.url(), 4, 50).await;
    let (f, s) = (
        counts.get("fast").copied().unwrap_or(0),
        counts.get("slow").copied().unwrap_or(0),
    );
    assert_eq!(f + s, 200);
    assert!(f > 4 * s, "fast {f}, slow {s}");
}

#[tokio::test]
async fn least_outstanding_prefers_the_idle_backend() {
    let fast = named("fast").await;
    let slowed = slow("slow", Duration::from_millis(30)).await;
    let proxy = Proxy::builder(LeastOutstanding::new()).build().unwrap();
    proxy.add_backend(&fast.url()).unwrap();
    proxy.add_backend(&slowed.url()).unwrap();
    let front = serve_proxy(proxy).await;
    let counts = concurrent_counts(front.url(), 4, 50).await;
    let (f, s) = (
        counts.get("fast").copied().unwrap_or(0),
        counts.get("slow").copied().unwrap_or(0),
    );
    assert_eq!(f + s, 200);
    assert!(f > 3 * s, "fast {f}, slow {s}");
}

/// Where each of `keys` lands under consistent hashing over `backends`.
async fn placements(names: &[&'static str], keys: usize) -> Vec<String> {
    let backends = Backends::builder(ConsistentHash::new()).build();
    for &name in names {
        let svc = tower::service_fn(move |_req: Request<()>| async move {
            Ok::<_, Infallible>(http::Response::new(name.to_owned()))
        });
        backends.add(BackendConfig::new(name), svc).unwrap();
    }
    let lb =
        LoadBalancer::new(backends).with_key(HttpKey::Header(HeaderName::from_static("x-user")));
    let mut out = Vec::with_capacity(keys);
    for key in 0..keys {
        let req = Request::builder()
            .header("x-user", format!("user-{key}"))
            .body(())
            .unwrap();
        let resp = lb.clone().oneshot(req).await.unwrap();
        out.push(resp.into_body());
    }
    out
}

#[tokio::test]
async fn consistent_hash_moves_about_one_nth_of_keys_when_a_backend_is_added() {
    const KEYS: usize = 10_000;
    let four = ["b0", "b1", "b2", "b3"];
    let five = ["b0", "b1", "b2", "b3", "b4"];
    let before = placements(&four, KEYS).await;
    let again = placements(&four, KEYS).await;
    assert_eq!(before, again, "placement is deterministic");
    let after = placements(&five, KEYS).await;
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    // Every moved key must have moved to the new backend.
    assert!(before.iter().zip(&after).all(|(a, b)| a == b || b == "b4"));
    let share = moved as f64 / KEYS as f64;
    assert!(share <= 1.0 / 5.0 + 0.05, "moved {share}");
    assert!(share >= 1.0 / 5.0 - 0.05, "moved {share}");
}

#[tokio::test]
async fn consistent_hash_on_client_ip_is_sticky_over_real_connections() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let proxy = Proxy::builder(ConsistentHash::new())
        .key(HttpKey::ClientIp)
        .build()
        .unwrap();
    for backend in [&a, &b, &c] {
        proxy.add_backend(&backend.url()).unwrap();
    }
    let front = serve_proxy(proxy).await;
    let mut seen = HashMap::new();
    for i in 1..=12 {
        let source = format!("127.0.0.{i}");
        let client = client_from(Some(&source));
        let (_, first) = get(&client, &front.url()).await;
        for _ in 0..5 {
            // Fresh connections from the same address land on the same backend.
            let client = client_from(Some(&source));
            assert_eq!(get(&client, &front.url()).await.1, first, "{source}");
        }
        seen.insert(first, ());
    }
    assert!(seen.len() >= 2, "12 clients all on one backend: {seen:?}");
}

#[tokio::test]
async fn user_policies_plug_in() {
    /// Always the last backend.
    #[derive(Debug)]
    struct Last;
    impl Policy for Last {
        type Prepared = ();
        fn name(&self) -> &str {
            "last"
        }
        fn prepare(&self, _: &[std::sync::Arc<foobar_lb::Backend>]) {}
        fn pick(
            &self,
            (): &(),
            backends: &[std::sync::Arc<foobar_lb::Backend>],
            _: Option<u64>,
        ) -> Option<usize> {
            Some(backends.len() - 1)
        }
    }
    let (a, b) = (named("a").await, named("b").await);
    let proxy = Proxy::builder(Last).build().unwrap();
    proxy.add_backend(&a.url()).unwrap();
    proxy.add_backend(&b.url()).unwrap();
    let front = serve_proxy(proxy.clone()).await;
    assert_eq!(count(&front.url(), 10).await["b"], 10);
    assert_eq!(proxy.backends().status().policy, "last");
}

#[tokio::test]
async fn http1_and_http2_clients_place_a_key_on_the_same_backend() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let proxy = Proxy::builder(ConsistentHash::new())
        .key(HttpKey::Cookie("session".to_owned()))
        .build()
        .unwrap();
    for backend in [&a, &b, &c] {
        proxy.add_backend(&backend.url()).unwrap();
    }
    let front = serve_proxy(proxy).await;
    let h1 = client();
    let h2: hyper_util::client::legacy::Client<_, TestBody> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut seen = HashMap::new();
    for i in 0..20 {
        let cookie = format!("theme=dark; session=user{i}");
        let req = || {
            http::Request::get(front.url())
                .header("cookie", cookie.as_str())
                .body(empty())
                .unwrap()
        };
        let (_, _, by_h1) = send(&h1, req()).await;
        for _ in 0..3 {
            let (_, _, by_h2) = send(&h2, req()).await;
            assert_eq!(by_h2, by_h1, "session=user{i}");
        }
        *seen.entry(by_h1).or_insert(0) += 1;
    }
    assert!(seen.len() >= 2, "20 sessions all on one backend: {seen:?}");
}
