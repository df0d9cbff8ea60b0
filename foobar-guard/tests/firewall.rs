//! The firewall on real sockets (connection and request level, trusted
//! proxies, hot swap, metrics) and the rules engine against a reference
//! matcher.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foobar_core::PlainTcp;
use foobar_guard::firewall::{Action, Rule, Rules};
use foobar_guard::{ConfigError, FirewallLayer, IpNet, RulesOrigin, TrustedProxies};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{get_from, ip, serve, App, Reply};
use tower::ServiceBuilder;

/// 127.0.0.1-2 allowed; 127.0.0.3 denied by an earlier rule; the rest of
/// 127.0.0.0/8 denied by default.
const RULES: &str = "
    # loopback clients
    deny  127.0.0.3          # first match wins over the /29 below
    allow 127.0.0.0/29
    allow ::1
    default deny
";

#[tokio::test]
async fn connection_level_closes_denied_peers_before_any_response() {
    let stage = ServiceBuilder::new()
        .layer(FirewallLayer::new(RULES.parse().unwrap()))
        .service(PlainTcp);
    let server = serve(stage, App);
    for (source, allowed) in [
        ("127.0.0.1", true),
        ("127.0.0.2", true),
        ("127.0.0.3", false),
        ("127.0.0.9", false),
    ] {
        let reply = get_from(ip(source), server.addr, "/conn", "").await;
        if allowed {
            assert_eq!(reply.status(), Some(200), "{source}: {reply:?}");
            assert!(reply.body().starts_with(source), "{source}: {reply:?}");
        } else {
            assert_eq!(reply, Reply::Closed, "{source}");
        }
    }
}

#[tokio::test]
async fn request_level_answers_403_to_denied_clients() {
    let http = ServiceBuilder::new()
        .layer(FirewallLayer::new(RULES.parse().unwrap()))
        .service(App);
    let server = serve(PlainTcp, http);
    for (source, status) in [
        ("127.0.0.1", 200),
        ("127.0.0.2", 200),
        ("127.0.0.3", 403),
        ("127.0.0.9", 403),
    ] {
        let reply = get_from(ip(source), server.addr, "/client", "").await;
        assert_eq!(reply.status(), Some(status), "{source}: {reply:?}");
        if status == 200 {
            assert_eq!(reply.body(), source);
        }
    }
}

