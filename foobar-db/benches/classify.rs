//! Statement classification cost per statement, for typical application
//! statements and a long one.
//!
//! Run with `cargo bench -p foobar-db --bench classify`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use foobar_db::classify::classify;

const STATEMENTS: &[(&str, &str)] = &[
    (
        "point_select",
        "SELECT id, name, email FROM users WHERE id = ?",
    ),
    (
        "join_select",
        "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE o.created_at > ? AND c.country IN ('FR', 'DE', 'ES') ORDER BY o.total DESC LIMIT 50",
    ),
    (
        "select_for_update",
        "SELECT balance FROM accounts WHERE id = ? FOR UPDATE",
    ),
    (
        "insert",
        "INSERT INTO events (kind, payload, created_at) VALUES (?, ?, NOW())",
    ),
    ("update", "UPDATE users SET last_seen = NOW() WHERE id = ?"),
    ("set_names", "/*!40101 SET NAMES utf8mb4 */"),
    ("begin", "START TRANSACTION READ ONLY"),
    (
        "hinted_cte",
        "/* foobar:replica */ WITH recent AS (SELECT user_id, COUNT(*) AS n FROM events \
         WHERE created_at > NOW() - INTERVAL 1 DAY GROUP BY user_id) \
         SELECT u.name, r.n FROM users u JOIN recent r ON r.user_id = u.id -- daily report",
    ),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (name, sql) in STATEMENTS {
        group.throughput(Throughput::Bytes(sql.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), sql, |b, sql| {
            b.iter(|| classify(black_box(sql)));
        });
    }
    // A 4 KiB statement: cost grows linearly with length.
    let long = format!(
        "SELECT * FROM t WHERE id IN ({}0)",
        "1234567, 'a string', ".repeat(180)
    );
    group.throughput(Throughput::Bytes(long.len() as u64));
    group.bench_with_input(BenchmarkId::from_parameter("long_4k"), &long, |b, sql| {
        b.iter(|| classify(black_box(sql)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
