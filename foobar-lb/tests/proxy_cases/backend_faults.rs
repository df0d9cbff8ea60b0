//! Backends that misbehave: their faults are theirs (a `502`, counted
//! against them, never retried when they did answer) and never reach
//! another client's exchange.

use std::sync::atomic::Ordering;
use std::time::Duration;

use foobar_lb::policy::RoundRobin;
use foobar_lb::Proxy;

use crate::support::*;

async fn proxy_to(backend: &StrictBackend) -> (Proxy, TestServer) {
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    proxy.add_backend(&backend.url).unwrap();
    let front = crate::serve_front(proxy.clone()).await;
    (proxy, front)
}

/// A fake complete response, as stray bytes.
const POISON: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPOISON";

#[tokio::test]
async fn stray_bytes_after_a_bodiless_response_never_reach_another_client() {
    for (request, answer) in [
        (
            "HEAD /h",
            &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..],
        ),
        ("GET /no-content", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET /not-modified", b"HTTP/1.1 304 Not Modified\r\n\r\n"),
    ] {
        for separate in [false, true] {
            let backend = StrictBackend::with(move |seen| {
                if seen.path.starts_with("/canary") {
                    return Answer::bytes(echo_answer(seen));
                }
                let parts = if separate {
                    vec![answer.to_vec(), POISON.to_vec()]
                } else {
                    vec![[answer, POISON].concat()]
                };
                Answer {
                    parts,
                    close: false,
                }
            })
            .await;
            let (_proxy, front) = proxy_to(&backend).await;
            let case = format!("{request}, stray bytes in a separate write: {separate}");
            let resp = raw_exchange(
                front.addr,
                format!("{request} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes(),
            )
            .await
            .expect("an answer");
            assert!(resp.body.is_empty(), "{case}: {resp:?}");
            // The stray bytes are in the pooled connection before the
            // next request comes.
            wait_until(Duration::from_secs(5), "the backend wrote all", || {
                backend.answered.load(Ordering::Relaxed) >= 1
            })
            .await;
            for n in 0..3 {
                canary(front.addr, n).await;
            }
        }
    }
}

#[tokio::test]
async fn content_length_goes_when_transfer_encoding_framed_the_response() {
    let backend = StrictBackend::with(|_| {
        Answer::bytes(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
               5\r\nhello\r\n0\r\n\r\n"[..],
        )
    })
    .await;
    let (_proxy, front) = proxy_to(&backend).await;
    let resp = raw_exchange(front.addr, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(resp.text(), "hello", "{resp:?}");
    assert!(
        resp.header("content-length").iter().all(|v| v != "3"),
        "{}",
        resp.head
    );
}

#[tokio::test]
async fn an_unsolicited_switch_is_a_502() {
    let backend = StrictBackend::with(|_| {
        Answer::bytes(&b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"[..])
    })
    .await;
    let (proxy, front) = proxy_to(&backend).await;
    let resp = raw_exchange(front.addr, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .expect("an answer");
    assert_eq!(resp.status, 502, "{}", resp.head);
    assert_eq!(
        proxy.backends().get(&backend.url).unwrap().errors_total(),
        1
    );
}

#[tokio::test]
async fn malformed_responses_are_one_502_and_never_retried() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nx-folded: a\r\n b\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nx-nul: a\0b\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 099 Odd\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ] {
        let backend = StrictBackend::with(move |_| Answer {
            parts: vec![answer.to_vec()],
            close: true,
        })
        .await;
        let (proxy, front) = proxy_to(&backend).await;
        let case = String::from_utf8_lossy(answer).into_owned();
        let resp = raw_exchange(front.addr, b"GET /once HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .expect("an answer");
        assert_eq!(resp.status, 502, "{case:?}: {}", resp.head);
        assert_eq!(
            backend.paths(),
            ["/once"],
            "{case:?}: sent once, not retried"
        );
        assert_eq!(
            proxy.backends().get(&backend.url).unwrap().errors_total(),
            1,
            "{case:?}: counted against the backend"
        );
    }
}

#[tokio::test]
async fn a_content_length_list_of_one_value_is_valid() {
    let backend = StrictBackend::with(|_| {
        Answer::bytes(&b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok"[..])
    })
    .await;
    let (_proxy, front) = proxy_to(&backend).await;
    let mut stream = tokio::net::TcpStream::connect(front.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"GET /1 HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n",
    )
    .await
    .unwrap();
    let resps = read_responses(&mut stream, 2, false).await;
    let bodies: Vec<String> = resps.iter().map(RawResponse::text).collect();
    assert_eq!(bodies, ["ok", "ok"], "{resps:?}");
    assert_eq!(resps[0].header("content-length"), ["2"]);
}
