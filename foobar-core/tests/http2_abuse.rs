//! HTTP/2 abuse against the server's h2 listener, with hand-built frames:
//! rapid reset (CVE-2023-44487) and CONTINUATION floods end the attacking
//! connection with `GOAWAY`, at the configured limit, and are counted;
//! streams past the concurrency limit are refused; streams whose request
//! body never comes are ended after the body read timeout, freeing their
//! slots; SETTINGS, PING and empty-DATA floods (bounded, their answers
//! never read) do not stop the server. In each, a legitimate HTTP/2 client
//! on its own connection keeps being served.
//!
//! The counters read here are the process's own: the tests take turns
//! ([`SERIAL`]), so that what a counter gained is the test's doing.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use foobar_core::metrics::PrometheusExporter;
use foobar_core::{HttpConfig, RequestBody, Server};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One test at a time: each reads counters that any test's server moves.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GOAWAYS: &str = "foobar_http2_goaways_sent_total";
const BODY_TIMEOUTS: &str = "foobar_request_body_timeouts_total";
const KEEP_ALIVE_TIMEOUTS: &str = "foobar_http2_keep_alive_timeouts_total";

/// The value of counter `name` with exactly `labels` (`key="value"`, as
/// rendered), 0 before it is first counted. Installs the process's
/// recorder on first use.
fn counter(name: &str, labels: &str) -> f64 {
    let exporter = PrometheusExporter::install().expect("the only recorder of this test binary");
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    exporter
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Waits until counter `name` with `labels` has reached `at_least`.
async fn counted(name: &str, labels: &str, at_least: f64) {
    let reached = wait_until(Duration::from_secs(5), || async {
        counter(name, labels) >= at_least
    })
    .await;
    assert!(
        reached,
        "{name} {labels} is {}, not {at_least}",
        counter(name, labels)
    );
}

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
    let _serial = SERIAL.lock().await;
    let calm = r#"reason="enhance_your_calm""#;
    let before = counter(GOAWAYS, calm);
    let addr = server(HttpConfig::default());
    let mut legit = Legit::connect(addr).await;
    legit.served().await;
    for _ in 0..3 {
        assert_eq!(rapid_reset(addr, 1000).await, Some(ENHANCE_YOUR_CALM));
        legit.served().await;
    }
    counted(GOAWAYS, calm, before + 3.0).await;
}

#[tokio::test]
async fn the_rapid_reset_limit_is_configurable() {
    let _serial = SERIAL.lock().await;
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
    let _serial = SERIAL.lock().await;
    let calm = r#"reason="enhance_your_calm""#;
    let before = counter(GOAWAYS, calm);
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
    counted(GOAWAYS, calm, before + 1.0).await;
}

#[tokio::test]
async fn streams_past_the_concurrency_limit_are_refused() {
    const RST_STREAM_KIND: u8 = RST_STREAM;
    let _serial = SERIAL.lock().await;
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
    let _serial = SERIAL.lock().await;
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
    flood(PING, 0, 0, &[0u8; 8], 100_000).await;
}

#[tokio::test]
async fn a_settings_flood_leaves_other_clients_served() {
    // SETTINGS_MAX_CONCURRENT_STREAMS = 100, over and over.
    flood(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100], 100_000).await;
}

#[tokio::test]
async fn an_empty_data_flood_leaves_other_clients_served() {
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
    let _serial = SERIAL.lock().await;
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

#[tokio::test]
async fn a_protocol_error_ends_the_connection_and_is_counted() {
    let _serial = SERIAL.lock().await;
    let protocol = r#"reason="protocol_error""#;
    let before = counter(GOAWAYS, protocol);
    let addr = server(HttpConfig::default());
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = preface();
    // DATA belongs to a stream; on stream 0 it is a connection error.
    frame(&mut out, DATA, 0, 0, b"x");
    stream.write_all(&out).await.unwrap();
    assert_eq!(
        goaway(&mut stream, Duration::from_secs(10)).await,
        Some(PROTOCOL_ERROR)
    );
    counted(GOAWAYS, protocol, before + 1.0).await;
}

/// A frame as read: type, flags, stream, payload.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A hand-driven HTTP/2 client connection that answers the server's
/// keep-alive pings as it reads.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Pings answered so far.
    pings: u32,
}

