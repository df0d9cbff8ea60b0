//! Reading and checking an OCSP response before it is stapled.

use std::time::{Duration, SystemTime};

use super::request::CertId;
use crate::der::{self, ENUMERATED, GENERALIZED_TIME, OCTET_STRING, SEQUENCE};

/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1).
const BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// Clock difference tolerated between this server and the responder.
const SKEW: Duration = Duration::from_secs(300);

/// What the responder says about the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertStatus {
    /// Not revoked.
    Good,
    /// Revoked; stapled as it is, so clients refuse the certificate.
    Revoked,
}

/// A response that may be stapled now.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    pub(crate) status: CertStatus,
    pub(crate) this_update: SystemTime,
    /// When it stops being valid: its `nextUpdate`, or a day after
    /// `thisUpdate` without one.
    pub(crate) expires: SystemTime,
}

impl Checked {
    /// When to fetch a new one: halfway through its validity.
    pub(crate) fn refresh_at(&self) -> SystemTime {
        let lifetime = self
            .expires
            .duration_since(self.this_update)
            .unwrap_or_default();
        self.this_update + lifetime / 2
    }
}

/// Why a response is not stapled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseProblem {
    /// Not DER, or not the structure RFC 6960 defines.
    #[error("malformed OCSP response")]
    Malformed,
    /// The responder answered with an error status (1 malformedRequest,
    /// 2 internalError, 3 tryLater, 5 sigRequired, 6 unauthorized).
    #[error("the responder answered with status {0}")]
    NotSuccessful(u8),
    /// No single response in it is about this certificate.
    #[error("the response is about another certificate")]
    Mismatched,
    /// The responder does not know the certificate.
    #[error("the responder does not know the certificate")]
    Unknown,
    /// `thisUpdate` is in the future.
    #[error("the response is not valid yet")]
    NotYetValid,
    /// `nextUpdate` has passed.
    #[error("the response has expired")]
    Expired,
}

