//! A fleet's own certificate authority: generated once (by `walshard up --tls` or the operator),
//! then used to issue the certificates the fleet's processes serve with.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::TlsError;

/// How long a generated authority is valid.
const AUTHORITY_VALIDITY: Duration = Duration::days(3650);
/// How long an issued certificate is valid.
pub const CERTIFICATE_VALIDITY: Duration = Duration::days(825);
/// Back-dating of `not_before`, for clocks slightly behind the issuer's.
const CLOCK_SKEW: Duration = Duration::hours(1);

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

/// A certificate authority that can issue certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pair: PemPair,
}

impl Authority {
    /// A new self-signed authority named `name` (ECDSA P-256, valid ten years).
    pub fn generate(name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + AUTHORITY_VALIDITY;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            pair: PemPair {
                cert: cert.pem(),
                key: key.serialize_pem(),
            },
        })
    }

    /// An authority kept earlier (its certificate and key, PEM).
    pub fn from_pem(pair: PemPair) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(&pair.key)?;
        Issuer::from_ca_cert_pem(&pair.cert, key)?;
        Ok(Authority { pair })
    }

    /// The authority's certificate and key.
    pub fn pem(&self) -> &PemPair {
        &self.pair
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid 825 days.
    pub fn issue(&self, common_name: &str, names: &[String]) -> Result<PemPair, TlsError> {
        let issuer = Issuer::from_ca_cert_pem(&self.pair.cert, KeyPair::from_pem(&self.pair.key)?)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CERTIFICATE_VALIDITY;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(PemPair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
