//! End-to-end: the whole stack (`stack` binary: private MariaDB primary and
//! replicas, two web servers and the load balancer, each its own process),
//! used over HTTPS as a client would.

mod support;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foobar_examples::web::{Entry, GTID_HEADER, SERVED_BY_HEADER};
use http::{Method, StatusCode};
use support::*;

fn entry_json(author: &str, message: &str) -> String {
    serde_json::json!({ "author": author, "message": message }).to_string()
}

#[tokio::test]
async fn records_are_read_back_at_once_across_both_web_servers() {
    let stack = Stack::start("ryw").await;
    let client = stack.client();
    let mut writers = HashSet::new();
    let mut cross_server_reads = 0;
    for i in 0..40 {
        let (status, headers, body) = client
            .send(
                Method::POST,
                &stack.url("/entries"),
                &[],
                &entry_json("e2e", &format!("note {i}")),
            )
            .await
            .unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let created: Entry = serde_json::from_str(&body).unwrap();
        writers.insert(created.served_by.clone());
        let gtid = headers[GTID_HEADER].to_str().unwrap().to_owned();

        // Read it back at once, through the load balancer (so often on the
        // other web server), bringing the write's GTID along.
        let (status, headers, body) = client
            .send(
                Method::GET,
                &stack.url(&format!("/entries/{}", created.id)),
                &[(GTID_HEADER, &gtid)],
                "",
            )
            .await
            .unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "entry {} not readable at once: {body}",
            created.id
        );
        let read: Entry = serde_json::from_str(&body).unwrap();
        assert_eq!(read, created);
        if headers[SERVED_BY_HEADER] != created.served_by.as_str() {
            cross_server_reads += 1;
        }
    }
    assert!(!writers.is_empty());
    assert!(
        cross_server_reads >= 10,
        "reads on the other web server than the write: {cross_server_reads} of 40"
    );
    let (status, _, body) = client.get(&stack.url("/entries")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<Entry> = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.len(), 40);

    // Every write is in the load balancer's access log, naming the web
    // server that took it.
    let web_addrs: Vec<String> = stack
        .info
        .webs
        .iter()
        .map(|w| format!("https://{}", w.listen))
        .collect();
    let logged = support::wait_until(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(stack.dir().join("lb-access.log")).unwrap_or_default();
        let writes = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|v| v["method"] == "POST" && v["status"] == 201)
            .filter(|v| web_addrs.iter().any(|w| v["upstream"] == w.as_str()))
            .count();
        async move { writes == 40 }
    })
    .await;
    assert!(logged, "the access log lacks the writes: {}", stack.log());
}

