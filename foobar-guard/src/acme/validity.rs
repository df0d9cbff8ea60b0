//! The validity period of an X.509 certificate, read from its DER.
//!
//! Only the few fields in front of `validity` are walked; nothing else of
//! the certificate is interpreted (rustls and webpki check the rest).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When a certificate starts and stops being valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

impl Validity {
    /// Reads `validity` from a DER certificate; `None` if it is not one.
    pub(crate) fn of(der: &[u8]) -> Option<Self> {
        let (certificate, _) = element(der, 0x30)?;
        let (mut tbs, _) = element(certificate, 0x30)?;
        // version [0] EXPLICIT, optional
        if tbs.first() == Some(&0xa0) {
            tbs = element(tbs, 0xa0)?.1;
        }
        let tbs = element(tbs, 0x02)?.1; // serialNumber
        let tbs = element(tbs, 0x30)?.1; // signature
        let tbs = element(tbs, 0x30)?.1; // issuer
        let (validity, _) = element(tbs, 0x30)?;
        let (not_before, rest) = time(validity)?;
        let (not_after, _) = time(rest)?;
        Some(Self {
            not_before,
            not_after,
        })
    }

    /// The whole validity period.
    pub(crate) fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// When a third of the validity period remains.
    pub(crate) fn renewal_due(&self) -> SystemTime {
        self.not_after - self.lifetime() / 3
    }
}

/// One DER element of type `tag`: its contents and what follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let octets = usize::from(first & 0x7f);
        if octets == 0 || octets > 4 || rest.len() < octets {
            return None;
        }
        let (bytes, rest) = rest.split_at(octets);
        let length = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (length, rest)
    };
    if rest.len() < length {
        return None;
    }
    Some(rest.split_at(length))
}

/// A UTCTime or GeneralizedTime, in UTC (`Z`), as RFC 5280 requires.
fn time(input: &[u8]) -> Option<(SystemTime, &[u8])> {
    let tag = *input.first()?;
    let (text, rest) = element(input, tag)?;
    let text = std::str::from_utf8(text).ok()?;
    let text = text.strip_suffix('Z')?;
    let (year, text) = match tag {
        0x17 => {
            let yy: i64 = digits(text.get(..2)?)?;
            // RFC 5280: 50..=99 are 19xx, 00..=49 are 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        0x18 => (digits(text.get(..4)?)?, &text[4..]),
        _ => return None,
    };
    if text.len() != 10 {
        return None;
    }
    let month = digits(&text[0..2])?;
    let day = digits(&text[2..4])?;
    let hour = digits(&text[4..6])?;
    let minute = digits(&text[6..8])?;
    let second = digits(&text[8..10])?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_validity_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["v.test".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 2, 29);
        params.not_after = rcgen::date_time_ymd(2051, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let validity = Validity::of(cert.der()).unwrap();
        // 2024-02-29T00:00:00Z and 2051-01-01 (a GeneralizedTime).
        assert_eq!(
            validity.not_before,
            UNIX_EPOCH + Duration::from_secs(1_709_164_800)
        );
        assert_eq!(
            validity.not_after,
            UNIX_EPOCH + Duration::from_secs(2_556_144_000)
        );
        let third = validity.lifetime() / 3;
        assert_eq!(validity.renewal_due(), validity.not_after - third);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(Validity::of(b""), None);
        assert_eq!(Validity::of(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(Validity::of(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
    }
}
