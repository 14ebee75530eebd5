//! Why a database's control plane could not be started, changed or drained.

use thiserror::Error;
use walshard_contract::Quorum;
use walshard_control_plane::runtime::AgentCallError;

use super::SETTLED_ANNOTATION;

/// Why a database's control plane could not be started, changed or drained.
#[derive(Debug, Error)]
pub enum HostingError {
    /// The object has no `metadata.namespace` (not read from the API).
    #[error("the ShardedDatabase has no namespace")]
    NoNamespace,
    /// The object has no `metadata.name`.
    #[error("the ShardedDatabase has no name")]
    NoName,
    /// The spec does not resolve.
    #[error(transparent)]
    Spec(#[from] walshard_k8s_api::spec::SpecError),
    /// The cluster spec built from it is inconsistent.
    #[error("cluster spec: {0}")]
    Cluster(#[from] walshard_control_plane::ClusterSpecError),
    /// The agents' HTTP client could not be built.
    #[error("agent client: {0}")]
    Agent(#[from] AgentCallError),
    /// The converger's HTTP client could not be built.
    #[error("agent client: {0}")]
    Client(#[from] walshard_contract::http_client::ClientError),
    /// `durability.writeQuorum` changed while the control plane runs.
    #[error(
        "the write quorum cannot change while the control plane runs (from {from:?} to {to:?}); \
         nothing of the new spec was applied"
    )]
    WriteQuorum {
        /// The quorum the control plane runs with.
        from: Quorum,
        /// The quorum the spec asks for.
        to: Quorum,
    },
    /// No control plane runs for the database.
    #[error("no control plane runs for {namespace}/{name}: ensure() it first")]
    NotRunning {
        /// The database's namespace.
        namespace: String,
        /// The database's name.
        name: String,
    },
    /// A drain of a server the spec still has.
    #[error("{server} is still in the spec of {namespace}/{name}: only removed servers drain")]
    NotRemoved {
        /// The database's namespace.
        namespace: String,
        /// The database's name.
        name: String,
        /// The server asked to drain.
        server: String,
    },
    /// The settled-replicas annotation does not parse.
    #[error("annotation {SETTLED_ANNOTATION}: {0} (delete it to start from the spec)")]
    Record(String),
    /// A user switchover names an unknown shard or a server without a replica of it.
    #[error("switchover: {0}")]
    Switchover(String),
}

impl HostingError {
    /// A machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            HostingError::NoNamespace | HostingError::NoName => "missing-metadata",
            HostingError::Spec(_) | HostingError::Cluster(_) => "invalid-spec",
            HostingError::Agent(_) | HostingError::Client(_) => "agent-client",
            HostingError::WriteQuorum { .. } => "write-quorum-fixed",
            HostingError::NotRunning { .. } => "control-plane-not-running",
            HostingError::NotRemoved { .. } => "server-not-removed",
            HostingError::Record(_) => "settled-record-invalid",
            HostingError::Switchover(_) => "switchover-invalid",
        }
    }
}
