//! The agent's local state file (`<data_dir>/state.json`): the schema and shards it was configured
//! with, and per shard the highest epoch it has seen. Written atomically and durably (temp file,
//! fsync, rename, fsync of the directory), because fencing depends on the epoch surviving a crash.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use walshard_contract::{Ident, Schema, ShardSpec};

use crate::wal::Epoch;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub schema: Option<Schema>,
    pub shards: Vec<ShardState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardState {
    pub id: Ident,
    /// The key range, when `/config` gave one (the seed's form gives only names).
    pub range: Option<ShardSpec>,
    /// The epoch a standalone shard starts in (its promises live in `shards/<id>/epoch.json`).
    pub epoch: Epoch,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("state.json"),
        }
    }

    pub fn load(&self) -> Result<AgentState, StateError> {
        Ok(load_json(&self.path)?.unwrap_or_default())
    }

    pub fn save(&self, state: &AgentState) -> Result<(), StateError> {
        save_json(&self.path, state)
    }
}

/// Writes `value` as JSON to `path` atomically and durably: temp file, fsync, rename, fsync of
/// the directory. After a crash the file holds either the old or the new value.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}

/// Reads JSON written by [`save_json`]; `None` if the file does not exist.
pub fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Parse {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

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
