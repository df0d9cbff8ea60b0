//! Active health checks, outlier ejection, panic mode, draining, status.

mod support;

use std::time::{Duration, Instant};

use foobar_core::status::Health;
use foobar_core::{Shutdown, StatusSource};
use foobar_lb::health::{HealthCheck, OutlierDetection};
use foobar_lb::policy::RoundRobin;
use foobar_lb::status::LbStatus;
use foobar_lb::Proxy;
use http::StatusCode;
use support::*;

#[tokio::test]
async fn a_killed_backend_is_out_within_interval_times_fall_and_back_after_rise() {
    const INTERVAL: Duration = Duration::from_millis(100);
    const FALL: u32 = 3;
    const RISE: u32 = 2;
    let a = named("a").await;
    let b = named("b").await;
    let b_addr = b.addr;
    let shutdown = Shutdown::new();
    let proxy = Proxy::builder(RoundRobin::new())
        .shutdown(shutdown.clone())
        .build()
        .unwrap();
    proxy.add_backend(&a.url()).unwrap();
    let b_backend = proxy.add_backend(&b.url()).unwrap();
    let checker = HealthCheck::http("/healthz")
        .interval(INTERVAL)
        .timeout(Duration::from_millis(80))
        .fall(FALL)
        .rise(RISE)
        .spawn_http(proxy.backends());
    wait_until(Duration::from_secs(5), "b checked up", || {
        b_backend.health() == Health::Up
    })
    .await;

    b.stop().await;
    let killed = Instant::now();
    wait_until(Duration::from_secs(5), "b marked down", || {
        b_backend.health() == Health::Down
    })
    .await;
    let out_after = killed.elapsed();
    assert!(
        out_after <= INTERVAL * FALL + Duration::from_millis(250),
        "taken out after {out_after:?}"
    );
    assert_eq!(proxy.backends().available(), 1);
    let front = serve_proxy(proxy.clone()).await;
    let client = client();
    for _ in 0..10 {
        assert_eq!(
            get(&client, &front.url()).await,
            (StatusCode::OK, "a".to_owned())
        );
    }

    // Restart on the same address: back after `rise` passed checks.
    let _b_again = named_at(&b_addr.to_string(), "b").await;
    let restarted = Instant::now();
    wait_until(Duration::from_secs(5), "b back up", || {
        b_backend.health() == Health::Up
    })
    .await;
    let back_after = restarted.elapsed();
    assert!(
        // Two passed checks are one interval apart, less the probes' jitter.
        back_after >= INTERVAL * (RISE - 1) - Duration::from_millis(20),
        "back after {back_after:?}: fewer than {RISE} checks"
    );
    assert!(
        back_after <= INTERVAL * RISE + Duration::from_millis(250),
        "back after {back_after:?}"
    );
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(get(&client, &front.url()).await.1);
    }
    assert!(names.contains(&"b".to_owned()), "{names:?}");
    let events = proxy.backends().events();
    assert!(events.iter().any(|e| e.kind == "down"));
    assert!(events.iter().any(|e| e.kind == "up"));

    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(2), checker)
        .await
        .expect("health checks stop on shutdown")
        .unwrap();
}

#[tokio::test]
async fn tcp_checks_detect_a_closed_port() {
    let a = named("a").await;
    let b = named("b").await;
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    proxy.add_backend(&a.url()).unwrap();
    let b_backend = proxy.add_backend(&b.url()).unwrap();
    let _checker = HealthCheck::tcp()
        .interval(Duration::from_millis(50))
        .fall(2)
        .spawn_http(proxy.backends());
    wait_until(Duration::from_secs(5), "b up", || {
        b_backend.health() == Health::Up
    })
    .await;
    b.stop().await;
    wait_until(Duration::from_secs(5), "b down", || {
        b_backend.health() == Health::Down
    })
    .await;
}

#[tokio::test]
async fn consecutive_5xx_eject_a_backend_for_a_while() {
    let good = named("good").await;
    let failing = status_backend(StatusCode::INTERNAL_SERVER_ERROR).await;
    let proxy = Proxy::builder(RoundRobin::new())
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_failures(3)
                .base_ejection_time(Duration::from_millis(300))
                .max_ejection_percent(50),
        )
        .build()
        .unwrap();
    proxy.add_backend(&good.url()).unwrap();
    let bad = proxy.add_backend(&failing.url()).unwrap();
    let front = serve_proxy(proxy.clone()).await;
    let client = client();

    // Round robin: the 3rd failure comes with the 6th request.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get(&client, &front.url()).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| s.is_server_error()).count(), 3);
    assert_eq!(bad.health(), Health::Ejected);
    assert_eq!(bad.ejections_total(), 1);
    for _ in 0..10 {
        assert_eq!(get(&client, &front.url()).await.0, StatusCode::OK);
    }
    // The ejection ends by itself; the next three failures eject it for
    // twice as long.
    wait_until(Duration::from_secs(3), "ejection over", || {
        proxy.backends().available() == 2
    })
    .await;
    assert_eq!(bad.health(), Health::Unknown);
    for _ in 0..6 {
        get(&client, &front.url()).await;
    }
    assert_eq!(bad.ejections_total(), 2);
    let second = Instant::now();
    wait_until(Duration::from_secs(3), "second ejection over", || {
        proxy.backends().available() == 2
    })
    .await;
    assert!(
        second.elapsed() >= Duration::from_millis(450),
        "{:?}",
        second.elapsed()
    );
    let events = proxy.backends().events();
    assert!(events.iter().filter(|e| e.kind == "ejected").count() == 2);
}

