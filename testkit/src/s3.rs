//! [`S3Server`]: a real S3-compatible server on loopback for backup tests (`s3s-fs`, which
//! `scripts/install-test-deps.sh` installs with `cargo install`), storing into a temp dir.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use walshard_process::{ChildGuard, ProcessError, free_port, wait_for_tcp};

/// The program, found on the `PATH` unless this variable names it.
pub const ENV_S3S_FS: &str = "WALSHARD_S3S_FS";
/// The access key id the server accepts (the only one).
pub const ACCESS_KEY: &str = "walshard-test";
/// The secret key that goes with [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "walshard-test-secret";

/// An `s3s-fs` process with one bucket; stopped and its data removed on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Option<ChildGuard>,
    port: u16,
    root: tempfile::TempDir,
    /// The bucket it serves (a directory of its data dir).
    pub bucket: String,
}

impl S3Server {
    /// Starts a server with the bucket `bucket` on a free loopback port.
    pub fn start(bucket: &str) -> Result<S3Server, ProcessError> {
        let root = tempfile::Builder::new()
            .prefix("walshard-s3-")
            .tempdir()
            .map_err(|e| ProcessError::io("creating the S3 server's root", e))?;
        std::fs::create_dir_all(root.path().join(bucket))
            .map_err(|e| ProcessError::io("creating the bucket", e))?;
        let mut server = S3Server {
            child: None,
            port: free_port()?,
            root,
            bucket: bucket.to_owned(),
        };
        server.resume()?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://<bucket>/<prefix>`
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// Where the objects are, as files (to damage one in a test).
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(&self.bucket)
    }

    /// Stops the server (the store is down; its data stays).
    pub fn stop(&mut self) -> Result<(), ProcessError> {
        if let Some(mut child) = self.child.take() {
            child.kill9()?;
        }
        Ok(())
    }

    /// Starts it again on the same port with the same data.
    pub fn resume(&mut self) -> Result<(), ProcessError> {
        let program = std::env::var(ENV_S3S_FS).unwrap_or_else(|_| "s3s-fs".to_owned());
        let mut cmd = Command::new(&program);
        cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = ChildGuard::spawn(cmd).map_err(|e| {
            ProcessError::io(
                format!("starting {program} (scripts/install-test-deps.sh installs it)"),
                std::io::Error::other(e.to_string()),
            )
        })?;
        self.child = Some(child);
        wait_for_tcp(
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            Duration::from_secs(10),
        )
    }
}
