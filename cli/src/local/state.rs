//! What a local fleet keeps in its data dir:
//!
//! - `fleet.json`: the cluster token, the durability settings, the seed configuration (after
//!   `/init`) and each server's ports. Written atomically and durably after every change, so `walshard up`
//!   resumes from it after a Ctrl-C or a crash.
//! - `running.json`: the PID and URLs of the `walshard up` process while it runs (for
//!   `walshard status` and `walshard down`).
//! - `servers/<name>/`: one server: `mysql/` (MariaDB), `agent/` (WAL and agent state),
//!   `agent.log`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use walshard_backup::args::StoreArgs;
use walshard_contract::Quorum;
use walshard_contract::durable::{read_json, write_json};
use walshard_contract::http_client::{ClientSettings, TrustedCa};
use walshard_k8s_api::spec::WalFsync;

use super::LocalError;

/// One server's ports, kept across restarts (the agents' peers address each other by URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerPorts {
    /// MariaDB's port.
    pub mysql: u16,
    /// The agent's HTTP port.
    pub agent: u16,
}

/// `fleet.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetState {
    /// The cluster's bearer token.
    pub token: String,
    /// The write quorum the control plane promotes with.
    #[serde(default)]
    pub write_quorum: Quorum,
    /// When the agents fsync their WAL.
    #[serde(default)]
    pub wal_fsync: WalFsync,
    /// The seed configuration (`/init` body shape); `None` until configured.
    pub config: Option<Json>,
    /// Server name → its ports.
    pub servers: BTreeMap<String, ServerPorts>,
    /// Where the fleet archives its WAL and keeps base backups (docs/backup.md); `None`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<StoreArgs>,
    /// Scheduled base backups into `backup` (docs/backup.md); `None`: on demand only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_schedule: Option<crate::backup::schedule::BackupSchedule>,
    /// With TLS (`walshard up --tls`): the certificate (PEM) of the fleet's authority, the only
    /// one its processes trust; its key and the served certificate are in `tls/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
}

impl FleetState {
    /// A fleet with `token`, default settings, no servers and no configuration.
    pub fn new(token: String) -> Self {
        Self {
            token,
            write_quorum: Quorum::default(),
            wal_fsync: WalFsync::default(),
            config: None,
            servers: BTreeMap::new(),
            backup: None,
            backup_schedule: None,
            tls_ca: None,
        }
    }

    /// The base URL of the agent on `ports`: `https` when the fleet runs with TLS.
    pub fn agent_url(&self, ports: ServerPorts) -> String {
        super::server::agent_url(ports, self.tls_ca.is_some())
    }

    /// The client settings of a command talking to this fleet's processes: `base`, trusting
    /// the fleet's authority when it has one.
    pub fn client_settings(
        &self,
        base: ClientSettings,
    ) -> Result<ClientSettings, walshard_contract::http_client::ClientError> {
        let trust = self
            .tls_ca
            .as_deref()
            .map(|pem| TrustedCa::from_pem(pem.as_bytes()))
            .transpose()?;
        Ok(ClientSettings { trust, ..base })
    }
}

/// `running.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// The process id of the `walshard up` serving the fleet.
    pub pid: u32,
    /// The router's base URL.
    pub router_url: String,
    /// The local control API's base URL.
    pub control_url: String,
}

/// The files of one data dir.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data dir at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The data dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A server's directory: `servers/<name>`.
    pub fn server(&self, name: &str) -> PathBuf {
        self.root.join("servers").join(name)
    }

    /// A log file `name` at the data dir's top.
    pub fn log(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn fleet_file(&self) -> PathBuf {
        self.root.join("fleet.json")
    }

    fn running_file(&self) -> PathBuf {
        self.root.join("running.json")
    }

    /// The lock file that makes one `walshard up` per data dir.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Reads `fleet.json`; `None` if there is none.
    pub fn load_fleet(&self) -> Result<Option<FleetState>, LocalError> {
        Ok(read_json(&self.fleet_file())?)
    }

    /// Writes `fleet.json` durably.
    pub fn save_fleet(&self, state: &FleetState) -> Result<(), LocalError> {
        Ok(write_json(&self.fleet_file(), state)?)
    }

    /// Reads `running.json`; `None` if there is none.
    pub fn load_running(&self) -> Result<Option<Running>, LocalError> {
        Ok(read_json(&self.running_file())?)
    }

    /// Writes `running.json` durably.
    pub fn save_running(&self, running: &Running) -> Result<(), LocalError> {
        Ok(write_json(&self.running_file(), running)?)
    }

    /// Removes `running.json`, ignoring errors.
    pub fn clear_running(&self) {
        let _ = std::fs::remove_file(self.running_file());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_state_round_trips_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DataDir::new(dir.path());
        assert_eq!(d.load_fleet().expect("load"), None);
        let mut s = FleetState::new("t0k".into());
        s.servers.insert(
            "Server0".into(),
            ServerPorts {
                mysql: 3307,
                agent: 5001,
            },
        );
        s.config = Some(serde_json::json!({"N": 1}));
        d.save_fleet(&s).expect("save");
        assert_eq!(d.load_fleet().expect("load"), Some(s));
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("fleet.json"), b"{not json").expect("write");
        let err = DataDir::new(dir.path()).load_fleet().expect_err("corrupt");
        assert!(err.to_string().contains("fleet.json"), "{err}");
    }
}
