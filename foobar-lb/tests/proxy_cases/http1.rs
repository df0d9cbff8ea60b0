//! What the proxy's HTTP/1 path can get wrong: chunked bodies, pipelining,
//! refused heads, `Expect`, early and interim answers, `Connection`
//! naming the framing, `HEAD`, bodies delimited by close, timeouts,
//! drain, and TLS clients (HTTP/1.1 and HTTP/2 on one listener).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foobar_core::{HttpConfig, PlainTcp, Server, Shutdown};
use foobar_lb::policy::RoundRobin;
use foobar_lb::Proxy;

use crate::support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a scripted backend does with one request it has read: the bytes to
/// answer, and whether to close the connection after them.
type Script = Arc<dyn Fn(&[u8]) -> (Vec<u8>, bool) + Send + Sync>;

/// A backend on a raw socket. `complete` tells where a request ends in the
/// bytes read so far; `respond` answers it (an empty answer closes the
/// Every request's bytes are recorded.
async fn scripted_backend(
    complete: fn(&[u8]) -> Option<usize>,
    respond: Script,
) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (respond, record) = (respond.clone(), record.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    if let Some(end) = complete(&buf) {
                        let request: Vec<u8> = buf.drain(..end).collect();
                        let (answer, close) = respond(&request);
                        record.lock().unwrap().push(request);
                        if stream.write_all(&answer).await.is_err() || close {
                            return;
                        }
                        continue;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (url, seen)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request is its head (no body).
fn head_only(buf: &[u8]) -> Option<usize> {
    find(buf, b"\r\n\r\n").map(|at| at + 4)
}

/// A request is its head and a chunked body ending in an empty trailer.
fn chunked_request(buf: &[u8]) -> Option<usize> {
    let head = head_only(buf)?;
    find(&buf[head..], b"\r\n0\r\n\r\n").map(|at| head + at + 7)
}

/// A request is its head and a chunked body, trailers included.
fn chunked_with_trailers(buf: &[u8]) -> Option<usize> {
    let head = head_only(buf)?;
    let last = head + find(&buf[head..], b"\r\n0\r\n")? + 5;
    if buf[last..].starts_with(b"\r\n") {
        return Some(last + 2);
    }
    find(&buf[last..], b"\r\n\r\n").map(|at| last + at + 4)
}

/// A backend answering every request `200 ok`.
async fn ok_backend() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    scripted_backend(
        head_only,
        Arc::new(|_: &[u8]| {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                false,
            )
        }),
    )
    .await
}

async fn proxy_to(url: &str) -> TestServer {
    proxy_to_with(url, HttpConfig::default()).await
}

async fn proxy_to_with(url: &str, http: HttpConfig) -> TestServer {
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    proxy.add_backend(url).unwrap();
    crate::serve_front_with(proxy, http).await
}

