//! Development certificates: a private CA and leaf certificates made at run
//! time, for tests and examples. Never use them in production.

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SignatureAlgorithm,
};
use rustls_pki_types::CertificateDer;

use super::error::TlsError;
use super::{ClientTls, Identity};

type Result<T, E = TlsError> = std::result::Result<T, E>;

/// The kind of key a development certificate gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256 (the default: small and fast).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA, 2048 bits, PKCS#1 v1.5 signatures with SHA-256.
    Rsa2048,
}

impl KeyKind {
    fn generate(self) -> Result<KeyPair> {
        let alg: &'static SignatureAlgorithm = match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        };
        Ok(KeyPair::generate_for(alg)?)
    }
}

/// A private certificate authority for tests and examples.
///
/// It issues server certificates for DNS names (wildcards included) and IP
/// addresses, and client certificates for mutual TLS. Everything is in
/// memory; [`write_pem`](Self::write_pem) and [`DevCert::write_pem`] put
/// files on disk for code that loads PEM files.
///
/// ```
/// use foobar_core::tls::{DevCa, Identity, KeyKind};
///
/// let ca = DevCa::new()?;
/// let www = ca.server_cert(["www.foobar.com", "*.foobar.com", "127.0.0.1"])?;
/// let rsa = ca.server_cert_with(KeyKind::Rsa2048, ["legacy.foobar.com"])?;
/// let lb = ca.client_cert("lb")?;
///
/// let dir = std::env::temp_dir().join(format!("foobar-dev-ca-doc-{}", std::process::id()));
/// let files = www.write_pem(&dir, "www")?;
/// let identity = Identity::from_pem_files(&files.cert, &files.key)?;
/// assert_eq!(identity.end_entity(), www.cert_der());
/// # let _ = (rsa, lb);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), foobar_core::tls::TlsError>(())
/// ```
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl DevCa {
    /// A new CA named "foobar development CA", with an ECDSA P-256 key.
    ///
    /// # Errors
    /// [`TlsError::DevCert`] if the key or certificate cannot be made.
    pub fn new() -> Result<Self> {
        Self::with_name("foobar development CA")
    }

    /// A new CA with this common name (to tell several CAs apart).
    ///
    /// # Errors
    /// [`TlsError::DevCert`] if the key or certificate cannot be made.
    pub fn with_name(common_name: &str) -> Result<Self> {
        let key = KeyKind::EcdsaP256.generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate in PEM: what clients (or an mTLS server) trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A [`ClientTls`] that trusts this CA.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls::new().ca_der(self.cert_der.clone())
    }

    /// Issues a server certificate (ECDSA P-256) for these names: DNS names
    /// (`www.foobar.com`, `*.foobar.com`) and IP addresses (`127.0.0.1`,
    /// `::1`). The first name is also the common name.
    ///
    /// # Errors
    /// [`TlsError::DevCert`] if a name is not a valid DNS name or IP address.
    pub fn server_cert<N: AsRef<str>>(
        &self,
        names: impl IntoIterator<Item = N>,
    ) -> Result<DevCert> {
        self.server_cert_with(KeyKind::default(), names)
    }

    /// Issues a server certificate with a key of the given kind.
    ///
    /// # Errors
    /// [`TlsError::DevCert`] if a name is not a valid DNS name or IP address,
    /// or the key cannot be made.
    pub fn server_cert_with<N: AsRef<str>>(
        &self,
        kind: KeyKind,
        names: impl IntoIterator<Item = N>,
    ) -> Result<DevCert> {
        let names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_owned()).collect();
        let Some(first) = names.first().cloned() else {
            return Err(TlsError::NoCertificateName);
        };
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = name(&first);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, kind)
    }

    /// Issues a client certificate (ECDSA P-256) with this common name, for
    /// mutual TLS.
    ///
    /// # Errors
    /// [`TlsError::DevCert`] if the key or certificate cannot be made.
    pub fn client_cert(&self, common_name: &str) -> Result<DevCert> {
        self.client_cert_with(KeyKind::default(), common_name)
    }

    /// Issues a client certificate with a key of the given kind.
    ///
    /// When the common name is a valid DNS name (`lb.internal`,
    /// `foobar-lb`) it is also the certificate's DNS subject alternative
    /// name, which is what servers match allowed client names against.
    ///
    /// # Errors
    /// [`TlsError::DevCert`] if the key or certificate cannot be made.
    pub fn client_cert_with(&self, kind: KeyKind, common_name: &str) -> Result<DevCert> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        if rustls_pki_types::DnsName::try_from(common_name).is_ok() {
            if let Ok(dns) = rcgen::string::Ia5String::try_from(common_name) {
                params.subject_alt_names = vec![rcgen::SanType::DnsName(dns)];
            }
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, kind)
    }

    fn issue(&self, mut params: CertificateParams, kind: KeyKind) -> Result<DevCert> {
        params.use_authority_key_identifier_extension = true;
        params.key_usages = match kind {
            KeyKind::Rsa2048 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            _ => vec![KeyUsagePurpose::DigitalSignature],
        };
        let key = kind.generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(DevCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        })
    }

    /// Writes the CA certificate to `dir/ca.pem` (creating `dir`) and
    /// returns the path.
    ///
    /// # Errors
    /// [`TlsError::WriteFile`] naming the path that could not be written.
    pub fn write_pem(&self, dir: impl AsRef<Path>) -> Result<PathBuf> {
        let path = dir.as_ref().join("ca.pem");
        write(&path, &self.cert_pem)?;
        Ok(path)
    }
}

impl fmt::Debug for DevCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn write(path: &Path, contents: &str) -> Result<()> {
    let io = |source| TlsError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Write beside and rename, so a reader never sees half a file.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// A certificate issued by a [`DevCa`], with its private key.
#[derive(Clone)]
pub struct DevCert {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
}

/// Where [`DevCert::write_pem`] put the files.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DevCertFiles {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8).
    pub key: PathBuf,
}

impl DevCert {
    /// The certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The certificate and key as an [`Identity`].
    ///
    /// # Errors
    /// Never for a certificate made by [`DevCa`]; the `Result` is that of
    /// [`Identity::from_pem`].
    pub fn identity(&self) -> Result<Identity> {
        Identity::from_pem(self.cert_pem.as_bytes(), self.key_pem.as_bytes())
    }

    /// Writes `dir/<stem>.crt` and `dir/<stem>.key` (creating `dir`), each
    /// replaced atomically, and returns their paths.
    ///
    /// # Errors
    /// [`TlsError::WriteFile`] naming the path that could not be written.
    pub fn write_pem(&self, dir: impl AsRef<Path>, stem: &str) -> Result<DevCertFiles> {
        let dir = dir.as_ref();
        let files = DevCertFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        write(&files.cert, &self.cert_pem)?;
        write(&files.key, &self.key_pem)?;
        Ok(files)
    }
}

impl fmt::Debug for DevCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("DevCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}