#[tokio::test]
async fn rules_are_replaced_at_run_time() {
    let firewall = FirewallLayer::new("deny 127.0.0.5\n".parse().unwrap());
    let handle = firewall.rules().clone();
    let server = serve(
        ServiceBuilder::new()
            .layer(firewall.clone())
            .service(PlainTcp),
        ServiceBuilder::new().layer(firewall).service(App),
    );
    // An open keep-alive connection from an allowed client survives the swap.
    let mut kept = support::connect_from(ip("127.0.0.6"), server.addr).await;
    let first = support::send_raw(&mut kept, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(first.status(), Some(200));
    assert_eq!(
        get_from(ip("127.0.0.5"), server.addr, "/", "").await,
        Reply::Closed
    );

    handle.store("deny 127.0.0.6\nallow 127.0.0.5\n".parse().unwrap());
    assert_eq!(
        get_from(ip("127.0.0.5"), server.addr, "/", "")
            .await
            .status(),
        Some(200)
    );
    assert_eq!(
        get_from(ip("127.0.0.6"), server.addr, "/", "").await,
        Reply::Closed
    );
    // The kept connection is re-checked per request: now 403.
    let again = support::send_raw(&mut kept, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(again.status(), Some(403));
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let trusted = TrustedProxies::parse("127.0.0.10").unwrap();
    let firewall = FirewallLayer::new("deny 203.0.113.0/24\n".parse().unwrap())
        .trusted_proxies(trusted.clone());
    let server = serve(PlainTcp, ServiceBuilder::new().layer(firewall).service(App));

    // Untrusted peer: its headers are ignored, whatever they claim.
    let spoofed = get_from(
        ip("127.0.0.20"),
        server.addr,
        "/client",
        "X-Forwarded-For: 198.51.100.1\r\n",
    )
    .await;
    assert_eq!(spoofed.body(), "127.0.0.20");
    let spoofed_forwarded = get_from(
        ip("127.0.0.20"),
        server.addr,
        "/client",
        "Forwarded: for=198.51.100.1\r\n",
    )
    .await;
    assert_eq!(spoofed_forwarded.body(), "127.0.0.20");

    // Trusted proxy: the right-most untrusted hop is the client; the
    // client-written left part is ignored.
    let via_proxy = get_from(
        ip("127.0.0.10"),
        server.addr,
        "/client",
        "X-Forwarded-For: 6.6.6.6, 198.51.100.1\r\n",
    )
    .await;
    assert_eq!(via_proxy.body(), "198.51.100.1");
    let forwarded = get_from(
        ip("127.0.0.10"),
        server.addr,
        "/client",
        "Forwarded: for=\"[2001:db8::9]:443\"\r\n",
    )
    .await;
    assert_eq!(forwarded.body(), "2001:db8::9");

    // The resolved client is what the rules see.
    let denied = get_from(
        ip("127.0.0.10"),
        server.addr,
        "/client",
        "X-Forwarded-For: 203.0.113.7\r\n",
    )
    .await;
    assert_eq!(denied.status(), Some(403));
    let untrusted_claim = get_from(
        ip("127.0.0.20"),
        server.addr,
        "/client",
        "X-Forwarded-For: 203.0.113.7\r\n",
    )
    .await;
    assert_eq!(untrusted_claim.status(), Some(200));

    // The load balancer moved: the old one is no longer believed, the new
    // one is.
    trusted.replace(&TrustedProxies::parse("127.0.0.20").unwrap());
    let xff = "X-Forwarded-For: 198.51.100.1\r\n";
    let old = get_from(ip("127.0.0.10"), server.addr, "/client", xff).await;
    assert_eq!(old.body(), "127.0.0.10");
    let new = get_from(ip("127.0.0.20"), server.addr, "/client", xff).await;
    assert_eq!(new.body(), "198.51.100.1");
}

#[tokio::test]
async fn denials_are_counted_by_level() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let firewall = metrics::with_local_recorder(&recorder, || {
        FirewallLayer::new("deny 127.0.0.7\n".parse().unwrap())
    });
    let request_level = serve(
        PlainTcp,
        ServiceBuilder::new().layer(firewall.clone()).service(App),
    );
    let conn_level = serve(ServiceBuilder::new().layer(firewall).service(PlainTcp), App);
    assert_eq!(
        get_from(ip("127.0.0.7"), request_level.addr, "/", "")
            .await
            .status(),
        Some(403)
    );
    assert_eq!(
        get_from(ip("127.0.0.7"), request_level.addr, "/", "")
            .await
            .status(),
        Some(403)
    );
    assert_eq!(
        get_from(ip("127.0.0.7"), conn_level.addr, "/", "").await,
        Reply::Closed
    );
    let text = metrics.render();
    assert!(
        text.contains("foobar_firewall_denied_total{level=\"request\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("foobar_firewall_denied_total{level=\"connection\"} 1"),
        "{text}"
    );
}

#[test]
fn a_rules_file_with_a_typo_names_the_file_line_and_token() {
    let dir = tempfile::Builder::new()
        .prefix("foobar-guard-rules-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("firewall.rules");
    std::fs::write(&path, "# office\nallow 10.0.0.0/8\nalow 192.0.2.0/24\n").unwrap();
    match Rules::from_file(&path) {
        Err(ConfigError::RulesSyntax {
            origin,
            line,
            token,
            ..
        }) => {
            assert_eq!(origin, RulesOrigin::File(path.clone()));
            assert_eq!(line, 3);
            assert_eq!(token, "alow");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    std::fs::write(&path, "allow 10.0.0.0/8\n\ndeny 10.0.0.300/8\n").unwrap();
    let error = Rules::from_file(&path).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(":3:") && message.contains("10.0.0.300/8"),
        "{message}"
    );
    for (text, token) in [
        ("deny 10.0.0.0/33", "10.0.0.0/33"),
        ("deny", "deny"),
        ("deny 1.2.3.4 extra", "extra"),
        ("default maybe", "maybe"),
        ("allow ::g", "::g"),
    ] {
        match Rules::parse(text) {
            Err(ConfigError::RulesSyntax {
                token: got,
                line: 1,
                ..
            }) => assert_eq!(got, token, "{text}"),
            other => panic!("{text}: expected a syntax error, got {other:?}"),
        }
    }
    assert!(matches!(
        Rules::from_file(dir.path().join("missing")),
        Err(ConfigError::RulesFile { .. })
    ));

    // Reloading a broken file keeps the rules in force.
    std::fs::write(&path, "deny 192.0.2.0/24\n").unwrap();
    let handle = FirewallLayer::new(Rules::default()).rules().clone();
    handle.reload_file(&path).unwrap();
    assert!(!handle.is_allowed(ip("192.0.2.1")));
    std::fs::write(&path, "deny 192.0.2.0/24\nallow 10.0.0.0/8 oops\n").unwrap();
    assert!(matches!(
        handle.reload_file(&path),
        Err(ConfigError::RulesSyntax { line: 2, .. })
    ));
    assert!(
        !handle.is_allowed(ip("192.0.2.1")),
        "the old rules were dropped"
    );
}

// ------------------------------------------------ randomized reference check

/// The obvious matcher: scan the rules in order.
fn reference(rules: &[Rule], default: Action, addr: IpAddr) -> Action {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    for rule in rules {
        let covers = match (rule.net, addr) {
            (IpNet::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(net.prefix_len()))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(net.addr()) & mask
            }
            (IpNet::V6(net), IpAddr::V4(a)) if net.prefix_len() >= 96 => {
                // A rule written as an IPv4-mapped block.
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(net.prefix_len()))
                    .unwrap_or(0);
                let mapped = u128::from(a.to_ipv6_mapped());
                mapped & mask == u128::from(net.addr()) & mask
            }
            (IpNet::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(net.prefix_len()))
                    .unwrap_or(0);
                let net_bits = u128::from(net.addr()) & mask;
                // Mapped blocks hold IPv4 addresses only.
                let mapped_block = net.prefix_len() >= 96 && net_bits >> 32 == 0xffff;
                !mapped_block && u128::from(a) & mask == net_bits
            }
            _ => false,
        };
        if covers {
            return rule.action;
        }
    }
    default
}

#[test]
fn ten_thousand_random_addresses_agree_with_the_reference_matcher() {
    let mut rng = StdRng::seed_from_u64(0x0f1e_2d3c);
    let mut allowed = 0;
    for round in 0..5 {
        let default = if rng.random_bool(0.5) {
            Action::Allow
        } else {
            Action::Deny
        };
        // Addresses drawn from a few small pools so rules nest and overlap.
        let v4_pool: Vec<u32> = (0..8).map(|_| rng.random()).collect();
        let v6_pool: Vec<u128> = (0..8).map(|_| rng.random()).collect();
        let near_v4 = |rng: &mut StdRng, pool: &[u32]| {
            pool[rng.random_range(0..pool.len())] ^ (rng.random::<u32>() >> rng.random_range(8..32))
        };
        let near_v6 = |rng: &mut StdRng, pool: &[u128]| {
            pool[rng.random_range(0..pool.len())]
                ^ (rng.random::<u128>() >> rng.random_range(16..128))
        };
        // Small lists are searched directly, long ones through an index.
        let count = if round % 2 == 0 { 300 } else { 5_000 };
        let rules: Vec<Rule> = (0..count)
            .map(|_| {
                let action = if rng.random_bool(0.5) {
                    Action::Allow
                } else {
                    Action::Deny
                };
                let net = match rng.random_range(0..3) {
                    0 => IpNet::new(
                        IpAddr::V4(Ipv4Addr::from(near_v4(&mut rng, &v4_pool))),
                        rng.random_range(0..=32),
                    ),
                    1 => IpNet::new(
                        IpAddr::V6(Ipv6Addr::from(near_v6(&mut rng, &v6_pool))),
                        rng.random_range(0..=128),
                    ),
                    // IPv4 written as an IPv4-mapped IPv6 block.
                    _ => IpNet::new(
                        IpAddr::V6(Ipv4Addr::from(near_v4(&mut rng, &v4_pool)).to_ipv6_mapped()),
                        rng.random_range(96..=128),
                    ),
                }
                .unwrap();
                Rule { action, net }
            })
            .collect();
        let compiled = Rules::new(rules.iter().copied(), default);
        for i in 0..2_000 {
            let addr = match i % 4 {
                0 => IpAddr::V4(Ipv4Addr::from(near_v4(&mut rng, &v4_pool))),
                1 => IpAddr::V6(Ipv6Addr::from(near_v6(&mut rng, &v6_pool))),
                2 => IpAddr::V6(Ipv4Addr::from(near_v4(&mut rng, &v4_pool)).to_ipv6_mapped()),
                _ => {
                    if rng.random_bool(0.5) {
                        IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))
                    } else {
                        IpAddr::V6(Ipv6Addr::from(rng.random::<u128>()))
                    }
                }
            };
            let expected = reference(&rules, default, addr);
            assert_eq!(
                compiled.check(addr),
                expected,
                "round {round}, address {addr}"
            );
            allowed += usize::from(expected == Action::Allow);
        }
    }
    // Both outcomes are well represented (the check is not vacuous).
    assert!(
        (2_000..8_000).contains(&allowed),
        "{allowed} of 10000 allowed"
    );
}