/// Reads from `stream` until `done` holds for what was read, or it closes;
/// fails after 10 s.
async fn read_until(stream: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done(&got) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("answer within 10 s");
    got
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn chunked_bodies_are_decoded_and_chunked_again_both_ways() {
    let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        5;note=first\r\nhello\r\n6\r\n world\r\n0\r\nx-digest: 1\r\n\r\n";
    let (url, seen) = scripted_backend(
        chunked_with_trailers,
        Arc::new(move |_: &[u8]| (answer.to_vec(), false)),
    )
    .await;
    let front = proxy_to(&url).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    let body = b"3;ext\r\nabc\r\n0\r\nx-sum: 9\r\n\r\n";
    let request = [
        b"POST /upload HTTP/1.1\r\nhost: example\r\ntransfer-encoding: chunked\r\n\r\n".as_slice(),
        body,
    ]
    .concat();
    // Split so the body arrives after the head, in two pieces.
    client.write_all(&request[..40]).await.unwrap();
    client.write_all(&request[40..70]).await.unwrap();
    client.write_all(&request[70..]).await.unwrap();
    let got = read_until(&mut client, |got| got.ends_with(b"x-digest: 1\r\n\r\n")).await;
    let got = text(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("\r\ntransfer-encoding: chunked\r\n"), "{got}");
    // The data and the trailers pass; chunk boundaries and extensions are
    // the hop's own.
    let (_, chunks) = got.split_once("\r\n\r\n").unwrap();
    assert!(
        chunks.contains("hello") && chunks.contains(" world"),
        "{got}"
    );
    assert!(chunks.ends_with("0\r\nx-digest: 1\r\n\r\n"), "{got}");
    let seen = seen.lock().unwrap();
    let upstream = text(&seen[0]);
    assert!(
        upstream.starts_with("POST /upload HTTP/1.1\r\n"),
        "{upstream}"
    );
    assert!(
        upstream.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{upstream}"
    );
    assert!(
        upstream.ends_with("\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 9\r\n\r\n"),
        "{upstream}"
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (url, _) = scripted_backend(
        head_only,
        Arc::new(|req: &[u8]| {
            let path = text(req).split(' ').nth(1).unwrap_or("?").to_owned();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{path}",
                path.len()
            );
            (answer.into_bytes(), false)
        }),
    )
    .await;
    let front = proxy_to(&url).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    let three = b"GET /one HTTP/1.1\r\nhost: a\r\n\r\nGET /two HTTP/1.1\r\nhost: a\r\n\r\nGET /three HTTP/1.1\r\nhost: a\r\n\r\n";
    client.write_all(three).await.unwrap();
    let got = read_until(&mut client, |got| got.ends_with(b"/three")).await;
    let got = text(&got);
    let bodies: Vec<&str> = got
        .split("HTTP/1.1 200 OK")
        .skip(1)
        .map(|r| r.rsplit("\r\n\r\n").next().unwrap())
        .collect();
    assert_eq!(bodies, ["/one", "/two", "/three"], "{got}");
}

#[tokio::test]
async fn http10_and_malformed_heads() {
    let (url, seen) = ok_backend().await;
    let front = proxy_to(&url).await;

    // HTTP/1.0: the hop upstream is HTTP/1.1.
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"GET /old HTTP/1.0\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let got = text(&read_until(&mut client, |got| got.ends_with(b"ok")).await);
    // The highest version the server speaks (RFC 9110 section 2.5).
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(text(&seen.lock().unwrap()[0]).starts_with("GET /old HTTP/1.1\r\n"));
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"GET /x HTTP/1.1\r\nbad header\r\n\r\n")
        .await
        .unwrap();
    let got = text(&read_until(&mut client, |got| find(got, b"400 Bad Request").is_some()).await);
    assert!(got.contains("HTTP/1.1 400 Bad Request\r\n"), "alone: {got}");

    // A request served first, then a malformed one on the same
    // connection: 400.
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"GET /fine HTTP/1.1\r\nhost: a\r\n\r\nGET /x HTTP/1.1\r\nbad header\r\n\r\n")
        .await
        .unwrap();
    let got = text(&read_until(&mut client, |got| find(got, b"400 Bad Request").is_some()).await);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("HTTP/1.1 400 Bad Request\r\n"), "{got}");

    // A head over the server's limit: 431.
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    let huge = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let _ = client.write_all(huge.as_bytes()).await;
    let got = text(&read_until(&mut client, |got| find(got, b"\r\n\r\n").is_some()).await);
    assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
}

