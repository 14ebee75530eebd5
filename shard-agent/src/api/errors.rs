//! Shard and agent errors as API errors: the error code (and so the HTTP status) of each kind, and
//! the fields a client acts on (the primary to retry at, the log position to resend from).

use walshard_contract::{ApiError, ErrorCode};

use crate::agent::AgentError;
use crate::shard::ShardError;

impl From<ShardError> for ApiError {
    fn from(e: ShardError) -> Self {
        let message = e.to_string();
        let code = match &e {
            ShardError::NotAppliedYet { .. } => ErrorCode::NotCommitted,
            ShardError::Halted { .. } => ErrorCode::Halted,
            ShardError::ShuttingDown => ErrorCode::ShuttingDown,
            ShardError::NotReady { .. } => ErrorCode::NotReady,
            ShardError::NoQuorum { .. } => ErrorCode::NoMajority,
            ShardError::Store(_) => ErrorCode::Unavailable,
            ShardError::NotPrimary { .. } => ErrorCode::NotPrimary,
            ShardError::Stale { .. } => ErrorCode::StaleEpoch,
            ShardError::Mismatch { .. } => ErrorCode::LogMismatch,
            ShardError::BadRequest(_) => ErrorCode::InvalidRequest,
            ShardError::Behind { .. } => ErrorCode::ReplicaBehind,
            ShardError::CatchingUp { .. } => ErrorCode::CatchingUp,
            ShardError::DiskFull { .. } => ErrorCode::DiskFull,
            _ => ErrorCode::Internal,
        };
        let err = ApiError::coded(code, message);
        match e {
            ShardError::NotPrimary { primary, epoch, .. } => {
                err.with("primary", primary).with("epoch", epoch)
            }
            ShardError::Stale { epoch, primary } => {
                err.with("epoch", epoch).with("primary", primary)
            }
            ShardError::Mismatch {
                last_lsn,
                last_epoch,
            } => err
                .with("last_lsn", last_lsn)
                .with("last_epoch", last_epoch),
            ShardError::Behind {
                applied, wanted, ..
            } => err.with("applied_lsn", applied).with("wanted_lsn", wanted),
            ShardError::DiskFull { server, shard, .. } => {
                err.with("server", server).with("shard", shard)
            }
            _ => err,
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        let code = match e {
            AgentError::SchemaMismatch | AgentError::RangeMismatch(_) => ErrorCode::Conflict,
            AgentError::Layout(_) => ErrorCode::InvalidRequest,
            AgentError::Shard(ShardError::Store(_)) | AgentError::Store(_) => {
                ErrorCode::Unavailable
            }
            _ => ErrorCode::Internal,
        };
        ApiError::coded(code, e.to_string())
    }
}
