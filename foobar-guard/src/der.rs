//! Just enough DER to read the X.509 fields certificate management needs
//! (validity, serial, issuer, public key, OCSP responder URL) and OCSP
//! responses. Every read is bounds-checked and returns `None` on anything
//! unexpected; nothing here verifies signatures.
// Each of the `acme` and `ocsp` features uses part of it.
#![cfg_attr(not(all(feature = "acme", feature = "ocsp")), allow(dead_code))]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const ENUMERATED: u8 = 0x0a;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;

/// One DER element of type `tag`: its contents and what follows it.
pub(crate) fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (whole, rest) = element_raw(input, tag)?;
    Some((contents(whole)?, rest))
}

/// One DER element of type `tag`, tag and length included, and what
/// follows it.
pub(crate) fn element_raw(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, after_tag) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, after_first) = after_tag.split_first()?;
    let (length, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || after_first.len() < octets {
            return None;
        }
        let length = after_first[..octets]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, 2 + octets)
    };
    let end = header.checked_add(length)?;
    if input.len() < end {
        return None;
    }
    Some(input.split_at(end))
}

/// The contents of a whole element (its header skipped).
fn contents(whole: &[u8]) -> Option<&[u8]> {
    let first = *whole.get(1)?;
    let header = if first < 0x80 {
        2
    } else {
        2 + usize::from(first & 0x7f)
    };
    whole.get(header..)
}

/// The tag of the next element, if any.
pub(crate) fn peek(input: &[u8]) -> Option<u8> {
    input.first().copied()
}

/// Writes a DER element of `tag` around `contents`.
pub(crate) fn write(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let length = contents.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// A UTCTime or GeneralizedTime, in UTC (`Z`), as RFC 5280 requires.
pub(crate) fn time(input: &[u8]) -> Option<(SystemTime, &[u8])> {
    let tag = peek(input)?;
    let (text, rest) = element(input, tag)?;
    let text = std::str::from_utf8(text).ok()?;
    let text = text.strip_suffix('Z')?;
    let (year, text) = match tag {
        0x17 => {
            let yy: i64 = digits(text.get(..2)?)?;
            // RFC 5280: 50..=99 are 19xx, 00..=49 are 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        GENERALIZED_TIME => (digits(text.get(..4)?)?, text.get(4..)?),
        _ => return None,
    };
    // Fractions of a second (allowed in OCSP's GeneralizedTime) are dropped.
    let text = text.split_once('.').map_or(text, |(whole, _)| whole);
    if text.len() != 10 {
        return None;
    }
    let month = digits(&text[0..2])?;
    let day = digits(&text[2..4])?;
    let hour = digits(&text[4..6])?;
    let minute = digits(&text[6..8])?;
    let second = digits(&text[8..10])?;
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 60;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    let at = if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    };
    Some((at, rest))
}

fn digits(text: &str) -> Option<i64> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12; // March = 0
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The fields of a certificate this crate reads.
#[derive(Clone, Debug)]
pub(crate) struct CertFields<'a> {
    /// The serial number's contents (the INTEGER's bytes).
    pub(crate) serial: &'a [u8],
    /// The issuer Name, whole (tag and length included).
    pub(crate) issuer: &'a [u8],
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
    /// The subject public key's bits (the BIT STRING's contents without
    /// its unused-bits octet).
    pub(crate) public_key: &'a [u8],
    /// The extensions' SEQUENCE contents, if any.
    extensions: Option<&'a [u8]>,
}

/// id-pe-authorityInfoAccess (1.3.6.1.5.5.7.1.1).
const AIA: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01];
/// id-ad-ocsp (1.3.6.1.5.5.7.48.1).
const AD_OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];

