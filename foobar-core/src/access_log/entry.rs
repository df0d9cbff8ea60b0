//! One request as the access log records it, and its two line formats.

use std::borrow::Cow;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, StatusCode, Uri, Version};
use serde::Serialize;

use super::time::{write_common_log, write_rfc3339};
use crate::conn::TlsInfo;

/// The line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// One JSON object per line, with every field (see the
    /// [module docs](super)).
    #[default]
    Json,
    /// nginx's `combined` format.
    Combined,
}

/// One request, as recorded. Lines are written from it on the writer's
/// thread.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Entry {
    /// When the request arrived.
    pub time: SystemTime,
    /// The client address, when the server recorded one.
    pub client: Option<IpAddr>,
    /// The request method.
    pub method: Method,
    /// The request target (path and query).
    pub uri: Uri,
    /// The HTTP version.
    pub protocol: Version,
    /// The response status.
    pub status: StatusCode,
    /// The request body's declared length; `None` for a streamed upload of
    /// unknown length.
    pub bytes_in: Option<u64>,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// From the request's arrival to the end of the response body.
    pub duration: Duration,
    /// The upstream a proxy chose, if any.
    pub upstream: Option<Arc<str>>,
    /// The request id (`x-request-id`).
    pub request_id: Option<HeaderValue>,
    /// What the TLS handshake learned, on a TLS connection.
    pub tls: Option<Arc<TlsInfo>>,
    /// The `Referer` header.
    pub referer: Option<HeaderValue>,
    /// The `User-Agent` header.
    pub user_agent: Option<HeaderValue>,
}

/// The JSON object of one line.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    client: Option<IpAddr>,
    method: &'a str,
    path: Cow<'a, str>,
    protocol: &'static str,
    status: u16,
    bytes_in: Option<u64>,
    bytes_out: u64,
    duration_ms: f64,
    upstream: Option<&'a str>,
    request_id: Option<Cow<'a, str>>,
    tls_version: Option<&'static str>,
    sni: Option<&'a str>,
    referer: Option<Cow<'a, str>>,
    user_agent: Option<Cow<'a, str>>,
}

fn text(value: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}

/// The protocol as a request line names it.
pub(super) fn protocol_name(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

fn tls_version_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        rustls::ProtocolVersion::TLSv1_1 => "TLSv1.1",
        rustls::ProtocolVersion::TLSv1_0 => "TLSv1.0",
        _ => "unknown",
    }
}

impl Entry {
    /// The request target as logged: path and query, `/` when absent.
    pub fn path(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }

    /// The negotiated TLS version (`TLSv1.3`), on a TLS connection.
    pub fn tls_version(&self) -> Option<&'static str> {
        let version = self.tls.as_ref()?.protocol_version?;
        Some(tls_version_name(version))
    }

    /// The server name the client asked for (SNI), on a TLS connection.
    pub fn sni(&self) -> Option<&str> {
        self.tls.as_ref()?.server_name.as_deref()
    }

    /// Appends this entry's line (with its newline) in `format` to `out`.
    pub fn write_line(&self, format: Format, out: &mut Vec<u8>) {
        match format {
            Format::Json => self.write_json(out),
            Format::Combined => self.write_combined(out),
        }
        out.push(b'\n');
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        let mut time = Vec::with_capacity(24);
        write_rfc3339(&mut time, self.time);
        let line = JsonLine {
            time: std::str::from_utf8(&time).unwrap_or_default(),
            client: self.client,
            method: self.method.as_str(),
            path: Cow::Borrowed(self.path()),
            protocol: protocol_name(self.protocol),
            status: self.status.as_u16(),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration_ms: self.duration.as_secs_f64() * 1000.0,
            upstream: self.upstream.as_deref(),
            request_id: self.request_id.as_ref().map(text),
            tls_version: self.tls_version(),
            sni: self.sni(),
            referer: self.referer.as_ref().map(text),
            user_agent: self.user_agent.as_ref().map(text),
        };
        // Serialising plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &line);
    }

    fn write_combined(&self, out: &mut Vec<u8>) {
        match self.client {
            Some(client) => {
                let _ = write!(out, "{client}");
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" - - [");
        write_common_log(out, self.time);
        out.extend_from_slice(b"] \"");
        escape(out, self.method.as_str().as_bytes());
        out.push(b' ');
        escape(out, self.path().as_bytes());
        out.push(b' ');
        out.extend_from_slice(protocol_name(self.protocol).as_bytes());
        let _ = write!(out, "\" {} {} \"", self.status.as_u16(), self.bytes_out);
        quoted_or_dash(out, self.referer.as_ref());
        out.extend_from_slice(b"\" \"");
        quoted_or_dash(out, self.user_agent.as_ref());
        out.push(b'"');
    }
}

fn quoted_or_dash(out: &mut Vec<u8>, value: Option<&HeaderValue>) {
    match value {
        Some(value) => escape(out, value.as_bytes()),
        None => out.push(b'-'),
    }
}

/// nginx's default log escaping: `"`, `\` and bytes outside printable
/// ASCII become `\xHH`, so a client cannot forge fields or lines.
fn escape(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn entry() -> Entry {
        Entry {
            time: UNIX_EPOCH + Duration::from_secs(1_796_394_375),
            client: Some("192.0.2.7".parse().unwrap()),
            method: Method::POST,
            uri: "/entries?x=1".parse().unwrap(),
            protocol: Version::HTTP_2,
            status: StatusCode::CREATED,
            bytes_in: Some(42),
            bytes_out: 1234,
            duration: Duration::from_micros(1500),
            upstream: Some("https://web1:8443".into()),
            request_id: Some(HeaderValue::from_static("abc-1")),
            tls: Some(Arc::new(TlsInfo {
                server_name: Some("www.foobar.test".into()),
                protocol_version: Some(rustls::ProtocolVersion::TLSv1_3),
                ..TlsInfo::default()
            })),
            referer: None,
            user_agent: Some(HeaderValue::from_static("curl/8 \"x\"")),
        }
    }

    #[test]
    fn combined_is_nginx_combined_with_escaping() {
        let mut out = Vec::new();
        entry().write_line(Format::Combined, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.7 - - [04/Dec/2026:14:26:15 +0000] \"POST /entries?x=1 HTTP/2.0\" 201 1234 \"-\" \"curl/8 \\x22x\\x22\"\n"
        );
    }

    #[test]
    fn json_has_every_field() {
        let mut out = Vec::new();
        entry().write_line(Format::Json, &mut out);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["time"], "2026-12-04T14:26:15.000Z");
        assert_eq!(value["client"], "192.0.2.7");
        assert_eq!(value["status"], 201);
        assert_eq!(value["bytes_in"], 42);
        assert_eq!(value["duration_ms"], 1.5);
        assert_eq!(value["tls_version"], "TLSv1.3");
        assert_eq!(value["sni"], "www.foobar.test");
        assert_eq!(value["upstream"], "https://web1:8443");
        assert_eq!(value["request_id"], "abc-1");
        assert_eq!(value["referer"], serde_json::Value::Null);
        assert_eq!(value["protocol"], "HTTP/2.0");
    }
}
