//! Run-time changes under traffic, cookie stickiness, balancing a
//! non-HTTP tower service, and per-backend metrics.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foobar_core::status::Health;
use foobar_lb::health::OutlierDetection;
use foobar_lb::policy::{ConsistentHash, RoundRobin};
use foobar_lb::{BackendConfig, Backends, HttpKey, LoadBalancer, NoHealthyBackend, Outcome, Proxy};
use http::{Request, StatusCode};
use support::*;
use tower::ServiceExt;

#[tokio::test]
async fn backends_are_added_and_removed_while_requests_flow() {
    let (a, b) = (named("a").await, named("b").await);
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    proxy.add_backend(&a.url()).unwrap();
    let front = serve_proxy(proxy.clone()).await;
    let url = front.url();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (url, stop, failures) = (url.clone(), stop.clone(), failures.clone());
        load.push(tokio::spawn(async move {
            let client = client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 2000 {
                if get(&client, &url).await.0 != StatusCode::OK {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
        }));
    }
    let backend_b = proxy.add_backend(&b.url()).unwrap();
    wait_until(Duration::from_secs(5), "b takes traffic", || {
        backend_b.requests_total() > 20
    })
    .await;
    let drained = proxy.backends().drain(&a.url()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), drained)
        .await
        .expect("a drains");
    proxy.backends().remove(&a.url()).unwrap();
    let before = backend_b.requests_total();
    wait_until(Duration::from_secs(5), "b keeps serving", || {
        backend_b.requests_total() > before + 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed during the changes"
    );
}

#[tokio::test]
async fn a_session_cookie_keeps_a_client_on_one_backend() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let proxy = Proxy::builder(ConsistentHash::new())
        .key(HttpKey::Cookie("session".to_owned()))
        .build()
        .unwrap();
    for s in [&a, &b, &c] {
        proxy.add_backend(&s.url()).unwrap();
    }
    let front = serve_proxy(proxy).await;
    let client = client();
    let mut seen = std::collections::HashSet::new();
    for user in 0..20 {
        let cookie = format!("theme=dark; session=user-{user}");
        let mut names = std::collections::HashSet::new();
        for _ in 0..4 {
            let req = Request::get(front.url())
                .header("cookie", &cookie)
                .body(empty())
                .unwrap();
            names.insert(send(&client, req).await.2);
        }
        assert_eq!(names.len(), 1, "user {user} moved between {names:?}");
        seen.extend(names);
    }
    assert_eq!(seen.len(), 3, "20 sessions spread over every backend");
}

/// A non-HTTP client: answers `Ok(Reply)` or fails.
#[derive(Debug)]
struct Reply(&'static str);

impl Outcome for Reply {
    fn is_failure(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn any_tower_service_is_balanced_and_failing_ones_are_ejected() {
    let backends = Backends::builder(RoundRobin::new())
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_failures(2)
                .max_ejection_percent(50),
        )
        .build();
    let ok = tower::service_fn(|_q: u32| async { Ok::<_, std::io::Error>(Reply("ok")) });
    let broken = tower::service_fn(|_q: u32| async {
        Err::<Reply, _>(std::io::Error::other("connection refused"))
    });
    let ok = tower::util::BoxCloneSyncService::new(ok);
    let broken = tower::util::BoxCloneSyncService::new(broken);
    backends.add(BackendConfig::new("ok"), ok).unwrap();
    let bad = backends.add(BackendConfig::new("broken"), broken).unwrap();
    let lb = LoadBalancer::new(backends.clone());
    let mut errors = 0;
    for q in 0..20 {
        match lb.clone().oneshot(q).await {
            Ok(reply) => assert_eq!(reply.0, "ok"),
            Err(_) => errors += 1,
        }
    }
    assert_eq!(
        errors, 2,
        "two failures, then the broken backend is ejected"
    );
    assert_eq!(bad.health(), Health::Ejected);

    // With every backend gone, the error is a typed NoHealthyBackend.
    backends.remove("ok").unwrap();
    backends.remove("broken").unwrap();
    let err = lb.oneshot(1).await.unwrap_err();
    assert!(err.is::<NoHealthyBackend>(), "{err}");
}

#[tokio::test]
async fn per_backend_metrics_are_exported() {
    let a = named("a").await;
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    // Handles are registered when the backend is added.
    metrics::with_local_recorder(&recorder, || proxy.add_backend(&a.url()).unwrap());
    let front = serve_proxy(proxy).await;
    for _ in 0..7 {
        get(&client(), &front.url()).await;
    }
    let text = handle.render();
    let label = format!("backend=\"{}\"", a.url());
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(&label))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .to_owned()
    };
    assert!(
        line("foobar_lb_backend_requests_total").ends_with(" 7"),
        "{text}"
    );
    assert!(
        line("foobar_lb_backend_in_flight").ends_with(" 0"),
        "{text}"
    );
    assert!(line("foobar_lb_backend_healthy").ends_with(" 1"), "{text}");
    assert!(
        line("foobar_lb_backend_response_seconds_count").ends_with(" 7"),
        "{text}"
    );
}