#[tokio::test]
async fn ejection_is_capped_by_max_ejection_percent() {
    let failing_a = status_backend(StatusCode::BAD_GATEWAY).await;
    let failing_b = status_backend(StatusCode::BAD_GATEWAY).await;
    let proxy = Proxy::builder(RoundRobin::new())
        .outlier_detection(
            OutlierDetection::new()
                .consecutive_failures(2)
                .max_ejection_percent(50),
        )
        .build()
        .unwrap();
    let a = proxy.add_backend(&failing_a.url()).unwrap();
    let b = proxy.add_backend(&failing_b.url()).unwrap();
    let front = serve_proxy(proxy.clone()).await;
    let client = client();
    for _ in 0..10 {
        get(&client, &front.url()).await;
    }
    // Of two backends, 50% allows one ejection; the other keeps serving.
    assert_eq!(u64::from(a.is_ejected()) + u64::from(b.is_ejected()), 1);
    assert_eq!(proxy.backends().available(), 1);
}

#[tokio::test]
async fn panic_mode_tries_every_backend_when_none_is_healthy() {
    let a = named("a").await;
    for panic in [false, true] {
        let proxy = Proxy::builder(RoundRobin::new())
            .panic_mode(panic)
            .build()
            .unwrap();
        let backend = proxy.add_backend(&a.url()).unwrap();
        let _checker = HealthCheck::http("/")
            .expect_status(StatusCode::NO_CONTENT)
            .interval(Duration::from_millis(30))
            .fall(1)
            .spawn_http(proxy.backends());
        wait_until(Duration::from_secs(5), "down", || {
            backend.health() == Health::Down
        })
        .await;
        assert!(!proxy.ready());
        let front = serve_proxy(proxy.clone()).await;
        let (status, body) = get(&client(), &front.url()).await;
        if panic {
            assert_eq!((status, body.as_str()), (StatusCode::OK, "a"));
        } else {
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::SERVICE_UNAVAILABLE, "no healthy backend\n")
            );
        }
    }
}

#[tokio::test]
async fn draining_finishes_in_flight_requests_and_takes_no_new_ones() {
    let a = named("a").await;
    let b = slow("b", Duration::from_millis(300)).await;
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    proxy.add_backend(&a.url()).unwrap();
    let b_backend = proxy.add_backend(&b.url()).unwrap();
    let front = serve_proxy(proxy.clone()).await;

    // One request to a, one (slow) in flight to b.
    let url = front.url();
    assert_eq!(get(&client(), &url).await.1, "a");
    let in_flight = tokio::spawn(async move { get(&client(), &url).await });
    wait_until(Duration::from_secs(2), "request in flight on b", || {
        b_backend.in_flight() == 1
    })
    .await;

    let mut drained = Box::pin(proxy.backends().drain(b_backend.id()).unwrap());
    assert_eq!(b_backend.health(), Health::Draining);
    if b_backend.in_flight() == 1 {
        assert!(
            tokio::time::timeout(Duration::from_millis(5), &mut drained)
                .await
                .is_err(),
            "drain completed with a request in flight"
        );
    }
    for _ in 0..4 {
        assert_eq!(get(&client(), &front.url()).await.1, "a");
    }
    tokio::time::timeout(Duration::from_secs(2), drained)
        .await
        .expect("drain completes");
    assert_eq!(b_backend.in_flight(), 0);
    assert_eq!(in_flight.await.unwrap(), (StatusCode::OK, "b".to_owned()));
    assert_eq!(b_backend.in_flight(), 0);
    let removed = proxy.backends().remove(b_backend.id()).unwrap();
    assert_eq!(removed.requests_total(), 1, "state survives until removal");
    assert_eq!(proxy.backends().len(), 1);
}

#[tokio::test]
async fn status_snapshot_reports_backends_and_readiness() {
    let a = named("a").await;
    let proxy = Proxy::builder(RoundRobin::new())
        .name("www")
        .build()
        .unwrap();
    assert!(!proxy.ready(), "no backend: not ready");
    proxy.add_backend(&a.url()).unwrap();
    assert!(proxy.ready());
    let front = serve_proxy(proxy.clone()).await;
    for _ in 0..5 {
        get(&client(), &front.url()).await;
    }
    assert_eq!(StatusSource::name(&proxy), "www");
    let snapshot = proxy.snapshot();
    assert_eq!(snapshot.kind, foobar_lb::status::KIND);
    // No health checks: the backend serves, its health is not known.
    assert_eq!(snapshot.health, Health::Unknown);
    let status: LbStatus = serde_json::from_value(snapshot.data).unwrap();
    assert_eq!(status.policy, "round_robin");
    let backend = &status.backends[0];
    assert_eq!(backend.id, a.url());
    assert_eq!(backend.requests_total, 5);
    assert_eq!(backend.in_flight, 0);
    assert!(backend.latency_p99_seconds.is_some_and(|p| p > 0.0));
    assert!(snapshot.events.iter().any(|e| e.kind == "added"));
    let json = serde_json::to_value(proxy.snapshot()).unwrap();
    assert_eq!(json["data"]["backends"][0]["requests_total"], 5);
}
