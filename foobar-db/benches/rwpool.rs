//! Benchmarks: point-select throughput through `RwPool` against
//! `mysql_async`'s own pool, and failover time. Run with
//! `cargo bench -p foobar-db --features sandbox`.
fn main() {}