#[test]
fn mapped_addresses_match_ipv4_rules() {
    let rules: Rules = "allow 1.2.3.0/24\nallow ::ffff:5.6.7.0/120\ndefault deny"
        .parse()
        .unwrap();
    assert!(rules.is_allowed(ip("::ffff:1.2.3.4")));
    assert!(rules.is_allowed(ip("5.6.7.8")));
    assert!(!rules.is_allowed(ip("::ffff:1.2.4.4")));
    assert!(!rules.is_allowed(ip("::1.2.3.4")));
}

#[tokio::test]
async fn request_level_works_over_http2() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let http = ServiceBuilder::new()
        .layer(FirewallLayer::new(RULES.parse().unwrap()))
        .service(App);
    let server = serve(PlainTcp, http);
    for (source, status) in [("127.0.0.2", 200), ("127.0.0.3", 403)] {
        let tcp = support::connect_from(ip(source), server.addr).await;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        let req = http::Request::get(format!("http://{}/client", server.addr))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(support::DEADLINE, sender.send_request(req))
            .await
            .expect("a response in time")
            .expect("a response");
        assert_eq!(response.status(), status, "{source}");
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if status == 200 {
            assert_eq!(body, source.as_bytes());
        } else {
            assert_eq!(body, "forbidden\n".as_bytes());
        }
    }
}
