//! The agent's local state file (`<data_dir>/state.json`): the schema and shards it was configured
//! with, and per shard the highest epoch it has seen. Written atomically and durably (temp file,
//! fsync, rename, fsync of the directory), because fencing depends on the epoch surviving a crash.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use walshard_contract::durable::DurableError;
use walshard_contract::{Ident, Schema, ShardSpec};

use crate::wal::Epoch;

/// The content of `state.json`: what `/config` set up (the default: nothing yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The schema every shard's table has; `None` until the first `/config`.
    pub schema: Option<Schema>,
    /// The shards of this server, in the order they were configured; ids are unique.
    pub shards: Vec<ShardState>,
}

/// One configured shard in `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardState {
    /// The shard's id (also its directory under `shards/` and its table `shard_<id>`).
    pub id: Ident,
    /// The key range, when `/config` gave one (the seed's form gives only names).
    pub range: Option<ShardSpec>,
    /// The epoch a standalone shard starts in (its promises live in `shards/<id>/epoch.json`).
    pub epoch: Epoch,
}

/// Why a state file could not be read or written.
pub type StateError = DurableError;

/// The state file `<data_dir>/state.json`.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file of `data_dir` (nothing is read or created yet).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("state.json"),
        }
    }

    /// The file, `<data_dir>/state.json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; the default (nothing configured) if the file does not exist.
    pub fn load(&self) -> Result<AgentState, StateError> {
        Ok(load_json(&self.path)?.unwrap_or_default())
    }

    /// Replaces the file by `state`, atomically and durably: after a crash it holds either the
    /// old state or this one.
    pub fn save(&self, state: &AgentState) -> Result<(), StateError> {
        save_json(&self.path, state)
    }
}

/// Writes `value` as JSON to `path` atomically and durably (see [`walshard_contract::durable`]).
pub use walshard_contract::durable::write_json as save_json;

/// Reads JSON written by [`save_json`]; `None` if the file does not exist.
pub use walshard_contract::durable::read_json as load_json;

/// What a replica has promised (`shards/<id>/epoch.json`), persisted before it acts on it.
pub use walshard_replica::Promise as EpochState;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = StateFile::new(dir.path());
        assert_eq!(file.load().expect("empty"), AgentState::default());
        let state = AgentState {
            schema: Some(Schema::seed_default()),
            shards: vec![ShardState {
                id: Ident::new("sh1").expect("id"),
                range: None,
                epoch: 3,
            }],
        };
        file.save(&state).expect("save");
        assert_eq!(file.load().expect("load"), state);
    }
}
