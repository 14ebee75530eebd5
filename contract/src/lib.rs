//! The wire contract shared by the walshard agent, router and control plane: the table schema and
//! its dtypes, validated identifiers, shard key ranges, typed rows, the seed API's JSON envelope,
//! the agent ↔ control-plane messages ([`replication`]) and the fleet view the control plane
//! publishes ([`topology`]).
//!
//! The core is pure: parsing and validation of JSON values, no IO, and the retry [`backoff`]
//! policy. The features add what the walshard processes share at their edges: `http` (the axum
//! answer of [`ApiError`], the `bearer` token layer and the common `answers`), `client` (the `http_client` builder),
//! `process` (logs, the shutdown signal, `durable` JSON files). Field names that depend on the
//! schema (the key column, e.g. `Stud_id`, and `<key>_low` in shard specs) are resolved here, so
//! callers never build them by hand.
//!
//! Every error answer of the agent and the router is `{"message", "status": "failure", "code"}`;
//! the codes ([`ErrorCode`]) and their HTTP statuses are listed in [`error_code`]. Callers branch
//! on the code, never on the message.

#![warn(missing_docs)]

#[cfg(feature = "http")]
pub mod answers;
pub mod backoff;
pub mod batch;
#[cfg(feature = "http")]
pub mod bearer;
pub mod body;
pub mod coerce;
#[cfg(feature = "process")]
pub mod durable;
pub mod envelope;
pub mod error_code;
#[cfg(feature = "client")]
pub mod http_client;
pub mod ident;
#[cfg(feature = "schema")]
mod json_schema;
#[cfg(feature = "process")]
pub mod process;
pub mod replication;
pub mod row;
pub mod schema;
pub mod shard;
#[cfg(feature = "tls")]
pub mod tls;
pub mod topology;
pub mod value;

pub use backoff::Backoff;
pub use body::OnDuplicate;
pub use envelope::{
    ApiError, Failure, RequestError, STATUS_FAILURE, STATUS_SUCCESS, STATUS_SUCCESSFUL, Success,
    code_of,
};
pub use error_code::ErrorCode;
pub use ident::{IDENT_PATTERN, Ident, IdentError, MAX_IDENT_LEN};
pub use replication::{
    AgentStatus, ArchiveReport, Conflict, DiskReport, FenceAccepted, FenceRequest, PromoteRequest,
    Quorum, ReplicaRef, Role, ShardStatus, StepDownReply, StepDownRequest, majority,
};
pub use row::{KeyRange, Patch, Row, RowError, RowsError, Value, duplicate_message, parse_rows};
pub use schema::{Dtype, Schema, SchemaError};
pub use shard::{ShardError, ShardSpec, validate_layout};
pub use topology::{Phase, ReplicaInfo, ServerInfo, ShardInfo, Topology};
