//! HTTP/2 abuse against the server's h2 listener, with hand-built frames:
//! rapid reset (CVE-2023-44487) and CONTINUATION floods end the attacking
//! connection with `GOAWAY`, at the configured limit; streams past the
//! concurrency limit are refused; SETTINGS, PING and empty-DATA floods
//! (bounded, their answers never read) do not stop the server. In each, a
//! legitimate HTTP/2 client on its own connection keeps being served.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use foobar_core::{HttpConfig, RequestBody, Server};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap();
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A GET for `/` as an HPACK block: `:method GET`, `:scheme http`,
/// `:path /` from the static table, `:authority a` as a literal.
const GET_BLOCK: &[u8] = &[0x82, 0x86, 0x84, 0x01, 0x01, b'a'];

/// The connection preface and an empty SETTINGS frame.
fn preface() -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    out
}

/// Reads frames until a `GOAWAY` (its error code), the end of the stream
/// (`None`) or the deadline (`None`).
async fn goaway(stream: &mut TcpStream, limit: Duration) -> Option<u32> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    loop {
        // Complete frames at the front of the buffer.
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == GOAWAY && len >= 8 {
                let code = u32::from_be_bytes(buf[13..17].try_into().unwrap());
                return Some(code);
            }
            buf.drain(..9 + len);
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
    }
}

/// A server with `config` answering every request with 200; its address.
fn server(config: HttpConfig) -> SocketAddr {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .http(config)
        .build()
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(
        server.serve(tower::service_fn(|_req: Request<RequestBody>| async {
            text(StatusCode::OK, "ok".to_owned())
        })),
    );
    addr
}

/// A legitimate HTTP/2 client: one connection, kept for the whole test.
struct Legit(
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    SocketAddr,
);

impl Legit {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        Self(sender, addr)
    }

    async fn served(&mut self) {
        let req = Request::get(format!("http://{}/", self.1))
            .body(Empty::new())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(5), self.0.send_request(req))
            .await
            .expect("the legitimate client is answered in time")
            .expect("the legitimate client is answered");
        assert_eq!(read(response).await.0, StatusCode::OK);
    }
}

/// Opens `count` streams, each reset at once, in one write.
async fn rapid_reset(addr: SocketAddr, count: u32) -> Option<u32> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = preface();
    let mut rst = [0u8; 4];
    rst.copy_from_slice(&CANCEL.to_be_bytes());
    for i in 0..count {
        let id = 2 * i + 1;
        frame(&mut out, HEADERS, END_STREAM | END_HEADERS, id, GET_BLOCK);
        frame(&mut out, RST_STREAM, 0, id, &rst);
    }
    // The server may close before taking it all.
    let _ = stream.write_all(&out).await;
    goaway(&mut stream, Duration::from_secs(10)).await
}

#[tokio::test]
async fn rapid_reset_ends_the_connection_at_the_limit() {
    let addr = server(HttpConfig::default());
    let mut legit = Legit::connect(addr).await;
    legit.served().await;
    for _ in 0..3 {
        assert_eq!(rapid_reset(addr, 1000).await, Some(ENHANCE_YOUR_CALM));
        legit.served().await;
    }
}

#[tokio::test]
async fn the_rapid_reset_limit_is_configurable() {
    let mut config = HttpConfig::default();
    config.http2_max_pending_accept_reset_streams = 5000;
    let addr = server(config);
    // 200 resets stay under the raised limit: no GOAWAY for them (the
    // connection stays open until the read times out).
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = preface();
    for i in 0..200u32 {
        let id = 2 * i + 1;
        frame(&mut out, HEADERS, END_STREAM | END_HEADERS, id, GET_BLOCK);
        frame(&mut out, RST_STREAM, 0, id, &CANCEL.to_be_bytes());
    }
    stream.write_all(&out).await.unwrap();
    assert_eq!(goaway(&mut stream, Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn a_continuation_flood_ends_the_connection() {
    let addr = server(HttpConfig::default());
    let mut legit = Legit::connect(addr).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = preface();
    // A header block that never ends: HEADERS without END_HEADERS, then
    // CONTINUATION frames of literal fields, far more than any header list
    // within the size limit needs.
    frame(&mut out, HEADERS, END_STREAM, 1, GET_BLOCK);
    // A literal field without indexing: name "x", a 100-byte value.
    let mut field = vec![0x00, 0x01, b'x', 100];
    field.extend(std::iter::repeat_n(b'v', 100));
    for _ in 0..200 {
        frame(&mut out, CONTINUATION, 0, 1, &field);
    }
    let _ = stream.write_all(&out).await;
    assert_eq!(
        goaway(&mut stream, Duration::from_secs(10)).await,
        Some(ENHANCE_YOUR_CALM)
    );
    legit.served().await;
}

#[tokio::test]
async fn streams_past_the_concurrency_limit_are_refused() {
    const RST_STREAM_KIND: u8 = RST_STREAM;
    const REFUSED_STREAM: u32 = 0x7;
    let mut config = HttpConfig::default();
    config.max_concurrent_streams = 10;
    let addr = server(config);
    let mut legit = Legit::connect(addr).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = preface();
    // Acknowledge the server's SETTINGS (sent as the connection opens,
    // with its stream limit) up front: the limit applies from here on.
    frame(&mut out, SETTINGS, 0x1, 0, &[]);
    // Streams whose request never ends: each stays open.
    for i in 0..40u32 {
        frame(&mut out, HEADERS, END_HEADERS, 2 * i + 1, GET_BLOCK);
    }
    stream.write_all(&out).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let mut refused = 0;
    loop {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == RST_STREAM_KIND
                && u32::from_be_bytes(buf[9..13].try_into().unwrap()) == REFUSED_STREAM
            {
                refused += 1;
            }
            buf.drain(..9 + len);
        }
        if refused == 30 {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            other => panic!("{refused} streams refused, then {other:?}"),
        }
    }
    legit.served().await;
}

/// Sends `count` copies of one frame after the preface without reading a
/// byte of the answers (so that whatever the server queues for us piles
/// up), for at most two seconds; then checks the legitimate client.
async fn flood(kind: u8, flags: u8, stream_id: u32, payload: &[u8], count: usize) {
    let addr = server(HttpConfig::default());
    let mut legit = Legit::connect(addr).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = preface();
    if stream_id != 0 {
        // The stream the frames are for: a request whose body never ends.
        frame(&mut out, HEADERS, END_HEADERS, stream_id, GET_BLOCK);
    }
    for _ in 0..count {
        frame(&mut out, kind, flags, stream_id, payload);
    }
    // The server may stop reading (its answers are not read) or close.
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&out)).await;
    legit.served().await;
    drop(stream);
    legit.served().await;
}

