//! Firewall lookups: compiled rules against a naive first-match linear scan,
//! with 10, 10k and 1M rules per address family.
//!
//! Run with `cargo bench -p foobar-guard --bench firewall`; the compiled
//! tables' memory is printed before each group.
#![allow(missing_docs, clippy::print_stderr)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use foobar_guard::firewall::{Action, Rule, Rules};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SIZES: [usize; 3] = [10, 10_000, 1_000_000];
const PROBES: usize = 4096;

fn action(rng: &mut StdRng) -> Action {
    if rng.random_bool(0.5) {
        Action::Allow
    } else {
        Action::Deny
    }
}

/// Random IPv4 blocks, /24 to /32 (as in blocklists), spread over the
/// whole space.
fn v4_rules(n: usize, rng: &mut StdRng) -> Vec<Rule> {
    (0..n)
        .map(|_| {
            let net = Ipv4Net::new(
                Ipv4Addr::from(rng.random::<u32>()),
                rng.random_range(24..=32),
            )
            .expect("prefix length is at most 32");
            Rule {
                action: action(rng),
                net: IpNet::V4(net.trunc()),
            }
        })
        .collect()
}

/// Random IPv6 blocks, /48 to /128, clustered in 2001:db8::/32 (a worst
/// case for an index on the top bits).
fn v6_rules(n: usize, rng: &mut StdRng) -> Vec<Rule> {
    (0..n)
        .map(|_| {
            let bits = (0x2001_0db8_u128 << 96) | (rng.random::<u128>() >> 32);
            let net = Ipv6Net::new(Ipv6Addr::from(bits), rng.random_range(48..=128))
                .expect("prefix length is at most 128");
            Rule {
                action: action(rng),
                net: IpNet::V6(net.trunc()),
            }
        })
        .collect()
}

/// Half the probes fall inside a rule's block, half are random.
fn probes(rules: &[Rule], v6: bool, rng: &mut StdRng) -> Vec<IpAddr> {
    (0..PROBES)
        .map(|i| {
            if i % 2 == 0 {
                // A random address inside a random rule's block.
                match rules[rng.random_range(0..rules.len())].net {
                    IpNet::V4(net) => {
                        let host = u32::from(net.hostmask()) & rng.random::<u32>();
                        IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) | host))
                    }
                    IpNet::V6(net) => {
                        let host = u128::from(net.hostmask()) & rng.random::<u128>();
                        IpAddr::V6(Ipv6Addr::from(u128::from(net.network()) | host))
                    }
                }
            } else if v6 {
                IpAddr::V6(Ipv6Addr::from(
                    (0x2001_0db8_u128 << 96) | (rng.random::<u128>() >> 32),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))
            }
        })
        .collect()
}

/// The fastest of 30 batches of lookups, in ns per lookup: on a shared
/// machine the least-disturbed batch is the best estimate of the real cost.
fn best_batch_ns(rules: &Rules, probes: &[IpAddr]) -> f64 {
    const BATCH: usize = 200_000;
    (0..30)
        .map(|_| {
            let started = std::time::Instant::now();
            for i in 0..BATCH {
                black_box(rules.check(black_box(probes[i % PROBES])));
            }
            started.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn linear(rules: &[Rule], addr: IpAddr) -> Action {
    rules
        .iter()
        .find(|rule| rule.net.contains(&addr))
        .map_or(Action::Allow, |rule| rule.action)
}

fn bench_family(c: &mut Criterion, family: &str, make: fn(usize, &mut StdRng) -> Vec<Rule>) {
    let mut group = c.benchmark_group(format!("firewall_{family}"));
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10);
    for &n in &SIZES {
        let mut rng = StdRng::seed_from_u64(n as u64);
        let rules = make(n, &mut rng);
        let probes = probes(&rules, family == "v6", &mut rng);
        let started = std::time::Instant::now();
        let compiled = Rules::new(rules.iter().copied(), Action::Allow);
        eprintln!(
            "{family} {n} rules: compiled in {:?}, {:.1} MiB",
            started.elapsed(),
            compiled.heap_bytes() as f64 / (1024.0 * 1024.0)
        );
        for (i, &probe) in probes.iter().enumerate().take(64) {
            assert_eq!(compiled.check(probe), linear(&rules, probe), "probe {i}");
        }
        eprintln!(
            "{family} {n} rules: best batch {:.1} ns/lookup",
            best_batch_ns(&compiled, &probes)
        );
        group.bench_with_input(BenchmarkId::new("compiled", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % PROBES;
                black_box(compiled.check(black_box(probes[i])))
            });
        });
        group.bench_with_input(BenchmarkId::new("linear_scan", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % PROBES;
                black_box(linear(&rules, black_box(probes[i])))
            });
        });
    }
    group.finish();
}

fn firewall(c: &mut Criterion) {
    bench_family(c, "v4", v4_rules);
    bench_family(c, "v6", v6_rules);
}

criterion_group!(benches, firewall);
criterion_main!(benches);
