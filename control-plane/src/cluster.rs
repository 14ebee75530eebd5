//! What the control plane manages: servers and the replica set of every shard.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use walshard_contract::{Quorum, ReplicaRef};

use crate::placement::Placement;

/// What the control plane manages: servers (name → agent base URL) and shards (id → replica
/// server names).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Server name → its agent's base URL.
    pub servers: BTreeMap<String, String>,
    /// Shard id → the names of the servers holding its replicas.
    pub shards: BTreeMap<String, Vec<String>>,
    /// How many replicas must hold an entry to commit it (sent with every promote).
    #[serde(default)]
    pub write_quorum: Quorum,
}

/// Why a [`ClusterSpec`] is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClusterSpecError {
    /// A shard's replica list is empty (the shard id).
    #[error("shard {0:?} has no replica")]
    NoReplicas(String),
    /// A shard lists the same server twice.
    #[error("shard {shard:?} lists server {server:?} twice")]
    DuplicateReplica {
        /// The shard id.
        shard: String,
        /// The repeated server.
        server: String,
    },
    /// A shard has a replica on a server absent from `servers`.
    #[error("shard {shard:?} has a replica on unknown server {server:?}")]
    UnknownServer {
        /// The shard id.
        shard: String,
        /// The unknown server name.
        server: String,
    },
}

impl ClusterSpec {
    /// From the agents' URLs and a placement (server → shards).
    pub fn from_placement(
        servers: BTreeMap<String, String>,
        placement: &Placement,
        write_quorum: Quorum,
    ) -> Self {
        Self {
            servers,
            shards: crate::placement::shard_replicas(placement),
            write_quorum,
        }
    }

    /// Checks that every shard has at least one replica, on known servers, none twice.
    pub fn validate(&self) -> Result<(), ClusterSpecError> {
        for (shard, replicas) in &self.shards {
            if replicas.is_empty() {
                return Err(ClusterSpecError::NoReplicas(shard.clone()));
            }
            for (i, server) in replicas.iter().enumerate() {
                if !self.servers.contains_key(server) {
                    return Err(ClusterSpecError::UnknownServer {
                        shard: shard.clone(),
                        server: server.clone(),
                    });
                }
                if replicas[..i].contains(server) {
                    return Err(ClusterSpecError::DuplicateReplica {
                        shard: shard.clone(),
                        server: server.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    pub(crate) fn server_ref(&self, name: &str) -> Option<ReplicaRef> {
        self.servers.get(name).map(|url| ReplicaRef {
            name: name.to_owned(),
            url: url.clone(),
        })
    }
}