#[tokio::test]
async fn firewalls_refuse_denied_clients_and_direct_access_to_web_servers() {
    let stack = Stack::start("firewall").await;
    let ca = stack.info.ca.clone();

    // Firewall 1: 127.0.0.13 is denied at the load balancer, 127.0.0.12 is not.
    let denied = HttpsClient::new(&[&ca], Some("127.0.0.13".parse().unwrap()), None);
    assert!(
        denied.get(&stack.url("/")).await.is_err(),
        "denied address served"
    );
    let allowed = HttpsClient::new(&[&ca], Some("127.0.0.12".parse().unwrap()), None);
    assert_eq!(
        allowed.get(&stack.url("/")).await.unwrap().0,
        StatusCode::OK
    );

    let web = stack.info.webs[0].listen;
    let direct = format!("https://{web}/");
    let lb_identity = (
        stack.info.lb_client_cert.0.as_path(),
        stack.info.lb_client_cert.1.as_path(),
    );
    // Firewall 2, addresses: even with the load balancer's certificate, only
    // the load balancer's address may connect.
    let elsewhere: IpAddr = "127.0.0.9".parse().unwrap();
    let from_elsewhere = HttpsClient::new(&[&ca], Some(elsewhere), Some(lb_identity));
    assert!(
        from_elsewhere.get(&direct).await.is_err(),
        "a web server accepted another address"
    );
    // Firewall 2, mTLS: from the right address but without the certificate.
    let without_cert = HttpsClient::new(&[&ca], None, None);
    assert!(
        without_cert.get(&direct).await.is_err(),
        "a web server accepted a client without certificate"
    );
    // The load balancer's own credentials do get through: the refusals above
    // were the firewall's.
    let as_lb = HttpsClient::new(&[&ca], None, Some(lb_identity));
    assert_eq!(as_lb.get(&direct).await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_killed_web_server_is_routed_around_shown_down_and_rejoins() {
    let stack = Stack::start("webkill").await;
    let client = stack.client();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (client, url) = (client.clone(), stack.url("/entries"));
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed)
                && Instant::now() < deadline
                && ok.load(Ordering::Relaxed) < 20_000
            {
                match client.get(&url).await {
                    Ok((StatusCode::OK, _, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || async {
            ok.load(Ordering::Relaxed) > 50
        })
        .await
    );

    let web1 = stack.info.webs[0].clone();
    let pids = pids_with_arg(&format!("--listen={}", web1.listen));
    assert_eq!(pids.len(), 1, "one web1 process: {pids:?}");
    signal(pids[0], "-KILL");
    let backend = format!("https://{}", web1.listen);
    let shown_down = wait_until(Duration::from_secs(10), || async {
        stack
            .backend_health()
            .await
            .iter()
            .any(|(id, health)| *id == backend && health == "down")
    })
    .await;
    assert!(
        shown_down,
        "status never showed {backend} down: {:?}",
        stack.backend_health().await
    );
    let (_, metrics) = admin_get(stack.info.lb_admin, "/metrics").await.unwrap();
    let healthy_gauge = metrics
        .lines()
        .find(|l| l.starts_with("foobar_lb_backend_healthy{") && l.contains(&backend))
        .unwrap_or_default()
        .to_owned();
    assert!(
        healthy_gauge.ends_with(" 0"),
        "metrics show it down: {healthy_gauge:?}"
    );
    let served_while_down = ok.load(Ordering::Relaxed);

    // The stack restarts it; health checks bring it back.
    let rejoined = wait_until(Duration::from_secs(30), || async {
        stack
            .backend_health()
            .await
            .iter()
            .any(|(id, health)| *id == backend && health == "up")
    })
    .await;
    assert!(rejoined, "{backend} did not rejoin: {}", stack.log());
    stop.store(true, Ordering::Relaxed);
    let errors = load.await.unwrap();
    assert!(
        ok.load(Ordering::Relaxed) > served_while_down,
        "requests kept being served"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests: {errors:?}"
    );
}

#[tokio::test]
async fn database_primary_failover_with_a_web_server_down_loses_no_acknowledged_record() {
    let stack = Stack::start("dbkill").await;
    let client = stack.client();
    let primary = stack
        .info
        .db
        .iter()
        .find(|n| n.name == "primary")
        .unwrap()
        .clone();
    let replicas: Vec<String> = stack
        .info
        .db
        .iter()
        .filter(|n| n.name != "primary")
        .map(|n| n.address.clone())
        .collect();
    assert_eq!(replicas.len(), 2);
    assert_eq!(
        stack.db_writer(0).await.as_deref(),
        Some(primary.address.as_str())
    );

    // (id, when acknowledged, how long the write took)
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(u64, Instant, Duration)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, url, acked, stop) = (
            client.clone(),
            stack.url("/entries"),
            acked.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut failures = Vec::new();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < 50_000 {
                n += 1;
                let sent = Instant::now();
                match client
                    .send(
                        Method::POST,
                        &url,
                        &[],
                        &entry_json("load", &format!("w{n}")),
                    )
                    .await
                {
                    Ok((StatusCode::CREATED, _, body)) => {
                        let entry: Entry = serde_json::from_str(&body).unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .push((entry.id, Instant::now(), sent.elapsed()));
                    }
                    _ => failures.push(Instant::now()),
                }
            }
            failures
        })
    };
    let acked_count = || acked.lock().unwrap().len();
    assert!(
        wait_until(Duration::from_secs(20), || async { acked_count() >= 100 }).await,
        "write load never ran"
    );

    let pid: u32 = std::fs::read_to_string(&primary.pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Every web server runs auto failover: with web1 down (it may hold the
    // failover lease), web2 alone must promote.
    let web1 = pids_with_arg(&format!("--listen={}", stack.info.webs[0].listen));
    assert_eq!(web1.len(), 1, "one web1 process: {web1:?}");
    signal(web1[0], "-KILL");
    let before_kill = acked_count();
    let killed_at = Instant::now();
    signal(pid, "-KILL");

    // Writes come back on the promoted replica.
    let resumed = wait_until(Duration::from_secs(30), || async {
        acked_count() >= before_kill + 50
    })
    .await;
    assert!(
        resumed,
        "writes never resumed after the kill: {}",
        stack.log()
    );
    stop.store(true, Ordering::Relaxed);
    let failures = load.await.unwrap();
    // The outage: from the first failed write after the kill to the next
    // acknowledged one.
    let outage_start = failures.iter().copied().find(|at| *at > killed_at);
    let recovered_at = outage_start.and_then(|start| {
        acked
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at, _)| *at)
            .find(|at| *at > start)
    });
    let slowest = acked.lock().unwrap().iter().map(|(_, _, took)| *took).max();
    match (outage_start, recovered_at) {
        (Some(start), Some(end)) => eprintln!(
            "primary killed: writes failed from {:?} to {:?} after the kill ({} failed writes)",
            start - killed_at,
            end - killed_at,
            failures.len()
        ),
        _ => eprintln!("primary killed: no write failed; the slowest write took {slowest:?}"),
    }

    // The status pages show the new primary, web1's too once the stack
    // restarted it: a fresh pool learns the writer from the servers.
    let writer = stack.db_writer(1).await.expect("web2 shows a writer");
    assert!(replicas.contains(&writer), "{writer} is not a replica");
    let (_, web2_status) = admin_get(stack.info.webs[1].admin, "/status.json")
        .await
        .unwrap();
    assert!(
        web2_status.contains("\"promoted\""),
        "web2 made the promotion: {web2_status}"
    );
    for index in 0..2 {
        let follows = wait_until(Duration::from_secs(30), || async {
            stack.db_writer(index).await.as_deref() == Some(writer.as_str())
        })
        .await;
        assert!(follows, "web{} does not show {writer} as writer", index + 1);
    }

    // Every acknowledged record is there (semi-synchronous replication).
    let (status, _, body) = client.get(&stack.url("/entries")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let _ = body;
    let ids: Vec<u64> = acked.lock().unwrap().iter().map(|(id, _, _)| *id).collect();
    let mut missing = Vec::new();
    for id in &ids {
        let (status, _, _) = client
            .get(&stack.url(&format!("/entries/{id}")))
            .await
            .unwrap();
        if status != StatusCode::OK {
            missing.push(*id);
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged records lost: {missing:?}",
        missing.len(),
        ids.len()
    );
}

#[tokio::test]
async fn rotated_certificates_are_served_after_reload_without_failed_requests() {
    let stack = Stack::start("rotate").await;
    let dir = stack.dir().to_path_buf();
    let new_ca = foobar_core::tls::DevCa::with_name("rotated CA").unwrap();
    let new_ca_file = new_ca.write_pem(dir.join("rotated")).unwrap();
    let client = HttpsClient::new(&[&stack.info.ca, &new_ca_file], None, None);

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, url, stop) = (client.clone(), stack.url("/"), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut errors) = (0usize, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && ok < 20_000 {
                match client.get(&url).await {
                    Ok((StatusCode::OK, _, _)) => ok += 1,
                    other => errors.push(format!("{other:?}")),
                }
            }
            (ok, errors)
        })
    };

    let old = served_certificate(&stack, &[&stack.info.ca, &new_ca_file]).await;
    let rotated = new_ca.server_cert(["localhost", "127.0.0.1"]).unwrap();
    let (cert, key) = &stack.info.lb_cert;
    std::fs::write(cert, rotated.cert_pem()).unwrap();
    std::fs::write(key, rotated.key_pem()).unwrap();
    let lb = pids_with_arg(&format!("--rules={}", dir.join("lb.rules").display()));
    assert_eq!(lb.len(), 1, "one load balancer process: {lb:?}");
    // logrotate's way: rename the access log, then signal.
    let access_log = dir.join("lb-access.log");
    std::fs::rename(&access_log, dir.join("lb-access.log.1")).unwrap();
    signal(lb[0], "-HUP");

    let new_served = wait_until(Duration::from_secs(10), || async {
        served_certificate(&stack, &[&stack.info.ca, &new_ca_file]).await
            == rotated.cert_der().as_ref()
    })
    .await;
    assert!(new_served, "new connections never saw the new certificate");
    assert_ne!(old, rotated.cert_der().as_ref());
    let reopened = wait_until(Duration::from_secs(10), || async {
        std::fs::read_to_string(&access_log).is_ok_and(|text| text.lines().count() > 0)
    })
    .await;
    assert!(reopened, "the access log was not reopened after SIGHUP");
    stop.store(true, Ordering::Relaxed);
    let (ok, errors) = load.await.unwrap();
    assert!(ok > 0);
    assert!(
        errors.is_empty(),
        "requests failed during the rotation: {errors:?}"
    );
}

/// The end-entity certificate the load balancer presents to a new connection.
async fn served_certificate(stack: &Stack, cas: &[&std::path::Path]) -> Vec<u8> {
    let config = tls_config(cas, None);
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(stack.info.lb).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(tls) = connector.connect(name, tcp).await else {
        return Vec::new();
    };
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.as_ref().to_vec())
        .unwrap_or_default()
}
