//! TLS between walshard processes (feature `tls`): the flags a process is given, serving HTTPS
//! with them (certificate files re-read when they change, so a renewed certificate is used
//! without a restart), and the trust a client puts in the fleet's authority.
//!
//! What TLS adds to the bearer token: the traffic between router, agents and control plane is
//! encrypted, and a client talks only to a server holding a certificate of the fleet's authority.
//! Clients are not asked for certificates (the token authenticates them).

pub mod authority;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;

use crate::http_client::{ClientError, TrustedCa};

/// How often served certificate files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(30);
/// How long open connections may finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// TLS flags of a walshard process (`--tls-cert`, `--tls-key`, `--tls-ca`).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsArgs {
    /// PEM certificate (chain) to serve HTTPS with, instead of plain HTTP; needs --tls-key.
    #[arg(long, env = "WALSHARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "WALSHARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate of the fleet's authority: the only one trusted for the `https://` URLs
    /// of the other walshard processes.
    #[arg(long, env = "WALSHARD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

/// A TLS file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A certificate or key does not parse, or they do not match.
    #[error("cannot use the certificate {cert} with key {key}: {source}")]
    Certificate {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The CA file is not a PEM certificate.
    #[error("{path} is not a PEM certificate: {source}")]
    Authority {
        /// The CA file.
        path: PathBuf,
        /// Why.
        source: ClientError,
    },
    /// A certificate could not be issued.
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] rcgen::Error),
}

impl TlsArgs {
    /// The server side: `Some` when a certificate and key are given.
    pub async fn server(&self) -> Result<Option<ServedCertificate>, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => ServedCertificate::load(cert, key).await.map(Some),
            _ => Ok(None),
        }
    }

    /// The client side: `Some` when a CA is given.
    pub fn trust(&self) -> Result<Option<TrustedCa>, TlsError> {
        let Some(path) = &self.tls_ca else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })?;
        TrustedCa::from_pem(&pem)
            .map(Some)
            .map_err(|source| TlsError::Authority {
                path: path.clone(),
                source,
            })
    }

    /// The scheme of this process's own URL: `https` when it serves TLS.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// A certificate and key being served, re-read when either file changes.
#[derive(Clone)]
pub struct ServedCertificate {
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
}

impl ServedCertificate {
    /// Loads `cert` and `key` (PEM).
    pub async fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let config = RustlsConfig::from_pem_file(cert, key)
            .await
            .map_err(|source| TlsError::Certificate {
                cert: cert.to_owned(),
                key: key.to_owned(),
                source,
            })?;
        Ok(ServedCertificate {
            config,
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Re-reads the files whenever their modification times change; a pair that does not load
    /// (e.g. caught half-written) is logged and the last good one kept.
    async fn follow_changes(self) {
        let stamp = |s: &Self| (modified(&s.cert), modified(&s.key));
        let mut seen = stamp(&self);
        loop {
            tokio::time::sleep(RELOAD_CHECK).await;
            let now = stamp(&self);
            if now == seen {
                continue;
            }
            match self
                .config
                .reload_from_pem_file(&self.cert, &self.key)
                .await
            {
                Ok(()) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    seen = now;
                }
                Err(error) => {
                    tracing::warn!(cert = %self.cert.display(), %error, "TLS certificate changed but does not load; serving the previous one");
                }
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves `app` on `listener` until `shutdown` completes: HTTPS with `tls`, plain HTTP without.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<ServedCertificate>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let stop = tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let reload = tokio::spawn(tls.clone().follow_changes());
    let served = axum_server::from_tcp_rustls(listener.into_std()?, tls.config)?
        .handle(handle)
        .serve(app.into_make_service())
        .await;
    stop.abort();
    reload.abort();
    served
}

#[cfg(test)]
mod tests;
