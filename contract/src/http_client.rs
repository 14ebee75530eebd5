//! One way to build the HTTP client of a walshard process (feature `client`): with exactly the
//! settings asked for, or an error (never a default client that silently drops them).

use std::sync::Arc;
use std::time::Duration;

/// The settings of a client; `None` keeps reqwest's default. `TCP_NODELAY` is always on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// Timeout of a whole request.
    pub timeout: Option<Duration>,
    /// Timeout of establishing a connection.
    pub connect_timeout: Option<Duration>,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: Option<usize>,
    /// The fleet's certificate authority: when set, it is the only authority trusted for
    /// `https://` URLs (the public web's roots are not).
    pub trust: Option<TrustedCa>,
}

/// The HTTP client could not be built (TLS or resolver setup failed).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// reqwest refused the settings.
    #[error("cannot build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
    /// A CA to trust is not PEM certificates.
    #[error("not a PEM certificate: {0}")]
    NotACertificate(String),
}

/// A CA certificate (PEM) that a client trusts, checked to parse when it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedCa {
    pem: Arc<[u8]>,
}

impl TrustedCa {
    /// The CA in `pem`, or an error if it is not a PEM certificate.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ClientError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut count = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            cert.map_err(|e| ClientError::NotACertificate(e.to_string()))?;
            count += 1;
        }
        if count == 0 {
            return Err(ClientError::NotACertificate("no certificate in it".into()));
        }
        Ok(TrustedCa { pem: pem.into() })
    }

    /// The certificate as PEM.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

impl ClientSettings {
    /// The client with these settings.
    pub fn build(&self) -> Result<reqwest::Client, ClientError> {
        let mut builder = reqwest::Client::builder().tcp_nodelay(true);
        if let Some(t) = self.timeout {
            builder = builder.timeout(t);
        }
        if let Some(t) = self.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        if let Some(n) = self.pool_max_idle_per_host {
            builder = builder.pool_max_idle_per_host(n);
        }
        if let Some(ca) = &self.trust {
            builder = builder.tls_certs_only([reqwest::Certificate::from_pem(&ca.pem)?]);
        }
        Ok(builder.build()?)
    }
}
