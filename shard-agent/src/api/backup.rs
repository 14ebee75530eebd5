//! `POST /shards/{id}/base-backup`: this replica copies the shard into a base backup once it has
//! applied `min_lsn` (waiting up to `wait_ms`), and answers the manifest entry
//! ([`walshard_backup::ShardBackup`]).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use walshard_backup::BackupId;
use walshard_contract::{ApiError, ErrorCode};

use super::extract::shard_in_path;
use super::{AppState, JsonBody};
use crate::base_backup::{self, BaseBackupError, ROWS_PER_PART};

/// `POST /shards/{id}/base-backup`: see the file's description.
pub(super) async fn base_backup(
    State(agent): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<walshard_backup::ShardBackup>, ApiError> {
    let shard = shard_in_path(&agent, &id)?;
    let Some(backup) = &agent.config.backup else {
        return Err(ApiError::coded(
            ErrorCode::Conflict,
            "this server has no backup store (--backup-store)",
        ));
    };
    let backup_id = body
        .get("backup_id")
        .and_then(|v| v.as_str())
        .and_then(BackupId::parse)
        .ok_or_else(|| {
            ApiError::coded(
                ErrorCode::InvalidRequest,
                "\"backup_id\" must be a backup id (letters, digits, - and _)",
            )
        })?;
    let number = |field: &str| body.get(field).and_then(|v| v.as_u64()).unwrap_or(0);
    shard
        .read_position(number("min_lsn"), Duration::from_millis(number("wait_ms")))
        .await?;
    let copy = base_backup::take(&shard, &backup.store, &backup_id, ROWS_PER_PART)
        .await
        .map_err(|e| {
            let store_code = match &e {
                BaseBackupError::Store(s) => s.code(),
                _ => "mysql",
            };
            ApiError::coded(
                ErrorCode::Unavailable,
                format!("base backup of shard {id}: {e}"),
            )
            .with("cause", store_code)
        })?;
    Ok(Json(copy))
}