impl Raw {
    /// Connects and sends the preface, acknowledging the server's SETTINGS
    /// up front so that its stream limit applies to the first streams.
    async fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut out = preface();
        frame(&mut out, SETTINGS, ACK, 0, &[]);
        stream.write_all(&out).await.unwrap();
        Self {
            stream,
            buf: Vec::new(),
            pings: 0,
        }
    }

    async fn send(&mut self, out: &[u8]) {
        self.stream.write_all(out).await.unwrap();
    }

    /// The next frame other than a ping; `None` once the server closed.
    /// Panics at the deadline.
    async fn next(&mut self, deadline: tokio::time::Instant) -> Option<Frame> {
        loop {
            while self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16
                    | usize::from(self.buf[1]) << 8
                    | usize::from(self.buf[2]);
                if self.buf.len() < 9 + len {
                    break;
                }
                let frame = Frame {
                    kind: self.buf[3],
                    flags: self.buf[4],
                    stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff,
                    payload: self.buf[9..9 + len].to_vec(),
                };
                self.buf.drain(..9 + len);
                if frame.kind == PING && frame.flags & ACK == 0 {
                    let mut pong = Vec::new();
                    self::frame(&mut pong, PING, ACK, 0, &frame.payload);
                    self.send(&pong).await;
                    self.pings += 1;
                    continue;
                }
                return Some(frame);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!("no frame before the deadline"),
            }
        }
    }
}

/// A POST for `/` as an HPACK block, like [`GET_BLOCK`].
const POST_BLOCK: &[u8] = &[0x83, 0x86, 0x84, 0x01, 0x01, b'a'];

/// The first byte of a response head that starts `:status: 200` (static
/// table index 8).
const STATUS_200: u8 = 0x88;

/// A server with `config` whose service reads each request body whole
/// ([`read_body`]); its address.
fn reading_server(config: HttpConfig) -> SocketAddr {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .unwrap()
        .http(config)
        .build()
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(tower::service_fn(read_body)));
    addr
}

