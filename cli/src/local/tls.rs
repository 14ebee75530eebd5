//! `walshard up --tls`: the fleet's own certificate authority and the one certificate its
//! processes serve with (names `127.0.0.1` and `localhost`), kept in `<data-dir>/tls/`. The
//! authority's certificate (public) is also in `fleet.json`, so every command that reads the
//! fleet knows whom to trust.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use walshard_contract::tls::ServedCertificate;
use walshard_contract::tls::authority::{Authority, PemPair};

use super::LocalError;
use super::state::DataDir;

/// The TLS files of a local fleet.
#[derive(Debug, Clone)]
pub struct FleetTls {
    dir: PathBuf,
}

impl FleetTls {
    /// The files under `dir`'s `tls/`.
    pub fn at(dir: &DataDir) -> Self {
        FleetTls {
            dir: dir.root().join("tls"),
        }
    }

    /// The authority's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The certificate the fleet's processes serve with.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// Its private key.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    fn ca_key_file(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// Creates the authority and the served certificate unless they exist; returns the
    /// authority's certificate (PEM).
    pub fn ensure(&self) -> Result<String, LocalError> {
        if self.ca_file().exists() && self.cert_file().exists() && self.key_file().exists() {
            return read(&self.ca_file());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| LocalError::io(format!("creating {}", self.dir.display()), e))?;
        let authority = Authority::generate("walshard local fleet CA").map_err(tls_error)?;
        let names = ["127.0.0.1".to_owned(), "localhost".to_owned()];
        let served = authority
            .issue("walshard local fleet", &names)
            .map_err(tls_error)?;
        let PemPair { cert, key } = authority.pem();
        write_file(&self.ca_key_file(), key, 0o600)?;
        write_file(&self.key_file(), &served.key, 0o600)?;
        write_file(&self.cert_file(), &served.cert, 0o644)?;
        // The authority's certificate last: its presence says the set is complete.
        write_file(&self.ca_file(), cert, 0o644)?;
        Ok(cert.clone())
    }

    /// The served certificate, loaded.
    pub async fn served(&self) -> Result<ServedCertificate, LocalError> {
        ServedCertificate::load(&self.cert_file(), &self.key_file())
            .await
            .map_err(tls_error)
    }

    /// The environment of a process that serves with the fleet's certificate and trusts its
    /// authority (see `walshard_contract::tls::TlsArgs`).
    pub fn serving_env(&self) -> [(&'static str, PathBuf); 3] {
        [
            ("WALSHARD_TLS_CERT", self.cert_file()),
            ("WALSHARD_TLS_KEY", self.key_file()),
            ("WALSHARD_TLS_CA", self.ca_file()),
        ]
    }
}

fn tls_error(e: impl std::fmt::Display) -> LocalError {
    LocalError::Control(format!("TLS: {e}"))
}

fn read(path: &Path) -> Result<String, LocalError> {
    std::fs::read_to_string(path)
        .map_err(|e| LocalError::io(format!("reading {}", path.display()), e))
}

/// Writes `text` to `path` with `mode`, durably, replacing it atomically.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), LocalError> {
    let tmp = path.with_extension("tmp");
    let context = || format!("writing {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| LocalError::io(context(), e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| LocalError::io(context(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| LocalError::io(context(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_made_once_and_keys_are_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let tls = FleetTls::at(&DataDir::new(root.path()));
        let first = tls.ensure().expect("made");
        assert_eq!(tls.ensure().expect("kept"), first);
        for key in [tls.key_file(), tls.ca_key_file()] {
            let mode = std::fs::metadata(&key).expect("key").permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o600
            );
        }
    }
}