#[tokio::test]
async fn a_ping_flood_leaves_other_clients_served() {
    const PING: u8 = 0x6;
    flood(PING, 0, 0, &[0u8; 8], 100_000).await;
}

#[tokio::test]
async fn a_settings_flood_leaves_other_clients_served() {
    // SETTINGS_MAX_CONCURRENT_STREAMS = 100, over and over.
    flood(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100], 100_000).await;
}

#[tokio::test]
async fn an_empty_data_flood_leaves_other_clients_served() {
    const DATA: u8 = 0x0;
    flood(DATA, 0, 1, &[], 100_000).await;
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | u8::try_from(value).unwrap());
        return;
    }
    out.push(first | u8::try_from(max).unwrap());
    value -= max;
    while value >= 128 {
        out.push(u8::try_from(value % 128).unwrap() | 0x80);
        value /= 128;
    }
    out.push(u8::try_from(value).unwrap());
}

#[tokio::test]
async fn a_header_list_over_the_limit_is_refused_and_the_connection_lives() {
    const REFUSED_STREAM: u32 = 0x7;
    const DATA: u8 = 0x0;
    let addr = server(HttpConfig::default());
    let mut legit = Legit::connect(addr).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Two literal fields of 35,000 bytes: a 70 KB list, over the 64 KiB
    // limit, in five frames (within h2's CONTINUATION bound).
    let mut block = GET_BLOCK.to_vec();
    for name in [b'x', b'y'] {
        block.extend_from_slice(&[0x00, 0x01, name]);
        hpack_int(&mut block, 0, 7, 35_000);
        block.extend(std::iter::repeat_n(b'v', 35_000));
    }
    let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
    let mut out = preface();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let flags = if last { END_HEADERS } else { 0 };
        if i == 0 {
            frame(&mut out, HEADERS, flags | END_STREAM, 1, chunk);
        } else {
            frame(&mut out, CONTINUATION, flags, 1, chunk);
        }
    }
    // Then a request within the limits on the same connection.
    frame(&mut out, HEADERS, END_STREAM | END_HEADERS, 3, GET_BLOCK);
    stream.write_all(&out).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut buf = Vec::new();
    let (mut refused, mut answered) = (false, false);
    while !(refused && answered) {
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let id = u32::from_be_bytes(buf[5..9].try_into().unwrap()) & 0x7fff_ffff;
            assert_ne!(buf[3], GOAWAY, "the connection was closed");
            // h2 answers `431` itself, a head with no body (the service
            // answers "ok" with one), or resets the stream.
            if buf[3] == RST_STREAM && id == 1 {
                assert_eq!(
                    u32::from_be_bytes(buf[9..13].try_into().unwrap()),
                    REFUSED_STREAM
                );
                refused = true;
            }
            if buf[3] == HEADERS && id == 1 {
                assert_eq!(buf[4] & END_STREAM, END_STREAM, "the service answered");
                refused = true;
            }
            assert!(!(buf[3] == DATA && id == 1), "the service answered");
            if buf[3] == HEADERS && id == 3 {
                answered = true;
            }

            buf.drain(..9 + len);
        }
        if refused && answered {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            other => panic!("refused {refused}, answered {answered}, then {other:?}"),
        }
    }
    legit.served().await;
}
