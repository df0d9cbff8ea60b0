//! gRPC through foobar: a tonic client balanced by `LoadBalancer` over
//! tonic channels (P2C + peak EWMA, outlier ejection), and tonic servers
//! behind foobar-guard's layers, over real loopback sockets and TLS.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use foobar_core::tls::DevCa;
use foobar_core::Shutdown;
use foobar_examples::grpc::{self, Greeter, GreeterClient, GuardPolicy};
use foobar_lb::health::OutlierDetection;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::Code;

fn open_policy() -> GuardPolicy {
    GuardPolicy {
        rules: "allow 127.0.0.0/8\ndefault deny\n".parse().unwrap(),
        rate: (10_000, 10_000),
    }
}

/// Starts greeters named `names` with their delays; each stops on its own
/// shutdown signal.
async fn greeters(
    specs: &[(&str, Duration)],
) -> Vec<(String, Shutdown, tokio::task::JoinHandle<()>)> {
    let listeners = grpc::loopback_listeners(specs.len()).await.unwrap();
    specs
        .iter()
        .zip(listeners)
        .map(|((name, delay), (addr, listener))| {
            let shutdown = Shutdown::new();
            let greeter = Greeter::new(*name, *delay);
            let stop = shutdown.clone();
            let task = tokio::spawn(async move {
                grpc::serve(listener, greeter, open_policy(), None, stop)
                    .await
                    .unwrap();
            });
            (format!("http://{addr}"), shutdown, task)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_balancer_prefers_fast_backends_and_ejects_a_dead_one() {
    let servers = greeters(&[
        ("a", Duration::ZERO),
        ("b", Duration::ZERO),
        ("slow", Duration::from_millis(40)),
    ])
    .await;
    let urls: Vec<String> = servers.iter().map(|(url, _, _)| url.clone()).collect();
    let shutdown = Shutdown::new();
    let outlier = OutlierDetection::new()
        .consecutive_failures(2)
        .base_ejection_time(Duration::from_secs(60));
    let (mut client, backends) = grpc::balanced_client(&urls, None, outlier, &shutdown).unwrap();

    let mut served: HashMap<String, u32> = HashMap::new();
    for i in 0..120 {
        let reply = client.say_hello(&format!("n{i}")).await.unwrap();
        assert_eq!(reply.message, format!("hello, n{i}"));
        assert_eq!(reply.client, "127.0.0.1", "the guard found tonic's peer");
        *served.entry(reply.served_by).or_default() += 1;
    }
    // Peak EWMA learns that "slow" is 40 ms slower: P2C sends it little.
    let (a, b, slow) = (
        served["a"],
        served["b"],
        served.get("slow").copied().unwrap_or(0),
    );
    // Between the two equally fast ones P2C may lean either way (a few
    // microseconds of scheduling noise move their EWMA): only the slow one
    // must be avoided, and both fast ones must have been tried.
    assert!(a > 0 && b > 0, "{served:?}");
    assert!(
        slow * 4 < a + b,
        "the slow backend got too much: {served:?}"
    );

    // Kill "a": its calls fail until outlier detection ejects it, then
    // every call succeeds on the others.
    let (dead_url, dead, task) = &servers[0];
    dead.trigger();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the killed greeter stopped");
    let mut failures = 0;
    let started = Instant::now();
    for i in 0..60 {
        match client.say_hello(&format!("after {i}")).await {
            Ok(reply) => assert_ne!(reply.served_by, "a"),
            Err(status) => {
                failures += 1;
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            }
        }
    }
    assert!(failures <= 2, "{failures} calls failed before the ejection");
    let dead_backend = backends.get(dead_url).unwrap();
    assert!(
        dead_backend.is_ejected(),
        "not ejected after {:?}",
        started.elapsed()
    );
    assert_eq!(dead_backend.ejections_total(), 1);
    shutdown.trigger();
    for (_, stop, _) in &servers {
        stop.trigger();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_layers_answer_grpc_clients_in_grpc_over_tls() {
    let ca = DevCa::new().unwrap();
    let cert = ca.server_cert(["localhost"]).unwrap();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert.cert_pem(), cert.key_pem()));
    let policy = GuardPolicy {
        rules: "deny 127.0.0.13\nallow 127.0.0.0/8\ndefault deny\n"
            .parse()
            .unwrap(),
        rate: (1, 2),
    };
    let mut listeners = grpc::loopback_listeners(1).await.unwrap();
    let (addr, listener) = listeners.remove(0);
    let shutdown = Shutdown::new();
    let server = tokio::spawn(grpc::serve(
        listener,
        Greeter::new("tls", Duration::ZERO),
        policy,
        Some(tls),
        shutdown.clone(),
    ));

    let client_from = |source: &str| {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca.cert_pem()))
            .domain_name("localhost");
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .local_address(Some(source.parse().unwrap()))
            .tls_config(tls)
            .unwrap()
            .connect_lazy();
        GreeterClient::new(channel)
    };

    // The client address comes from tonic's TlsConnectInfo.
    let mut allowed = client_from("127.0.0.1");
    let reply = allowed.say_hello("tls").await.unwrap();
    assert_eq!(
        (reply.served_by.as_str(), reply.client.as_str()),
        ("tls", "127.0.0.1")
    );

    let mut denied = client_from("127.0.0.13");
    let status = denied.say_hello("x").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Burst 2 at 1/s: quick calls soon run into RESOURCE_EXHAUSTED.
    let mut limited = client_from("127.0.0.21");
    let mut exhausted = None;
    for _ in 0..10 {
        if let Err(status) = limited.say_hello("again").await {
            exhausted = Some(status);
            break;
        }
    }
    let status = exhausted.expect("the rate limit held");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stopped")
        .unwrap()
        .unwrap();
}