#[tokio::test]
async fn heads_with_more_fields_than_the_server_allows_get_431() {
    let (url, seen) = ok_backend().await;
    let mut http = HttpConfig::default();
    http.max_headers = 8;
    let front = proxy_to_with(&url, http).await;
    let addr = front.addr;
    let head = |fields: usize| {
        let mut head = String::from("GET / HTTP/1.1\r\nhost: a\r\n");
        for i in 1..fields {
            head.push_str(&format!("x-field-{i}: {i}\r\n"));
        }
        head + "\r\n"
    };

    // At the limit: served.
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(head(8).as_bytes()).await.unwrap();
    let got = text(&read_until(&mut client, |got| got.ends_with(b"ok")).await);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(text(&seen.lock().unwrap()[0]).contains("x-field-7: 7\r\n"));

    // One over: 431, and the backend sees nothing.
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(head(9).as_bytes()).await.unwrap();
    let got = text(&read_until(&mut client, |got| find(got, b"\r\n\r\n").is_some()).await);
    assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn expect_continue_uploads_work() {
    let (url, seen) = scripted_backend(
        |buf: &[u8]| {
            let head = head_only(buf)?;
            (buf.len() >= head + 4).then_some(head + 4)
        },
        Arc::new(|_: &[u8]| {
            (
                b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n".to_vec(),
                false,
            )
        }),
    )
    .await;
    let front = proxy_to(&url).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(
            b"POST /e HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let got = text(&read_until(&mut client, |got| find(got, b"\r\n\r\n").is_some()).await);
    assert!(got.starts_with("HTTP/1.1 100 Continue\r\n"), "{got}");
    client.write_all(b"data").await.unwrap();
    let got = text(&read_until(&mut client, |got| find(got, b"201 Created").is_some()).await);
    assert!(got.contains("HTTP/1.1 201 Created\r\n"), "{got}");
    assert!(text(&seen.lock().unwrap()[0]).ends_with("\r\n\r\ndata"));
}

#[tokio::test]
async fn an_early_response_ends_the_upload_and_the_connection() {
    let (url, _) = scripted_backend(
        head_only,
        Arc::new(|_: &[u8]| {
            let answer = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 9\r\n\r\ntoo large";
            (answer.to_vec(), false)
        }),
    )
    .await;
    let front = proxy_to(&url).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"PUT /big HTTP/1.1\r\nhost: a\r\ncontent-length: 100000000\r\n\r\n")
        .await
        .unwrap();
    client.write_all(&[0u8; 1024]).await.unwrap();
    // The rest of the body never comes: the answer must not wait for it.
    let got = text(&read_until(&mut client, |got| got.ends_with(b"too large")).await);
    assert!(got.starts_with("HTTP/1.1 413 "), "{got}");
    assert!(got.contains("\r\nconnection: close\r\n"), "{got}");
    let rest = read_until(&mut client, |_| false).await;
    assert!(rest.is_empty(), "connection closed after the early answer");
}

/// A request is its head and the body its head frames.
fn framed_request(buf: &[u8]) -> Option<usize> {
    let head = head_only(buf)?;
    let lower = text(&buf[..head]).to_ascii_lowercase();
    if lower.contains("\r\ntransfer-encoding: chunked\r\n") {
        return chunked_request(buf);
    }
    let length = lower
        .split("\r\ncontent-length: ")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .map_or(Some(0), |value| value.parse::<usize>().ok())?;
    (buf.len() >= head + length).then_some(head + length)
}

#[tokio::test]
async fn interim_answers_during_an_upload_are_relayed_and_the_upload_goes_on() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let backend = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 1024];
        while head_only(&got).is_none() {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the head");
            got.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n")
            .await
            .unwrap();
        // The rest of the body comes only after the client saw the 103.
        while framed_request(&got).is_none() {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the body's end");
            got.extend_from_slice(&chunk[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        got
    });
    let front = proxy_to(&url).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 8\r\n\r\nfour")
        .await
        .unwrap();
    let got = text(&read_until(&mut client, |got| find(got, b"\r\n\r\n").is_some()).await);
    assert!(got.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{got}");
    client.write_all(b"more").await.unwrap();
    let got = text(&read_until(&mut client, |got| got.ends_with(b"ok")).await);
    assert!(got.contains("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(!got.contains("connection: close"), "{got}");
    let request = text(&backend.await.unwrap());
    assert!(request.ends_with("\r\n\r\nfourmore"), "{request}");
}

#[tokio::test]
async fn connection_naming_the_framing_cannot_split_a_request_or_a_response() {
    let (url, seen) = scripted_backend(
        framed_request,
        Arc::new(|_: &[u8]| {
            let answer =
                b"HTTP/1.1 200 OK\r\nconnection: content-length\r\ncontent-length: 5\r\n\r\nhello";
            (answer.to_vec(), false)
        }),
    )
    .await;
    let front = proxy_to(&url).await;

    // The response's length stays, so the connection can carry another.
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"GET /1 HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let got = text(&read_until(&mut client, |got| text(got).matches("hello").count() == 2).await);
    assert_eq!(got.matches("\r\ncontent-length: 5\r\n").count(), 2, "{got}");

    // A request's length named in `Connection`: its body stays its body.
    let inner = "GET /admin HTTP/1.1\r\nhost: a\r\n\r\n";
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    let outer = format!(
        "POST / HTTP/1.1\r\nhost: a\r\nconnection: content-length\r\ncontent-length: {}\r\n\r\n{inner}",
        inner.len()
    );
    client.write_all(outer.as_bytes()).await.unwrap();
    let got = text(&read_until(&mut client, |got| got.ends_with(b"hello")).await);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "the backend saw one request, not two");
    let posted = text(&seen[2]);
    assert!(posted.starts_with("POST / HTTP/1.1\r\n"), "{posted}");
    assert!(posted.ends_with(inner), "{posted}");
}

#[tokio::test]
async fn error_pages_for_head_requests_have_no_body() {
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    let front = crate::serve_front(proxy).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"HEAD / HTTP/1.1\r\nhost: a\r\n\r\nGET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let got = text(&read_until(&mut client, |got| got.ends_with(b"no healthy backend\n")).await);
    let second = got
        .find("\r\n\r\n")
        .map(|end| &got[end + 4..])
        .unwrap_or("");
    assert!(got.starts_with("HTTP/1.1 503 "), "{got}");
    assert!(
        second.starts_with("HTTP/1.1 503 "),
        "HEAD answer had a body: {got}"
    );
}

#[tokio::test]
async fn a_response_delimited_by_close_is_relayed_chunked() {
    let (url, _) = scripted_backend(
        head_only,
        Arc::new(|_: &[u8]| {
            (
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end".to_vec(),
                true,
            )
        }),
    )
    .await;
    let front = proxy_to(&url).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    // The backend's close ends the body: the client gets a last chunk
    // and keeps its connection.
    let got = text(&read_until(&mut client, |got| got.ends_with(b"\r\n0\r\n\r\n")).await);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("\r\ntransfer-encoding: chunked\r\n"), "{got}");
    assert!(!got.contains("connection: close"), "{got}");
    assert!(
        got.ends_with("\r\n\r\nd\r\nuntil the end\r\n0\r\n\r\n"),
        "{got}"
    );
    client
        .write_all(b"GET /again HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let again = text(&read_until(&mut client, |got| got.ends_with(b"\r\n0\r\n\r\n")).await);
    assert!(again.starts_with("HTTP/1.1 200 OK\r\n"), "{again}");
}

#[tokio::test]
async fn informational_heads_come_before_the_answer_and_head_answers_have_no_body() {
    let (url, _) = scripted_backend(
        head_only,
        Arc::new(|req: &[u8]| {
            let answer: &[u8] = if req.starts_with(b"HEAD ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"
            } else {
                b"HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            };
            (answer.to_vec(), false)
        }),
    )
    .await;
    let front = proxy_to(&url).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"HEAD /h HTTP/1.1\r\nhost: a\r\n\r\nGET /g HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let got = text(&read_until(&mut client, |got| got.ends_with(b"\r\n\r\nok")).await);
    let parts: Vec<&str> = got.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(parts.len(), 3, "{got}");
    assert!(parts[0].starts_with("200 OK\r\n") && parts[0].contains("content-length: 1000"));
    assert!(
        parts[0].ends_with("\r\n\r\n"),
        "no body after a HEAD answer: {got}"
    );
    assert!(parts[1].starts_with("103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n"));
    assert!(parts[2].starts_with("200 OK\r\n"), "{got}");
}

#[tokio::test]
async fn malformed_backend_answers_are_502s() {
    let malformed = "bad gateway: the backend's response was malformed\n";
    for (answer, message) in [
        (
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"[..],
            malformed,
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", malformed),
        (b"HTTP/1.1 2000 Nope\r\n\r\n", malformed),
        (b"not http at all\r\n\r\n", malformed),
        (
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "bad gateway: the backend switched protocols unasked\n",
        ),
    ] {
        let (url, _) = scripted_backend(
            head_only,
            Arc::new(move |_: &[u8]| (answer.to_vec(), false)),
        )
        .await;
        let front = proxy_to(&url).await;
        let mut client = TcpStream::connect(front.addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .unwrap();
        let got = text(&read_until(&mut client, |got| got.ends_with(message.as_bytes())).await);
        assert!(
            got.starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
            "{:?} gave {got}",
            text(answer)
        );
        assert!(got.ends_with(message), "{got}");
    }
}

/// A proxy server that gives a request in flight 5 s to finish once
/// `shutdown` fires.
async fn draining_front(url: &str, shutdown: Shutdown) -> std::net::SocketAddr {
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    proxy.add_backend(url).unwrap();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .shutdown(shutdown)
        .grace_period(Duration::from_secs(5))
        .build()
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve_connections(PlainTcp, proxy));
    addr
}

#[tokio::test]
async fn idle_backend_connections_are_let_go_without_traffic() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let got = read_until(&mut stream, |got| head_only(got).is_some()).await;
        assert!(head_only(&got).is_some(), "a request head");
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        // The backend ends keep-alive on its side, then waits for the
        // proxy to close its own.
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let read = stream.read_to_end(&mut rest).await;
        let _ = closed_tx.send(read.map(|_| rest.len()).ok());
    });
    let proxy = Proxy::builder(RoundRobin::new())
        .idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    proxy.add_backend(&url).unwrap();
    let front = crate::serve_front(proxy).await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let got = text(&read_until(&mut client, |got| got.ends_with(b"ok")).await);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    // No request comes to check the pooled connection out: the proxy
    // closes it on its own.
    let closed = tokio::time::timeout(Duration::from_secs(10), closed_rx)
        .await
        .expect("the proxy closes its side within 10 s")
        .unwrap();
    assert_eq!(closed, Some(0), "closed, with nothing sent");
}

#[tokio::test]
async fn idle_and_slow_clients_are_closed_after_the_header_timeout() {
    let (url, _) = ok_backend().await;
    let mut http = HttpConfig::default();
    http.header_read_timeout = Some(Duration::from_millis(300));
    let front = proxy_to_with(&url, http).await;
    let addr = front.addr;
    // Idle after one request.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = read_until(&mut idle, |_| false).await;
    assert!(text(&got).ends_with("ok"));
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early"
    );
    // Half a head, then nothing.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n")
        .await
        .unwrap();
    let got = read_until(&mut slow, |_| false).await;
    assert!(got.is_empty(), "{}", text(&got));
}

#[tokio::test]
async fn a_drain_finishes_the_request_in_flight_then_closes() {
    // A backend that answers only when told to, and says when a request
    // has arrived.
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (a, r) = (arrived.clone(), release.clone());
    let backend = crate::support::serve(
        "127.0.0.1:0",
        tower::service_fn(move |req: http::Request<foobar_core::RequestBody>| {
            let (a, r) = (a.clone(), r.clone());
            async move {
                if req.uri().path() == "/held" {
                    a.notify_one();
                    r.notified().await;
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"ok"),
                )))
            }
        }),
    )
    .await;
    let shutdown = Shutdown::new();
    let addr = draining_front(&backend.url(), shutdown.clone()).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let first = read_until(&mut idle, |got| got.ends_with(b"ok")).await;
    assert!(text(&first).starts_with("HTTP/1.1 200 OK\r\n"));

    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"GET /held HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .expect("the request reached the backend");
    shutdown.trigger();
    // The idle connection closes at once; the busy one gets its answer.
    assert!(
        read_until(&mut idle, |_| false).await.is_empty(),
        "idle connection closed"
    );
    release.notify_one();
    let got = text(&read_until(&mut busy, |_| false).await);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("\r\nconnection: close\r\n"), "{got}");
    assert!(got.ends_with("ok"), "{got}");
}

