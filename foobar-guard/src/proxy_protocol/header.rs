//! Parsing PROXY protocol v1 (text) and v2 (binary) headers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub(super) const V1_PREFIX: &[u8] = b"PROXY ";
pub(super) const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header the specification allows, CRLF included.
const V1_MAX: usize = 107;
/// The fixed part of a v2 header.
const V2_FIXED: usize = 16;

/// What the start of a stream holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// More bytes are needed to decide.
    Incomplete,
    /// A complete header of `len` bytes; `client` is `None` for a v1
    /// `UNKNOWN` or a v2 `LOCAL` header (a health check by the proxy itself)
    /// and for address families without an IP address.
    Header {
        len: usize,
        client: Option<SocketAddr>,
    },
    /// The stream does not start with a PROXY header.
    NotProxy,
}

/// Whether `buf` starts with (or is the start of) a PROXY signature.
pub(crate) fn starts_like_proxy(buf: &[u8]) -> Option<bool> {
    let is_prefix = |signature: &[u8]| {
        let n = buf.len().min(signature.len());
        buf[..n] == signature[..n]
    };
    if buf.starts_with(V1_PREFIX) || buf.starts_with(V2_SIGNATURE) {
        Some(true)
    } else if is_prefix(V1_PREFIX) || is_prefix(V2_SIGNATURE) {
        None
    } else {
        Some(false)
    }
}

/// Parses the header at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, &'static str> {
    match starts_like_proxy(buf) {
        None => Ok(Parsed::Incomplete),
        Some(false) => Ok(Parsed::NotProxy),
        Some(true) if buf.starts_with(V1_PREFIX) => parse_v1(buf),
        Some(true) => parse_v2(buf),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, &'static str> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err("v1 header without CRLF in its first 107 bytes")
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line =
        std::str::from_utf8(&buf[V1_PREFIX.len()..end]).map_err(|_| "v1 header is not ASCII")?;
    let mut fields = line.split(' ');
    let protocol = fields.next().unwrap_or_default();
    let len = end + 2;
    if protocol == "UNKNOWN" {
        return Ok(Parsed::Header { len, client: None });
    }
    let (Some(src), Some(_dst), Some(src_port), Some(_dst_port), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err("v1 header must have protocol, two addresses and two ports");
    };
    let ip: IpAddr = match protocol {
        "TCP4" => IpAddr::V4(
            src.parse::<Ipv4Addr>()
                .map_err(|_| "bad v1 IPv4 source address")?,
        ),
        "TCP6" => IpAddr::V6(
            src.parse::<Ipv6Addr>()
                .map_err(|_| "bad v1 IPv6 source address")?,
        ),
        _ => return Err("v1 protocol must be TCP4, TCP6 or UNKNOWN"),
    };
    let port = parse_port(src_port).ok_or("bad v1 source port")?;
    parse_port(_dst_port).ok_or("bad v1 destination port")?;
    Ok(Parsed::Header {
        len,
        client: Some(SocketAddr::new(ip, port)),
    })
}

/// A decimal port without sign or leading zeros, as v1 requires.
fn parse_port(field: &str) -> Option<u16> {
    if field.is_empty()
        || (field.len() > 1 && field.starts_with('0'))
        || !field.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    field.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, &'static str> {
    if buf.len() < V2_FIXED {
        return Ok(Parsed::Incomplete);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err("v2 header with a version other than 2");
    }
    let family = buf[13];
    let payload = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = V2_FIXED + payload;
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let body = &buf[V2_FIXED..len];
    match version_command & 0x0f {
        // LOCAL: the proxy's own connection (health check); keep the peer.
        0x0 => return Ok(Parsed::Header { len, client: None }),
        0x1 => {}
        _ => return Err("v2 header with an unknown command"),
    }
    let client = match family >> 4 {
        0x1 => {
            let addresses: &[u8; 12] = body
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or("v2 IPv4 address block too short")?;
            let ip = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
            let port = u16::from_be_bytes([addresses[8], addresses[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        0x2 => {
            let addresses: &[u8; 36] = body
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or("v2 IPv6 address block too short")?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addresses[..16]);
            let port = u16::from_be_bytes([addresses[32], addresses[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // UNSPEC and UNIX: no IP address to record.
        0x0 | 0x3 => None,
        _ => return Err("v2 header with an unknown address family"),
    };
    Ok(Parsed::Header { len, client })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        header.extend_from_slice(body);
        header
    }

    #[test]
    fn v1_headers() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
        assert_eq!(
            parse(h),
            Ok(Parsed::Header {
                len: h.len() - 5,
                client: Some("192.0.2.1:56324".parse().unwrap())
            })
        );
        let h6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert!(
            matches!(parse(h6), Ok(Parsed::Header { client: Some(a), .. }) if a.ip() == "2001:db8::1".parse::<IpAddr>().unwrap())
        );
        assert!(matches!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Parsed::Header {
                client: None,
                len: 15
            })
        ));
        assert_eq!(parse(b"PROXY TCP4 192.0.2.1"), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"POST / HTTP/1.1\r\n"), Ok(Parsed::NotProxy));
        assert!(parse(b"PROXY TCP4 300.0.0.1 1.1.1.1 1 2\r\n").is_err());
        assert!(parse(b"PROXY TCP4 1.1.1.1 1.1.1.1 01 2\r\n").is_err());
        assert!(parse(b"PROXY UDP4 1.1.1.1 1.1.1.1 1 2\r\n").is_err());
        assert!(parse(&[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(20)).is_err());
    }

    #[test]
    fn v2_headers() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2];
        body.extend_from_slice(&56324u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        body.extend_from_slice(&[0x03, 0x00, 0x01, 0xff]); // a TLV, ignored
        let h = v2(1, 0x11, &body);
        assert_eq!(
            parse(&h),
            Ok(Parsed::Header {
                len: h.len(),
                client: Some("192.0.2.1:56324".parse().unwrap())
            })
        );
        assert_eq!(parse(&h[..h.len() - 1]), Ok(Parsed::Incomplete));
        let local = v2(0, 0x00, &[]);
        assert_eq!(
            parse(&local),
            Ok(Parsed::Header {
                len: 16,
                client: None
            })
        );
        let mut body6 = [0u8; 36].to_vec();
        body6[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body6[32..34].copy_from_slice(&8080u16.to_be_bytes());
        assert!(
            matches!(parse(&v2(1, 0x21, &body6)), Ok(Parsed::Header { client: Some(a), .. }) if a.port() == 8080)
        );
        assert!(parse(&v2(1, 0x11, &[1, 2, 3])).is_err());
        assert!(parse(&v2(5, 0x11, &body)).is_err());
        let mut bad_version = v2(1, 0x11, &body);
        bad_version[12] = 0x11;
        assert!(parse(&bad_version).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        const ALPHABET: &[u8] = b"0123456789.: TCP46UNKNOWN\r\n";
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let mut buf = match rng.random_range(0..3) {
                0 => V1_PREFIX.to_vec(),
                1 => V2_SIGNATURE.to_vec(),
                _ => Vec::new(),
            };
            let len = rng.random_range(0..64);
            buf.extend((0..len).map(|_| {
                // Mostly header-like bytes, so parsing gets past the start.
                if rng.random_bool(0.5) {
                    ALPHABET[rng.random_range(0..ALPHABET.len())]
                } else {
                    rng.random()
                }
            }));
            let _ = parse(&buf);
        }
    }
}
