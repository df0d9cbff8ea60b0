//! The OCSP request for a certificate (RFC 6960, 4.1).

use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};

use crate::der::{self, CertFields, INTEGER, OCTET_STRING, SEQUENCE};

/// sha1 (1.3.14.3.2.26) with NULL parameters.
const SHA1_ALGORITHM: &[u8] = &[
    0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00,
];
/// The OID alone, for matching (parameters may be absent in responses).
const SHA1_OID: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];

/// Which certificate a request or response is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertId {
    name_hash: Vec<u8>,
    key_hash: Vec<u8>,
    serial: Vec<u8>,
}

impl CertId {
    /// The CertID of `leaf`, issued by `issuer` (SHA-1, as every
    /// responder supports).
    pub(crate) fn new(leaf: &CertFields<'_>, issuer: &CertFields<'_>) -> Self {
        Self {
            name_hash: digest(&SHA1_FOR_LEGACY_USE_ONLY, leaf.issuer)
                .as_ref()
                .to_vec(),
            key_hash: digest(&SHA1_FOR_LEGACY_USE_ONLY, issuer.public_key)
                .as_ref()
                .to_vec(),
            serial: leaf.serial.to_vec(),
        }
    }

    /// Reads a CertID (the SEQUENCE's contents); `None` if it is not one
    /// or uses another hash than SHA-1.
    pub(crate) fn parse(contents: &[u8]) -> Option<Self> {
        let (algorithm, rest) = der::element(contents, SEQUENCE)?;
        let (oid, _) = der::element(algorithm, der::OID)?;
        if oid != SHA1_OID {
            return None;
        }
        let (name_hash, rest) = der::element(rest, OCTET_STRING)?;
        let (key_hash, rest) = der::element(rest, OCTET_STRING)?;
        let (serial, _) = der::element(rest, INTEGER)?;
        Some(Self {
            name_hash: name_hash.to_vec(),
            key_hash: key_hash.to_vec(),
            serial: serial.to_vec(),
        })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut contents = SHA1_ALGORITHM.to_vec();
        contents.extend(der::write(OCTET_STRING, &self.name_hash));
        contents.extend(der::write(OCTET_STRING, &self.key_hash));
        contents.extend(der::write(INTEGER, &self.serial));
        der::write(SEQUENCE, &contents)
    }

    /// `OCSPRequest { tbsRequest { requestList { Request { reqCert } } } }`,
    /// unsigned and without a nonce (responses are then cacheable, as
    /// stapling wants).
    pub(crate) fn request(&self) -> Vec<u8> {
        let request = der::write(SEQUENCE, &self.encode());
        let list = der::write(SEQUENCE, &request);
        let tbs = der::write(SEQUENCE, &list);
        der::write(SEQUENCE, &tbs)
    }
}
