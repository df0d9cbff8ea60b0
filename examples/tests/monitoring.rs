//! The stack's monitoring as an operator meets it: every series on each
//! admin listener's `/metrics` has its help text and the process's CPU time
//! keeps its fractions; the status pages, in headless Chromium, show the
//! backends and database hosts with rates and sparklines from the first
//! poll, and events written for people; finding the first database writer
//! is logged at INFO, not as a warning. Screenshots are saved under
//! `target/test-output/`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use support::*;

#[tokio::test]
async fn metrics_status_pages_and_logs_of_the_stack() {
    let stack = Stack::start("monitoring").await;
    let client = stack.client();
    for i in 0..20 {
        let body = serde_json::json!({ "author": "ops", "message": format!("note {i}") });
        let (status, _, text) = client
            .send(Method::POST, &stack.url("/entries"), &[], &body.to_string())
            .await
            .unwrap();
        assert_eq!(status, StatusCode::CREATED, "{text}");
        let (status, _, _) = client.get(&stack.url("/entries")).await.unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    let web_admin = stack.info.webs[0].admin;
    let admins: Vec<SocketAddr> = std::iter::once(stack.info.lb_admin)
        .chain(stack.info.webs.iter().map(|w| w.admin))
        .collect();

    // Every series has a `# HELP`; the CPU time is in seconds with fractions.
    for admin in &admins {
        let (_, text) = admin_get(*admin, "/metrics").await.unwrap();
        assert_eq!(
            families_without_help(&text),
            Vec::<String>::new(),
            "{admin}/metrics:\n{text}"
        );
        let fractional = wait_until(Duration::from_secs(15), || async {
            let Some((_, text)) = admin_get(*admin, "/metrics").await else {
                return false;
            };
            text.lines()
                .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
                .is_some_and(|value| value.contains('.') && value.parse::<f64>().is_ok())
        })
        .await;
        assert!(
            fractional,
            "{admin}: process_cpu_seconds_total in whole seconds"
        );
    }

    // The monitor's samples give rates and their history in /status.json
    // (a few ticks after start); events read as sentences, not debug output.
    let sampled = |json: &serde_json::Value| {
        let pool = &json["sources"][0];
        let writer = pool["snapshot"]["data"]["writer"]
            .as_str()
            .unwrap_or_default();
        pool["rates"]["hosts"][writer]["/queries_total"]["history"]
            .as_array()
            .is_some_and(|h| h.len() >= 3)
    };
    let latest = std::sync::Mutex::new(serde_json::Value::Null);
    let has_history = wait_until(Duration::from_secs(15), || async {
        let Some((_, body)) = admin_get(web_admin, "/status.json").await else {
            return false;
        };
        let json = serde_json::from_str(&body).unwrap_or_default();
        let done = sampled(&json);
        *latest.lock().unwrap() = json;
        done
    })
    .await;
    let json = latest.into_inner().unwrap();
    assert!(has_history, "no query rate history: {json}");
    let pool = &json["sources"][0];
    let events: Vec<&str> = pool["snapshot"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    let writer = pool["snapshot"]["data"]["writer"].as_str().unwrap();
    assert!(
        events
            .iter()
            .any(|m| *m == format!("{writer} is the writer (initial)")),
        "{events:?}"
    );
    for message in &events {
        for debug in ["Some(", "None", "Up ", "Shunned", "ns)"] {
            assert!(!message.contains(debug), "debug text in {message:?}");
        }
    }

    // The pages, on their first poll (the page polls every 1.5 s).
    let lb_page = first_poll(stack.info.lb_admin).await;
    for web in &stack.info.webs {
        let row = row(&lb_page, &format!("https://{}", web.listen));
        assert!(row.contains(r#"data-health="up""#), "{row}");
        assert!(
            cell(row, "req/s").parse::<f64>().is_ok(),
            "no request rate: {row}"
        );
        assert!(spark_points(cell(row, "recent req/s")) >= 2, "{row}");
    }
    assert!(lb_page.contains(r#"id="host-cpu""#), "{lb_page}");
    let web_page = first_poll(web_admin).await;
    for node in &stack.info.db {
        let row = row(&web_page, &node.address);
        assert!(row.contains(r#"data-health="up""#), "{row}");
        assert!(spark_points(cell(row, "recent queries/s")) >= 2, "{row}");
    }
    let primary = row(&web_page, writer);
    assert!(
        primary.contains(r#"<span class="tag">primary</span>"#),
        "{primary}"
    );
    assert!(web_page.contains("is the writer (initial)"), "{web_page}");
    screenshot(stack.info.lb_admin, "stack_lb_status.png").await;
    screenshot(web_admin, "stack_web_status.png").await;

    // The first writer is news, not a warning.
    let log = stack.full_log();
    assert!(log.contains("database writer found"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains("database writer")),
        "{log}"
    );
}

/// The status page of `admin` after its first poll.
async fn first_poll(admin: SocketAddr) -> String {
    let (dom, stderr) = chromium(&[
        "--dump-dom".into(),
        "--virtual-time-budget=1000".into(),
        format!("http://{admin}/status"),
    ])
    .await;
    assert!(
        dom.contains(r#"data-rendered="true""#),
        "{admin}/status never rendered:\n{dom}\n{stderr}"
    );
    dom
}

async fn screenshot(admin: SocketAddr, name: &str) {
    let shot = test_output_dir().join(name);
    let _ = std::fs::remove_file(&shot);
    let (_, stderr) = chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,1000".into(),
        "--virtual-time-budget=4000".into(),
        format!("http://{admin}/status"),
    ])
    .await;
    let bytes = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stderr}", shot.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
}

/// The `<tr>` of the table row named `key`.
fn row<'a>(dom: &'a str, key: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"data-row="{key}""#))
        .unwrap_or_else(|| panic!("no row {key}:\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

/// The inner HTML of the cell labelled `label` in `row`.
fn cell<'a>(row: &'a str, label: &str) -> &'a str {
    let marker = format!(r#"data-label="{label}">"#);
    let start = row
        .find(&marker)
        .unwrap_or_else(|| panic!("no {label} cell in {row}"))
        + marker.len();
    let end = row[start..].find("</td>").map_or(row.len(), |e| start + e);
    &row[start..end]
}

/// How many points the first sparkline in `html` draws.
fn spark_points(html: &str) -> usize {
    let marker = r#"data-points=""#;
    html.find(marker)
        .and_then(|start| {
            let rest = &html[start + marker.len()..];
            rest[..rest.find('"')?].parse().ok()
        })
        .unwrap_or(0)
}