/// Checks that `response` is a successful basic response about `id`,
/// valid at `now`. The signature is the client's to verify (it trusts
/// the issuer, this server does not need to).
pub(crate) fn check(
    response: &[u8],
    id: &CertId,
    now: SystemTime,
) -> Result<Checked, ResponseProblem> {
    use ResponseProblem::Malformed;
    let (outer, _) = der::element(response, SEQUENCE).ok_or(Malformed)?;
    let (status, rest) = der::element(outer, ENUMERATED).ok_or(Malformed)?;
    match status {
        [0] => {}
        [code] => return Err(ResponseProblem::NotSuccessful(*code)),
        _ => return Err(Malformed),
    }
    let (bytes, _) = der::element(rest, 0xa0).ok_or(Malformed)?;
    let (bytes, _) = der::element(bytes, SEQUENCE).ok_or(Malformed)?;
    let (kind, rest) = der::element(bytes, der::OID).ok_or(Malformed)?;
    if kind != BASIC {
        return Err(Malformed);
    }
    let (basic, _) = der::element(rest, OCTET_STRING).ok_or(Malformed)?;
    let (basic, _) = der::element(basic, SEQUENCE).ok_or(Malformed)?;
    let (data, _) = der::element(basic, SEQUENCE).ok_or(Malformed)?;
    let mut data = data;
    if der::peek(data) == Some(0xa0) {
        data = der::element(data, 0xa0).ok_or(Malformed)?.1; // version
    }
    let tag = der::peek(data).ok_or(Malformed)?;
    let data = der::element(data, tag).ok_or(Malformed)?.1; // responderID
    let data = der::element(data, GENERALIZED_TIME).ok_or(Malformed)?.1; // producedAt
    let (mut responses, _) = der::element(data, SEQUENCE).ok_or(Malformed)?;
    while !responses.is_empty() {
        let (single, rest) = der::element(responses, SEQUENCE).ok_or(Malformed)?;
        responses = rest;
        let (cert_id, single) = der::element(single, SEQUENCE).ok_or(Malformed)?;
        if CertId::parse(cert_id).as_ref() != Some(id) {
            continue;
        }
        let status = match der::peek(single) {
            Some(0x80) => CertStatus::Good,
            Some(0xa1) => CertStatus::Revoked,
            Some(0x82) => return Err(ResponseProblem::Unknown),
            _ => return Err(Malformed),
        };
        let tag = der::peek(single).ok_or(Malformed)?;
        let single = der::element(single, tag).ok_or(Malformed)?.1;
        let (this_update, single) = der::time(single).ok_or(Malformed)?;
        let next_update = match der::peek(single) {
            Some(0xa0) => {
                let (explicit, _) = der::element(single, 0xa0).ok_or(Malformed)?;
                Some(der::time(explicit).ok_or(Malformed)?.0)
            }
            _ => None,
        };
        if this_update > now + SKEW {
            return Err(ResponseProblem::NotYetValid);
        }
        let expires = next_update.unwrap_or(this_update + Duration::from_secs(86_400));
        if expires <= now {
            return Err(ResponseProblem::Expired);
        }
        return Ok(Checked {
            status,
            this_update,
            expires,
        });
    }
    Err(ResponseProblem::Mismatched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::der::{write, BIT_STRING, OID};

    fn cert_id(name: &str) -> CertId {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let fields = crate::der::CertFields::parse(cert.der()).unwrap();
        CertId::new(&fields, &fields)
    }

    /// A successful basic response about `id` (unsigned: the server does
    /// not check signatures).
    fn response(id: &CertId, status: &[u8], this: &str, next: Option<&str>) -> Vec<u8> {
        let mut single = id.encode();
        single.extend_from_slice(status);
        single.extend(write(GENERALIZED_TIME, this.as_bytes()));
        if let Some(next) = next {
            single.extend(write(0xa0, &write(GENERALIZED_TIME, next.as_bytes())));
        }
        let responses = write(SEQUENCE, &write(SEQUENCE, &single));
        let responder = write(0xa2, &write(OCTET_STRING, &[0; 20]));
        let produced = write(GENERALIZED_TIME, this.as_bytes());
        let data = write(SEQUENCE, &[responder, produced, responses].concat());
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let algorithm = write(SEQUENCE, &write(OID, &ecdsa_sha256));
        let basic = write(
            SEQUENCE,
            &[data, algorithm, write(BIT_STRING, &[0])].concat(),
        );
        let bytes = write(
            SEQUENCE,
            &[write(OID, BASIC), write(OCTET_STRING, &basic)].concat(),
        );
        write(
            SEQUENCE,
            &[write(ENUMERATED, &[0]), write(0xa0, &bytes)].concat(),
        )
    }

    const GOOD: &[u8] = &[0x80, 0x00];
    const PAST: &str = "20200101000000Z";
    const FUTURE: &str = "20991231235959Z";

    #[test]
    fn only_a_current_response_about_this_certificate_is_accepted() {
        let id = cert_id("a.test");
        let now = SystemTime::now();
        let good = check(&response(&id, GOOD, PAST, Some(FUTURE)), &id, now).unwrap();
        assert_eq!(good.status, CertStatus::Good);
        assert!(good.refresh_at() > good.this_update && good.refresh_at() < good.expires);
        // revoked [1] { revocationTime }
        let revoked = [&[0xa1, 0x11][..], &write(GENERALIZED_TIME, PAST.as_bytes())].concat();
        let revoked = check(&response(&id, &revoked, PAST, Some(FUTURE)), &id, now).unwrap();
        assert_eq!(revoked.status, CertStatus::Revoked);

        let other = cert_id("b.test");
        let problem = |bytes: Vec<u8>| check(&bytes, &id, now).unwrap_err();
        assert_eq!(
            problem(response(&other, GOOD, PAST, Some(FUTURE))),
            ResponseProblem::Mismatched
        );
        assert_eq!(
            problem(response(&id, GOOD, PAST, Some("20200102000000Z"))),
            ResponseProblem::Expired
        );
        // Without nextUpdate, a day after thisUpdate.
        assert_eq!(
            problem(response(&id, GOOD, PAST, None)),
            ResponseProblem::Expired
        );
        assert_eq!(
            problem(response(&id, GOOD, FUTURE, None)),
            ResponseProblem::NotYetValid
        );
        assert_eq!(
            problem(response(&id, &[0x82, 0x00], PAST, Some(FUTURE))),
            ResponseProblem::Unknown
        );
    }

    #[test]
    fn error_statuses_and_garbage_are_refused() {
        let id = cert_id("a.test");
        let now = SystemTime::now();
        // OCSPResponse { responseStatus tryLater (3) }
        assert_eq!(
            check(&[0x30, 0x03, 0x0a, 0x01, 0x03], &id, now).unwrap_err(),
            ResponseProblem::NotSuccessful(3)
        );
        assert_eq!(
            check(b"", &id, now).unwrap_err(),
            ResponseProblem::Malformed
        );
        assert_eq!(
            check(&[0x30, 0x03, 0x0a, 0x01, 0x00], &id, now).unwrap_err(),
            ResponseProblem::Malformed
        );
        let mut truncated = response(&id, GOOD, PAST, Some(FUTURE));
        truncated.truncate(truncated.len() - 5);
        assert_eq!(
            check(&truncated, &id, now).unwrap_err(),
            ResponseProblem::Malformed
        );
    }
}