#[tokio::test]
async fn tls_clients_speak_http1_or_http2_on_one_listener() {
    use foobar_guard::tls::{TlsConfig, TlsLayer};
    use rustls_pki_types::ServerName;

    let (url, seen) = ok_backend().await;
    let ca = foobar_core::tls::DevCa::new().unwrap();
    let identity = ca.server_cert(["127.0.0.1"]).unwrap().identity().unwrap();
    let tls = TlsConfig::builder().identity(identity).build().unwrap();
    let proxy = Proxy::builder(RoundRobin::new()).build().unwrap();
    proxy.add_backend(&url).unwrap();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .build()
        .unwrap();
    let addr = server.local_addr();
    let stage = tower::ServiceBuilder::new()
        .layer(TlsLayer::new(tls))
        .service(PlainTcp);
    tokio::spawn(server.serve_connections(stage, proxy));

    let connect = |alpn: &'static [u8]| {
        let ca = &ca;
        async move {
            let mut config = (*ca.client_tls().build().unwrap()).clone();
            config.alpn_protocols = vec![alpn.to_vec()];
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            connector.connect(name, tcp).await.unwrap()
        }
    };

    // HTTP/1.1 over TLS: the backend learns the scheme.
    let mut h1 = connect(b"http/1.1").await;
    h1.write_all(b"GET /secure HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 4096];
    while !got.ends_with(b"ok") {
        let n = tokio::time::timeout(Duration::from_secs(10), h1.read(&mut chunk))
            .await
            .expect("answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed early: {}", text(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(text(&got).starts_with("HTTP/1.1 200 OK\r\n"));
    let upstream = text(&seen.lock().unwrap()[0]);
    assert!(
        upstream.contains("\r\nx-forwarded-proto: https\r\n"),
        "{upstream}"
    );
    assert!(upstream.contains(";proto=https;"), "{upstream}");

    // HTTP/2 by ALPN.
    let h2 = connect(b"h2").await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(h2),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://127.0.0.1/two")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), http::StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let upstream = text(&seen.lock().unwrap()[1]);
    assert!(upstream.starts_with("GET /two HTTP/1.1\r\n"), "{upstream}");
    assert!(upstream.contains("\r\nvia: 2 foobar\r\n"), "{upstream}");
}
