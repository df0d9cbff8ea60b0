//! The fleet view: an admin listener shows its peers' status beside its own
//! (two load balancers, two web servers with their database pools, one
//! peer that does not answer), flags the web servers that see different
//! database writers, and renders it all in a real headless Chromium; a
//! screenshot is saved under `target/test-output/`.

#[path = "monitor_support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use foobar_core::admin::{Admin, Fleet};
use foobar_core::metrics::PrometheusExporter;
use foobar_core::status::{Format, Health, Snapshot, StatusSource, Table, View};
use foobar_core::Shutdown;
use serde_json::{json, Value};
use support::{chromium, free_port, get, serve_admin, temp_dir, test_output_dir, wait_for};

/// A load balancer with two backends.
struct Lb;

impl StatusSource for Lb {
    fn name(&self) -> &str {
        "lb"
    }
    fn snapshot(&self) -> Snapshot {
        let data = json!({
            "policy": "consistent_hash",
            "backends": [
                {"id": "https://127.0.0.1:8001", "health": "up"},
                {"id": "https://127.0.0.1:8002", "health": "up"},
            ],
        });
        let view = View::new().fact("policy", "/policy", Format::Text).table(
            Table::new("backends", "/backends")
                .key("/id")
                .health("/health")
                .column("backend", "/id", Format::Text),
        );
        Snapshot::new("load balancer", &data)
            .health(Health::Up)
            .view(view)
    }
}

/// A web server's database pool, seeing `writer`.
struct Db {
    writer: &'static str,
}

impl StatusSource for Db {
    fn name(&self) -> &str {
        "db"
    }
    fn snapshot(&self) -> Snapshot {
        let data = json!({
            "writer": self.writer,
            "hosts": [
                {"id": "127.0.0.1:3306", "health": "up"},
                {"id": "127.0.0.1:3307", "health": "up"},
            ],
        });
        let view = View::new().fact("writer", "/writer", Format::Text).table(
            Table::new("hosts", "/hosts")
                .key("/id")
                .health("/health")
                .column("host", "/id", Format::Text),
        );
        Snapshot::new("database", &data)
            .health(Health::Up)
            .view(view)
            .agreed("writer", self.writer)
    }
}

async fn fleet_json(addr: SocketAddr) -> Value {
    let (status, _, body) = get(addr, "/fleet.json", &[]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("fleet.json is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_page_shows_every_peer_flags_disagreements_and_dead_peers() {
    let exporter = PrometheusExporter::install().expect("recorder");
    let shutdown = Shutdown::new();
    let lb2 = serve_admin(Admin::new(exporter.clone()).with_source(Lb), &shutdown);
    let web1 = serve_admin(
        Admin::new(exporter.clone()).with_source(Db {
            writer: "127.0.0.1:3306",
        }),
        &shutdown,
    );
    let web2 = serve_admin(
        Admin::new(exporter.clone()).with_source(Db {
            writer: "127.0.0.1:3307",
        }),
        &shutdown,
    );
    // A peer that does not answer: nothing listens on its port.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));

    // The peers come from a stack file, as `scripts/stack` writes it.
    let dir = temp_dir("fleet");
    let stack = dir.join("stack.json");
    let lb1_admin = SocketAddr::from(([127, 0, 0, 1], 1));
    std::fs::write(
        &stack,
        json!({
            "lb_admin": lb1_admin.to_string(),
            "lbs": [{"name": "lb2", "admin": lb2.to_string()}],
            "web": [
                {"name": "web1", "admin": web1.to_string()},
                {"name": "web2", "admin": web2.to_string()},
                {"name": "web3", "admin": dead.to_string()},
            ],
        })
        .to_string(),
    )
    .unwrap();
    let fleet = Fleet::new()
        .peers_from_stack_file(&stack, &[lb1_admin])
        .expect("a valid stack file")
        .interval(Duration::from_millis(100), Duration::from_millis(500))
        .start(&shutdown);
    assert_eq!(fleet.peer_names(), ["lb2", "web1", "web2", "web3"]);
    let lb1 = serve_admin(
        Admin::new(exporter).with_source(Lb).with_fleet(fleet),
        &shutdown,
    );

    let doc = wait_for("every peer asked", Duration::from_secs(10), || async {
        let doc = fleet_json(lb1).await;
        let asked = doc["peers"]
            .as_array()
            .is_some_and(|peers| peers.iter().all(|p| p["checked_at_unix_ms"] != 0));
        asked.then_some(doc)
    })
    .await;
    let peer = |name: &str| {
        doc["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no peer {name}: {doc}"))
            .clone()
    };
    assert_eq!(doc["this"]["sources"][0]["name"], "lb");
    assert_eq!(peer("lb2")["reachable"], true);
    assert_eq!(
        peer("web1")["status"]["sources"][0]["snapshot"]["data"]["writer"],
        "127.0.0.1:3306"
    );
    assert_eq!(peer("web3")["reachable"], false);
    assert!(peer("web3")["error"].as_str().is_some(), "{doc}");
    let disagreements = doc["disagreements"].as_array().unwrap();
    assert_eq!(disagreements.len(), 1, "{doc}");
    assert_eq!(disagreements[0]["source"], "db");
    assert_eq!(disagreements[0]["values"]["127.0.0.1:3307"][0], "web2");

    // Without a fleet there is no fleet page.
    let (status, _, _) = get(lb2, "/fleet.json", &[]).await;
    assert_eq!(status, 404);

    // The page, in Chromium.
    let url = format!("http://{lb1}/fleet");
    let (dom, stderr) = chromium(&[
        "--dump-dom".into(),
        "--virtual-time-budget=3000".into(),
        url.clone(),
    ])
    .await;
    assert!(
        dom.contains("data-rendered=\"true\""),
        "page never rendered:\n{dom}\n{stderr}"
    );
    for expected in [
        r#"data-instance="this" data-reachable="true""#,
        r#"data-instance="lb2" data-reachable="true""#,
        r#"data-instance="web1" data-reachable="true""#,
        r#"data-instance="web2" data-reachable="true""#,
        r#"data-instance="web3" data-reachable="false""#,
        "https://127.0.0.1:8002",
        "class=\"disagreement\"",
    ] {
        assert!(dom.contains(expected), "no {expected} in:\n{dom}");
    }
    let shot = test_output_dir().join("fleet_page.png");
    let _ = std::fs::remove_file(&shot);
    let (_, stderr) = chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,800".into(),
        "--virtual-time-budget=3000".into(),
        url,
    ])
    .await;
    let bytes = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stderr}", shot.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    shutdown.trigger();
    let _ = std::fs::remove_dir_all(&dir);
}
