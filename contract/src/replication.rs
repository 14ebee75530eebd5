//! Replication terms both the agent and the control plane put on the wire
//! (docs/replication.md).

use serde::{Deserialize, Serialize};

/// How many of a shard's replicas must hold an entry before it is committed; sent with
/// `promote`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Quorum {
    /// A majority of the shard's replicas (the default).
    #[default]
    Majority,
    /// Every replica.
    All,
}

impl Quorum {
    /// How many of `replicas` replicas (the primary included) must hold an entry to commit it.
    pub fn size(self, replicas: usize) -> usize {
        match self {
            Quorum::Majority => majority(replicas),
            Quorum::All => replicas,
        }
    }
}

/// A majority of `n`: `n / 2 + 1`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// A server by name and base URL (`{"name", "url"}`, as in the promote body's `replicas`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReplicaRef {
    pub name: String,
    pub url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_sizes() {
        assert_eq!(Quorum::Majority.size(1), 1);
        assert_eq!(Quorum::Majority.size(3), 2);
        assert_eq!(Quorum::Majority.size(4), 3);
        assert_eq!(Quorum::Majority.size(5), 3);
        assert_eq!(Quorum::All.size(3), 3);
        assert_eq!(
            serde_json::to_string(&Quorum::All).ok().as_deref(),
            Some("\"all\"")
        );
    }
}
