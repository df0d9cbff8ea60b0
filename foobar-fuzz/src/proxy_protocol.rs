//! PROXY protocol v1 and v2 headers.
//!
//! The layer reads a header as bytes arrive, so the answer must not depend
//! on how they were split: a prefix of a header is `Incomplete`, never a
//! header or an error, and bytes after it change nothing. A header built
//! from an address announces that address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use foobar_guard::fuzzing::{parse_proxy_header, starts_like_proxy, ProxyHeader};

use crate::Input;

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The outcome, comparable.
fn parse(buf: &[u8]) -> Result<ProxyHeader, String> {
    parse_proxy_header(buf).map_err(|e| e.to_string())
}

fn check_bytes(data: &[u8]) {
    let whole = parse(data);
    match starts_like_proxy(data) {
        Some(false) => assert_eq!(whole, Ok(ProxyHeader::NotProxy)),
        None => assert_eq!(whole, Ok(ProxyHeader::Incomplete)),
        Some(true) => assert_ne!(whole, Ok(ProxyHeader::NotProxy)),
    }
    if let Ok(ProxyHeader::Header { len, .. }) = whole {
        assert!(len <= data.len(), "a header longer than its input");
        assert_eq!(
            parse(&data[..len]),
            whole,
            "the header depends on the bytes after it"
        );
        let cuts: Vec<usize> = if len <= 64 {
            (0..len).collect()
        } else {
            vec![0, 1, 12, 15, 16, len / 2, len - 1]
        };
        for cut in cuts {
            assert_eq!(
                parse(&data[..cut]),
                Ok(ProxyHeader::Incomplete),
                "{cut} bytes of a {len}-byte header"
            );
        }
    }
}

/// A header announcing `client`, built as a proxy writes it.
fn build(input: &mut Input<'_>) -> (Vec<u8>, SocketAddr) {
    let v6 = input.flag();
    let ip = if v6 {
        IpAddr::V6(Ipv6Addr::from(input.array::<16>()))
    } else {
        IpAddr::V4(Ipv4Addr::from(input.array::<4>()))
    };
    let client = SocketAddr::new(ip, input.u16());
    let server_port = input.u16();
    let mut out = Vec::new();
    if input.flag() {
        let (proto, server) = if v6 {
            ("TCP6", "2001:db8::1")
        } else {
            ("TCP4", "192.0.2.1")
        };
        out.extend_from_slice(
            format!(
                "PROXY {proto} {} {server} {} {server_port}\r\n",
                client.ip(),
                client.port()
            )
            .as_bytes(),
        );
    } else {
        let mut body = Vec::new();
        match client.ip() {
            IpAddr::V4(a) => {
                body.extend_from_slice(&a.octets());
                body.extend_from_slice(&[192, 0, 2, 1]);
            }
            IpAddr::V6(a) => {
                body.extend_from_slice(&a.octets());
                body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
            }
        }
        body.extend_from_slice(&client.port().to_be_bytes());
        body.extend_from_slice(&server_port.to_be_bytes());
        // TLVs a proxy may add (ALPN, authority, …): opaque here.
        let tlv_len = usize::from(input.byte());
        let tlvs = input.take(tlv_len);
        body.extend_from_slice(tlvs);
        out.extend_from_slice(V2_SIGNATURE);
        out.push(0x21);
        out.push(if v6 { 0x21 } else { 0x11 });
        out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&body);
    }
    (out, client)
}

pub(crate) fn check(data: &[u8]) {
    let mut input = Input::new(data);
    if input.flag() {
        let (mut header, client) = build(&mut input);
        let len = header.len();
        header.extend_from_slice(input.rest());
        let parsed = parse(&header);
        assert_eq!(
            parsed,
            Ok(ProxyHeader::Header {
                len,
                client: Some(client)
            }),
            "a built header"
        );
        check_bytes(&header);
    } else {
        check_bytes(input.rest());
    }
}
