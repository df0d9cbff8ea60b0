//! Prometheus metrics of a pool over a real cluster. The recorder is global:
//! this file holds one test, so its process has it to itself.

mod support;

use std::time::Duration;

use foobar_db::sandbox::wait_for;
use foobar_db::Executor;
use metrics_exporter_prometheus::PrometheusBuilder;
use support::cluster_and_pool;

#[tokio::test]
async fn queries_pools_lag_and_server_counters_are_exported() {
    // Installed before the pool is built: its metric handles bind to it.
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    let (cluster, pool, shutdown) = cluster_and_pool(1, |b| b).await;
    pool.query_drop("CREATE TABLE m (id INT)").await.unwrap();
    for _ in 0..5 {
        support::port_of_read(&pool).await;
    }
    let primary = cluster.primary().address();
    let replica = cluster.replicas()[0].address();

    let handle = prometheus.clone();
    wait_for(
        "server counters exported",
        Duration::from_secs(5),
        move || {
            let text = handle.render();
            async move { text.contains("foobar_db_server_questions_total") }
        },
    )
    .await
    .unwrap();
    let text = prometheus.render();
    let line = |name: &str, labels: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l.contains(labels))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {name} with {labels} in:\n{text}"))
    };
    let reads = line(
        "foobar_db_queries_total",
        &format!("host=\"{replica}\",role=\"reader\""),
    );
    assert!(reads.ends_with(" 5"), "{reads}");
    line(
        "foobar_db_queries_total",
        &format!("host=\"{primary}\",role=\"writer\""),
    );
    line(
        "foobar_db_query_duration_seconds",
        &format!("host=\"{replica}\""),
    );
    line("foobar_db_pool_connections", &format!("host=\"{replica}\""));
    line(
        "foobar_db_replication_lag_seconds",
        &format!("host=\"{replica}\""),
    );
    line("foobar_db_server_commands_total", "command=\"select\"");
    line("foobar_db_host_up", &format!("host=\"{primary}\""));
    // Every series of the pool says what it is.
    let series: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("foobar_db_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
        })
        .collect();
    assert!(series.len() > 10, "{series:?}");
    for name in series {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no # HELP for {name}"
        );
    }
    shutdown.trigger();
}