#[tokio::test]
async fn idle_request_bodies_time_out_and_free_their_streams() {
    const LIMIT: u32 = 4;
    let _serial = SERIAL.lock().await;
    let timeout = Duration::from_millis(300);
    let mut config = HttpConfig::default();
    config.max_concurrent_streams = LIMIT;
    config.body_read_timeout = Some(timeout);
    // Frequent pings, soon fatal if unanswered: the attacking connection
    // lives on only because it answers them.
    config.http2_keep_alive_interval = Some(Duration::from_millis(100));
    config.http2_keep_alive_timeout = Duration::from_secs(1);
    let addr = reading_server(config);
    let before = counter(BODY_TIMEOUTS, "");
    let mut legit = Legit::connect(addr).await;
    legit.served().await;

    // Every slot taken by a request whose body never comes, and one more.
    let mut raw = Raw::connect(addr).await;
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    let idle: Vec<u32> = (0..LIMIT).map(|i| 2 * i + 1).collect();
    let extra = 2 * LIMIT + 1;
    for &id in idle.iter().chain([&extra]) {
        frame(&mut out, HEADERS, END_HEADERS, id, POST_BLOCK);
    }
    raw.send(&out).await;
    legit.served().await;

    // The extra stream is refused; each idle one ends (answered with an
    // error, or reset) once its body has kept the service waiting too long.
    let deadline = started + Duration::from_secs(10);
    let mut ended = Vec::new();
    let mut refused = false;
    while ended.len() < idle.len() || !refused {
        let frame = raw.next(deadline).await.expect("the connection lives");
        assert_ne!(frame.kind, GOAWAY, "the connection was closed: {frame:?}");
        if frame.kind == RST_STREAM && frame.stream == extra {
            assert_eq!(frame.payload, REFUSED_STREAM.to_be_bytes());
            refused = true;
        }
        let end = frame.kind == RST_STREAM
            || (frame.kind == HEADERS && frame.payload.first() != Some(&STATUS_200));
        if end && idle.contains(&frame.stream) && !ended.contains(&frame.stream) {
            assert!(started.elapsed() >= timeout, "ended before the timeout");
            ended.push(frame.stream);
        }
    }
    counted(BODY_TIMEOUTS, "", before + f64::from(LIMIT)).await;

    // Kept alive by its answers to the server's pings.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while raw.pings < 2 {
        let frame = raw.next(deadline).await.expect("the connection lives");
        assert_ne!(frame.kind, GOAWAY, "the connection was closed: {frame:?}");
    }

    // The freed slots take whole requests again, every one answered.
    let mut out = Vec::new();
    let again: Vec<u32> = (0..LIMIT).map(|i| extra + 2 + 2 * i).collect();
    for &id in &again {
        frame(&mut out, HEADERS, END_STREAM | END_HEADERS, id, GET_BLOCK);
    }
    raw.send(&out).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut answered = Vec::new();
    while answered.len() < again.len() {
        let frame = raw.next(deadline).await.expect("the connection lives");
        assert!(
            !(frame.kind == RST_STREAM && again.contains(&frame.stream)),
            "a stream was refused or reset: {frame:?}"
        );
        assert_ne!(frame.kind, GOAWAY, "the connection was closed: {frame:?}");
        if frame.kind == HEADERS && again.contains(&frame.stream) {
            assert_eq!(frame.payload.first(), Some(&STATUS_200), "{frame:?}");
            answered.push(frame.stream);
        }
    }
    legit.served().await;
}

#[tokio::test]
async fn a_slow_request_body_that_keeps_coming_is_served() {
    let _serial = SERIAL.lock().await;
    let mut config = HttpConfig::default();
    config.body_read_timeout = Some(Duration::from_secs(1));
    let addr = reading_server(config);
    let mut raw = Raw::connect(addr).await;
    let mut out = Vec::new();
    frame(&mut out, HEADERS, END_HEADERS, 1, POST_BLOCK);
    raw.send(&out).await;
    // A byte every 200 ms, 1.6 s in all: longer than the timeout, but
    // never silent for that long.
    let started = tokio::time::Instant::now();
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut out = Vec::new();
        let flags = if i == 7 { END_STREAM } else { 0 };
        frame(&mut out, DATA, flags, 1, b"x");
        raw.send(&out).await;
    }
    assert!(started.elapsed() > Duration::from_secs(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = raw.next(deadline).await.expect("the connection lives");
        assert!(
            !(frame.kind == RST_STREAM && frame.stream == 1),
            "the stream was reset: {frame:?}"
        );
        if frame.kind == HEADERS && frame.stream == 1 {
            assert_eq!(frame.payload.first(), Some(&STATUS_200), "{frame:?}");
            break;
        }
    }
}

#[tokio::test]
async fn an_unanswered_keep_alive_ping_ends_the_connection_and_is_counted() {
    let _serial = SERIAL.lock().await;
    let before = counter(KEEP_ALIVE_TIMEOUTS, "");
    let mut config = HttpConfig::default();
    config.http2_keep_alive_interval = Some(Duration::from_millis(100));
    config.http2_keep_alive_timeout = Duration::from_millis(200);
    let addr = server(config);
    let mut legit = Legit::connect(addr).await;
    // A client that reads nothing, so answers no ping.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&preface()).await.unwrap();
    counted(KEEP_ALIVE_TIMEOUTS, "", before + 1.0).await;
    legit.served().await;
}
