//! Backends discovered from a watched file: reloads on change and on
//! SIGHUP, broken files keep the old set, removed backends drain under
//! load, and two balancers following the same list place keys alike.

#![allow(clippy::print_stderr)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use foobar_lb::discovery::{DiscoveryError, FileSource};
use foobar_lb::policy::{ConsistentHash, RoundRobin};
use foobar_lb::{hash_bytes, Proxy};
use http::StatusCode;
use support::*;

const LIMIT: Duration = Duration::from_secs(10);

/// Writes `text` to `path` through a rename, as deployment tools do.
fn write(path: &Path, text: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).expect("writes the list");
    std::fs::rename(&temp, path).expect("replaces the list");
}

fn toml_list(urls: &[(String, u32)]) -> String {
    urls.iter()
        .map(|(url, weight)| format!("[[backend]]\nurl = \"{url}\"\nweight = {weight}\n\n"))
        .collect()
}

fn ids(proxy: &Proxy<impl foobar_lb::Policy>) -> Vec<String> {
    let mut ids: Vec<String> = proxy
        .backends()
        .list()
        .iter()
        .filter(|b| !b.is_draining())
        .map(|b| b.id().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_set_follows_the_file_under_load_and_a_broken_file_changes_nothing() {
    let (a, b, c) = (named("a").await, named("b").await, named("c").await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backends.toml");
    write(&path, &toml_list(&[(a.url(), 1), (b.url(), 1)]));

    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    let source = FileSource::new(&path)
        .poll_interval(Duration::from_millis(20))
        .reload_on_sighup()
        .unwrap();
    let discovery = proxy.discover(source);
    wait_until(LIMIT, "the first list is applied", || {
        discovery.applied() >= 1
    })
    .await;
    let mut expected = vec![a.url(), b.url()];
    expected.sort();
    assert_eq!(ids(&proxy), expected);

    // Load through the whole test: every request must succeed.
    let front = serve_proxy(proxy.clone()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..2 {
        let (url, stop, ok, failed) = (front.url(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let client = client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                match get(&client, &url).await.0 {
                    StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                n += 1;
            }
        }));
    }
    wait_until(LIMIT, "traffic flows", || ok.load(Ordering::Relaxed) > 50).await;

    // Edited: c comes, a goes (drained, then removed), b's weight changes.
    write(&path, &toml_list(&[(b.url(), 3), (c.url(), 1)]));
    wait_until(LIMIT, "the edit is applied", || {
        proxy.backends().get(&a.url()).is_none() && proxy.backends().get(&c.url()).is_some()
    })
    .await;
    let report = discovery.last_report().expect("a report");
    assert_eq!(report.added, vec![c.url()]);
    assert_eq!(report.drained, vec![a.url()]);
    assert_eq!(report.reweighted, vec![b.url()]);
    assert_eq!(proxy.backends().get(&b.url()).unwrap().weight(), 3);
    let backend_c = proxy.backends().get(&c.url()).unwrap();
    wait_until(LIMIT, "c takes traffic", || backend_c.requests_total() > 20).await;

    // Broken: the old set stays and the error names the line.
    let applied = discovery.applied();
    write(
        &path,
        &format!(
            "{}[[backend]]\nurl = \"gopher://d:70\"\n",
            toml_list(&[(b.url(), 1)])
        ),
    );
    wait_until(LIMIT, "the broken list is rejected", || {
        discovery.rejected() >= 1
    })
    .await;
    let error = discovery.last_error().expect("an error");
    assert!(error.contains("backends.toml:6: "), "{error}");
    assert!(error.contains("gopher://d:70"), "{error}");
    assert_eq!(discovery.applied(), applied);
    let mut expected = vec![b.url(), c.url()];
    expected.sort();
    assert_eq!(ids(&proxy), expected);

    // SIGHUP re-reads the file even when nothing shows it changed.
    write(&path, &toml_list(&[(a.url(), 1), (c.url(), 1)]));
    wait_until(LIMIT, "the fixed list is applied", || {
        discovery.applied() > applied && discovery.last_error().is_none()
    })
    .await;
    let applied = discovery.applied();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until(LIMIT, "SIGHUP reloads", || discovery.applied() > applied).await;
    assert!(discovery.last_report().unwrap().is_empty());

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "a request failed");
    assert!(ok.load(Ordering::Relaxed) > 100);
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let error = FileSource::new("/nonexistent/backends.json")
        .load()
        .unwrap_err();
    assert!(matches!(error, DiscoveryError::Read { .. }), "{error}");
    assert!(error.to_string().contains("/nonexistent/backends.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_balancers_with_the_same_list_agree_on_every_key() {
    const KEYS: u64 = 10_000;
    const N: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<(String, u32)> = (0..N)
        .map(|i| (format!("http://127.0.0.1:{}", 9100 + i), 1 + (i % 2) as u32))
        .collect();
    // The same backends, listed in opposite orders, in TOML and in JSON.
    let toml_path = dir.path().join("one.toml");
    let json_path = dir.path().join("two.json");
    let json = |urls: &[(String, u32)]| {
        let entries: Vec<String> = urls
            .iter()
            .rev()
            .map(|(url, weight)| format!("{{\"url\": \"{url}\", \"weight\": {weight}}}"))
            .collect();
        format!("[\n{}\n]\n", entries.join(",\n"))
    };
    write(&toml_path, &toml_list(&urls));
    write(&json_path, &json(&urls));
    let proxies = [
        Proxy::builder(ConsistentHash::new()).build().unwrap(),
        Proxy::builder(ConsistentHash::new()).build().unwrap(),
    ];
    let handles = [
        proxies[0].discover(FileSource::new(&toml_path).poll_interval(Duration::from_millis(20))),
        proxies[1].discover(FileSource::new(&json_path).poll_interval(Duration::from_millis(20))),
    ];
    wait_until(LIMIT, "both lists are applied", || {
        handles.iter().all(|h| h.applied() >= 1)
    })
    .await;

    let placements = |proxy: &Proxy<ConsistentHash>| -> Vec<String> {
        (0..KEYS)
            .map(|k| {
                let key = hash_bytes(format!("client-{k}").as_bytes());
                proxy.backends().pick_for_key(key).unwrap().id().to_owned()
            })
            .collect()
    };
    let before = placements(&proxies[0]);
    assert_eq!(before, placements(&proxies[1]), "the balancers disagree");

    // Remove one backend from both lists.
    let removed = urls[2].0.clone();
    let rest: Vec<(String, u32)> = urls
        .iter()
        .filter(|(u, _)| *u != removed)
        .cloned()
        .collect();
    write(&toml_path, &toml_list(&rest));
    write(&json_path, &json(&rest));
    wait_until(LIMIT, "both balancers dropped the backend", || {
        proxies.iter().all(|p| p.backends().get(&removed).is_none())
    })
    .await;
    let after = placements(&proxies[0]);
    assert_eq!(after, placements(&proxies[1]), "the balancers disagree");

    // Only the removed backend's keys moved: its share of the weights
    // (1 of 7 here), about 1/N.
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let on_removed = before.iter().filter(|b| **b == removed).count();
    assert_eq!(moved, on_removed, "keys of other backends moved");
    let share = moved as f64 / KEYS as f64;
    eprintln!("removing 1 of {N} backends (weight 1 of 7) moved {moved} of {KEYS} keys");
    let weight_share = 1.0 / 7.0;
    assert!(
        (share - weight_share).abs() < weight_share * 0.35,
        "{moved} of {KEYS} keys moved"
    );
}
