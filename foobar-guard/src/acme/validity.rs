//! The validity period of an X.509 certificate, read from its DER.

use std::time::{Duration, SystemTime};

/// When a certificate starts and stops being valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

impl Validity {
    /// Reads `validity` from a DER certificate; `None` if it is not one.
    pub(crate) fn of(der: &[u8]) -> Option<Self> {
        let fields = crate::der::CertFields::parse(der)?;
        Some(Self {
            not_before: fields.not_before,
            not_after: fields.not_after,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

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
