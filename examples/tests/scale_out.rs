//! End-to-end: the stack with two load balancers (`stack --lbs 2`), which
//! share their per-client rate limit through the stack's private Redis and
//! show every role on each admin listener's fleet view.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

/// The per-client limit the stack is started with (requests per second;
/// the load balancers' burst is twice that).
const RATE: u32 = 20;

#[tokio::test]
async fn two_load_balancers_serve_the_site_share_one_limit_and_show_one_fleet() {
    // The limit is what is tested, not the fallback (foobar-guard's tests
    // cover that): a Redis answer slowed past the lb's 50 ms by a loaded
    // machine must not hand the decisions to the local limits.
    let stack = Stack::start_with("scale", 2, RATE, &["--redis-timeout=1s"]).await;
    assert_eq!(
        stack.info.lbs.len(),
        2,
        "stack.json lists both: {:?}",
        stack.info.lbs
    );
    assert_eq!(stack.info.lbs[0].listen, stack.info.lb);
    assert_eq!(stack.info.lbs[0].admin, stack.info.lb_admin);
    assert!(
        stack.info.redis.is_some(),
        "a private Redis is in stack.json"
    );

    // Both load balancers serve the site.
    let client = stack.client();
    for lb in &stack.info.lbs {
        let ready = wait_until(Duration::from_secs(30), || async {
            admin_get(lb.admin, "/readyz").await.map(|(s, _)| s) == Some(StatusCode::OK)
        })
        .await;
        assert!(ready, "{} not ready: {}", lb.name, stack.log());
        let (status, _, body) = client
            .get(&format!("https://{}/", lb.listen))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK, "{}: {body}", lb.name);
    }

    // Each admin listener shows every other role on /fleet.json: the load
    // balancers, and the web servers with their database topology.
    let others = |own: &str| -> Vec<String> {
        let mut names: Vec<String> = stack
            .info
            .lbs
            .iter()
            .map(|lb| lb.name.clone())
            .chain(stack.info.webs.iter().map(|w| w.name.clone()))
            .filter(|name| name != own)
            .collect();
        names.sort();
        names
    };
    let pages: Vec<(String, SocketAddr)> = stack
        .info
        .lbs
        .iter()
        .map(|lb| (lb.name.clone(), lb.admin))
        .chain(stack.info.webs.iter().map(|w| (w.name.clone(), w.admin)))
        .collect();
    for (name, admin) in &pages {
        let last = std::sync::Mutex::new(String::new());
        let complete = wait_until(Duration::from_secs(20), || async {
            let Some((StatusCode::OK, body)) = admin_get(*admin, "/fleet.json").await else {
                return false;
            };
            let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            *last.lock().unwrap() = body;
            let mut reachable: Vec<String> = json["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["reachable"] == true)
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            reachable.sort();
            let writers = json["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["name"].as_str().is_some_and(|n| n.starts_with("web")))
                .filter(|p| {
                    p["status"]["sources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|s| s["snapshot"]["data"]["writer"].is_string())
                })
                .count();
            let own_writer = usize::from(name.starts_with("web"));
            reachable == others(name) && writers + own_writer == stack.info.webs.len()
        })
        .await;
        assert!(
            complete,
            "{name}'s fleet view lacks a role or a database topology: {}",
            last.lock().unwrap()
        );
    }
    let (status, page) = admin_get(stack.info.lb_admin, "/fleet").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");
    fleet_page_renders(stack.info.lb_admin, &others("lb1")).await;

    // One client spread over both load balancers gets the limit once.
    let source = "127.0.0.21".parse().unwrap();
    let spread = HttpsClient::new(&[stack.info.ca.as_path()], Some(source), None);
    let urls: Vec<String> = stack
        .info
        .lbs
        .iter()
        .map(|lb| format!("https://{}/", lb.listen))
        .collect();
    let (accepted, limited) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let window = Duration::from_secs(4);
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for task in 0..4usize {
        let (spread, urls) = (spread.clone(), urls.clone());
        let (accepted, limited) = (accepted.clone(), limited.clone());
        senders.spawn(async move {
            let mut other = Vec::new();
            let mut n = task;
            while started.elapsed() < window && n < 200_000 {
                match spread.get(&urls[n % urls.len()]).await {
                    Ok((StatusCode::OK, _, _)) => accepted.fetch_add(1, Ordering::Relaxed),
                    Ok((StatusCode::TOO_MANY_REQUESTS, _, _)) => {
                        limited.fetch_add(1, Ordering::Relaxed)
                    }
                    unexpected => {
                        other.push(format!("{unexpected:?}"));
                        0
                    }
                };
                n += 1;
            }
            other
        });
    }
    let mut unexpected = Vec::new();
    while let Some(outcome) = senders.join_next().await {
        unexpected.extend(outcome.unwrap());
    }
    let elapsed = started.elapsed();
    let (accepted, limited) = (
        accepted.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
    );
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");

    // The documented bound (foobar-guard's `redis` module): burst + rate × W
    // + N × ⌊1.5 × lease⌋, with the lease 10% of the rate.
    let burst = 2.0 * f64::from(RATE);
    let lease = (f64::from(RATE) / 10.0).round().max(1.0);
    let bound =
        (burst + f64::from(RATE) * elapsed.as_secs_f64()).floor() + 2.0 * (1.5 * lease).floor();
    let each_alone = 2.0 * (burst + f64::from(RATE) * elapsed.as_secs_f64());
    eprintln!(
        "one client over two load balancers for {elapsed:.2?}: {accepted} accepted, {limited} limited; \
         shared bound {bound}, two separate limits would allow {each_alone:.0}"
    );
    assert!(limited > 0, "the client was never limited");
    assert!(
        accepted as f64 <= bound,
        "{accepted} accepted, over the shared bound {bound}: {}",
        stack.log()
    );
    assert!(
        accepted as f64 >= f64::from(RATE) * window.as_secs_f64(),
        "{accepted} accepted: fewer than the rate allows"
    );

    // Both load balancers decided from leases taken from Redis.
    for lb in &stack.info.lbs {
        let (_, metrics) = admin_get(lb.admin, "/metrics").await.unwrap();
        let leased: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("foobar_rate_limit_decisions_total{")
                    && l.contains("source=\"lease\"")
                    && l.contains("result=\"allowed\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            leased > 0.0,
            "{} made no decision from a lease:\n{metrics}",
            lb.name
        );
    }
}

/// The fleet page of `admin` in Chromium: every other role shown as
/// reachable; a screenshot is left in `target/test-output/`.
async fn fleet_page_renders(admin: SocketAddr, others: &[String]) {
    let url = format!("http://{admin}/fleet");
    let (dom, stderr) = chromium(&[
        "--dump-dom".into(),
        "--virtual-time-budget=3000".into(),
        url.clone(),
    ])
    .await;
    assert!(
        dom.contains(r#"data-rendered="true""#),
        "{url} never rendered:\n{dom}\n{stderr}"
    );
    for name in others {
        let shown = format!(r#"data-instance="{name}" data-reachable="true""#);
        assert!(dom.contains(&shown), "no {shown} in:\n{dom}");
    }
    let shot = test_output_dir().join("stack_fleet.png");
    let _ = std::fs::remove_file(&shot);
    let (_, stderr) = chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,1000".into(),
        "--virtual-time-budget=3000".into(),
        url,
    ])
    .await;
    let bytes = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stderr}", shot.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
}