impl<'a> CertFields<'a> {
    pub(crate) fn parse(der: &'a [u8]) -> Option<Self> {
        let (certificate, _) = element(der, SEQUENCE)?;
        let (mut tbs, _) = element(certificate, SEQUENCE)?;
        if peek(tbs) == Some(0xa0) {
            tbs = element(tbs, 0xa0)?.1; // version
        }
        let (serial, tbs) = element(tbs, INTEGER)?;
        let tbs = element(tbs, SEQUENCE)?.1; // signature
        let (issuer, tbs) = element_raw(tbs, SEQUENCE)?;
        let (validity, tbs) = element(tbs, SEQUENCE)?;
        let (not_before, rest) = time(validity)?;
        let (not_after, _) = time(rest)?;
        let tbs = element(tbs, SEQUENCE)?.1; // subject
        let (spki, mut tbs) = element(tbs, SEQUENCE)?;
        let spki = element(spki, SEQUENCE)?.1; // algorithm
        let (bits, _) = element(spki, BIT_STRING)?;
        let public_key = bits.get(1..)?;
        // issuerUniqueID [1], subjectUniqueID [2], extensions [3]
        let mut extensions = None;
        while let Some(tag) = peek(tbs) {
            let (inner, rest) = element(tbs, tag)?;
            if tag == 0xa3 {
                extensions = Some(element(inner, SEQUENCE)?.0);
            }
            tbs = rest;
        }
        Some(Self {
            serial,
            issuer,
            not_before,
            not_after,
            public_key,
            extensions,
        })
    }

    /// The first OCSP responder URL of the authority information access
    /// extension.
    pub(crate) fn ocsp_url(&self) -> Option<&'a str> {
        let mut extensions = self.extensions?;
        while !extensions.is_empty() {
            let (extension, rest) = element(extensions, SEQUENCE)?;
            extensions = rest;
            let (oid, mut extension) = element(extension, OID)?;
            if oid != AIA {
                continue;
            }
            if peek(extension) == Some(0x01) {
                extension = element(extension, 0x01)?.1; // critical
            }
            let (value, _) = element(extension, OCTET_STRING)?;
            let (mut descriptions, _) = element(value, SEQUENCE)?;
            while !descriptions.is_empty() {
                let (description, rest) = element(descriptions, SEQUENCE)?;
                descriptions = rest;
                let (method, location) = element(description, OID)?;
                // GeneralName uniformResourceIdentifier [6] IA5String
                if method == AD_OCSP && peek(location) == Some(0x86) {
                    let (url, _) = element(location, 0x86)?;
                    return std::str::from_utf8(url).ok();
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["v.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 2, 29);
        params.not_after = rcgen::date_time_ymd(2051, 1, 1);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x12, 0x34]));
        // An AIA extension: OCSP at http://127.0.0.1:9/
        let url = b"http://127.0.0.1:9/";
        let description = write(SEQUENCE, &[write(OID, AD_OCSP), write(0x86, url)].concat());
        let aia = write(SEQUENCE, &description);
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                aia,
            ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let fields = CertFields::parse(cert.der()).unwrap();
        assert_eq!(
            fields.not_before,
            UNIX_EPOCH + Duration::from_secs(1_709_164_800)
        );
        assert_eq!(
            fields.not_after,
            UNIX_EPOCH + Duration::from_secs(2_556_144_000)
        );
        assert_eq!(fields.serial, &[0x12, 0x34]);
        assert_eq!(fields.ocsp_url(), Some("http://127.0.0.1:9/"));
        assert_eq!(fields.public_key, key.public_key_raw());
        assert_eq!(fields.issuer[0], SEQUENCE);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(CertFields::parse(b"").is_none());
        assert!(CertFields::parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(CertFields::parse(&[0x30, 0x03, 0x30, 0x01, 0x02]).is_none());
        assert!(element(&[0x30, 0x80], SEQUENCE).is_none());
    }

    #[test]
    fn writes_long_lengths() {
        let long = write(OCTET_STRING, &[7; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(element(&long, OCTET_STRING).unwrap().0.len(), 300);
    }
}
