//! What the backup manager writes (pure): a database's `status.backup` (the newest backup and the
//! restorable range from the store, each shard's archive from the control plane, the schedule's
//! bookkeeping) with its `ArchiveLagging` condition, and a `ShardedDatabaseBackup`'s status.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value as Json, json};
use walshard_backup::{Catalog, Manifest, Millis};
use walshard_contract::ArchiveReport;
use walshard_k8s_api::backup::{BackupPhase, CONDITION_COMPLETE, ShardedDatabaseBackupStatus};
use walshard_k8s_api::spec::{
    API_VERSION, BackupStatus, CONDITION_ARCHIVE_LAGGING, KIND, ShardArchiveStatus,
    ShardedDatabaseStatus,
};

/// Reasons of the `ArchiveLagging` condition and of the backup manager's Events.
pub mod reason {
    /// ArchiveLagging False: every shard's archive is complete or within the threshold.
    pub const ARCHIVE_CURRENT: &str = "ArchiveCurrent";
    /// ArchiveLagging True: some shard's archive is incomplete longer than the threshold.
    pub const ARCHIVE_LAGGING: &str = "ArchiveLagging";
    /// ArchiveLagging True: some primary cannot write to the store.
    pub const ARCHIVE_FAILING: &str = "ArchiveFailing";
    /// ArchiveLagging Unknown: the control plane has no archive report yet.
    pub const NO_REPORTS: &str = "NoArchiveReports";
    /// Event: a base backup succeeded.
    pub const BACKUP_SUCCEEDED: &str = "BackupSucceeded";
    /// Event (Warning) and the Complete condition: a base backup failed.
    pub const BACKUP_FAILED: &str = "BackupFailed";
    /// Event: a base backup was started.
    pub const BACKUP_STARTED: &str = "BackupStarted";
    /// Event: the schedule created a `ShardedDatabaseBackup`.
    pub const BACKUP_SCHEDULED: &str = "BackupScheduled";
    /// Event (Warning): the store could not be read for the status, or retention failed.
    pub const STORE_UNAVAILABLE: &str = "BackupStoreUnavailable";
    /// Event: retention deleted backups.
    pub const RETENTION: &str = "RetentionApplied";
}

/// A time in [`Millis`] as a Kubernetes time.
pub fn time_of(ms: Millis) -> Option<Time> {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(Time)
}

/// Each shard's archive as the status shows it.
pub fn archive_status(archive: &BTreeMap<String, ArchiveReport>) -> Vec<ShardArchiveStatus> {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    archive
        .iter()
        .map(|(shard, r)| ShardArchiveStatus {
            shard: shard.clone(),
            archived_lsn: r.archived_lsn.map(int),
            lag_entries: int(r.lag_entries),
            lag_seconds: int(r.lag_seconds),
            error: r.error.clone(),
        })
        .collect()
}

/// `status.backup`: the store's newest backup and range when it could be read (else the ones
/// the status shows), the archive reports, and the last scheduled occurrence.
pub fn backup_status(
    current: Option<&BackupStatus>,
    catalog: Option<&Catalog>,
    archive: &BTreeMap<String, ArchiveReport>,
    last_schedule_time: Option<Time>,
) -> BackupStatus {
    let kept = current.cloned().unwrap_or_default();
    let (last_backup_id, last_backup_time, restorable_from, restorable_to) = match catalog {
        Some(c) => {
            let newest = c.newest();
            let range = c.range();
            (
                newest.map(|m: &Manifest| m.id.to_string()),
                newest.and_then(|m| time_of(m.finished_at_ms)),
                range.and_then(|r| time_of(r.from_ms)),
                range.and_then(|r| time_of(r.to_ms)),
            )
        }
        None => (
            kept.last_backup_id,
            kept.last_backup_time,
            kept.restorable_from,
            kept.restorable_to,
        ),
    };
    BackupStatus {
        last_backup_id,
        last_backup_time,
        restorable_from,
        restorable_to,
        last_schedule_time: last_schedule_time.or(kept.last_schedule_time),
        archive: archive_status(archive),
    }
}

/// `ArchiveLagging` from the archive reports: True when some shard's archive fails or has been
/// incomplete longer than `threshold`, Unknown without reports; `lastTransitionTime` moves only
/// when the status changes.
pub fn archive_condition(
    archive: &BTreeMap<String, ArchiveReport>,
    threshold: Duration,
    generation: Option<i64>,
    current: Option<&ShardedDatabaseStatus>,
    now: Timestamp,
) -> Condition {
    let failing: Vec<String> = archive
        .iter()
        .filter_map(|(s, r)| r.error.as_ref().map(|e| format!("{s}: {e}")))
        .collect();
    let lagging: Vec<String> = archive
        .iter()
        .filter(|(_, r)| r.lag_seconds > threshold.as_secs())
        .map(|(s, r)| format!("{s} ({} s, {} entries)", r.lag_seconds, r.lag_entries))
        .collect();
    let (status, reason, message) = if !failing.is_empty() {
        (
            "True",
            reason::ARCHIVE_FAILING,
            format!("archiving to the store fails: {}", failing.join("; ")),
        )
    } else if !lagging.is_empty() {
        (
            "True",
            reason::ARCHIVE_LAGGING,
            format!(
                "archives incomplete longer than {} s: {}",
                threshold.as_secs(),
                lagging.join(", ")
            ),
        )
    } else if archive.is_empty() {
        (
            "Unknown",
            reason::NO_REPORTS,
            "no shard primary has reported its archive yet".to_owned(),
        )
    } else {
        (
            "False",
            reason::ARCHIVE_CURRENT,
            format!(
                "every shard's archive is within {} s of its primary",
                threshold.as_secs()
            ),
        )
    };
    let since = current
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == CONDITION_ARCHIVE_LAGGING)
        })
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: CONDITION_ARCHIVE_LAGGING.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The server-side apply body of a database's status with the backup manager's fields: one
/// condition and `backup`. (Applying `{}` instead removes both: what a database without
/// `spec.backup` gets.)
pub fn database_patch(backup: Option<(&BackupStatus, &Condition)>) -> Json {
    let status = match backup {
        Some((b, c)) => json!({"backup": b, "conditions": [c]}),
        None => json!({}),
    };
    json!({"apiVersion": API_VERSION, "kind": KIND, "status": status})
}

/// Whether `current` already shows `backup` and `condition` (no write needed).
pub fn database_shows(
    current: Option<&ShardedDatabaseStatus>,
    backup: &BackupStatus,
    condition: &Condition,
) -> bool {
    current.is_some_and(|s| {
        s.backup.as_ref() == Some(backup) && s.conditions.iter().any(|c| c == condition)
    })
}

/// A backup request's status in `phase`, keeping what `current` already has.
pub fn request_status(
    current: Option<&ShardedDatabaseBackupStatus>,
    phase: BackupPhase,
    store: Option<&str>,
    now: Timestamp,
) -> ShardedDatabaseBackupStatus {
    let mut s = current.cloned().unwrap_or_default();
    s.phase = Some(phase);
    if let Some(store) = store {
        s.store = Some(store.to_owned());
    }
    match phase {
        BackupPhase::Running => s.started_at = Some(Time(now)),
        BackupPhase::Succeeded | BackupPhase::Failed => {
            s.completed_at = Some(Time(now));
            let ok = phase == BackupPhase::Succeeded;
            s.conditions = vec![Condition {
                type_: CONDITION_COMPLETE.to_owned(),
                status: if ok { "True" } else { "False" }.to_owned(),
                reason: if ok {
                    reason::BACKUP_SUCCEEDED
                } else {
                    reason::BACKUP_FAILED
                }
                .to_owned(),
                message: s.message.clone().unwrap_or_default(),
                observed_generation: None,
                last_transition_time: Time(now),
            }];
        }
        BackupPhase::Pending => {}
    }
    s
}

/// A succeeded request's status: the backup's id and size.
pub fn succeeded(
    current: Option<&ShardedDatabaseBackupStatus>,
    manifest: &Manifest,
    store: &str,
    now: Timestamp,
) -> ShardedDatabaseBackupStatus {
    let mut base = current.cloned().unwrap_or_default();
    base.backup_id = Some(manifest.id.to_string());
    base.shards = Some(i32::try_from(manifest.shards.len()).unwrap_or(i32::MAX));
    base.rows = Some(i64::try_from(manifest.total_rows()).unwrap_or(i64::MAX));
    base.bytes = Some(i64::try_from(manifest.total_bytes()).unwrap_or(i64::MAX));
    base.message = Some(format!(
        "backup {} of {} shards, {} rows, {} bytes, in {:.1} s",
        manifest.id,
        manifest.shards.len(),
        manifest.total_rows(),
        manifest.total_bytes(),
        manifest
            .finished_at_ms
            .saturating_sub(manifest.started_at_ms) as f64
            / 1000.0
    ));
    request_status(Some(&base), BackupPhase::Succeeded, Some(store), now)
}

/// A failed request's status, with why.
pub fn failed(
    current: Option<&ShardedDatabaseBackupStatus>,
    message: &str,
    now: Timestamp,
) -> ShardedDatabaseBackupStatus {
    let mut base = current.cloned().unwrap_or_default();
    base.message = Some(message.to_owned());
    request_status(Some(&base), BackupPhase::Failed, None, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lag_seconds: u64, error: Option<&str>) -> ArchiveReport {
        ArchiveReport {
            archived_lsn: Some(10),
            lag_entries: lag_seconds * 2,
            lag_seconds,
            error: error.map(str::to_owned),
        }
    }

    fn now() -> Timestamp {
        "2026-12-07T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn archive_lagging_follows_the_reports_and_the_threshold() {
        let limit = Duration::from_secs(300);
        let cond = |a: &BTreeMap<String, ArchiveReport>| {
            let c = archive_condition(a, limit, Some(2), None, now());
            (c.status, c.reason)
        };
        assert_eq!(
            cond(&BTreeMap::new()),
            ("Unknown".to_owned(), reason::NO_REPORTS.to_owned())
        );
        let fine = BTreeMap::from([
            ("sh1".to_owned(), report(0, None)),
            ("sh2".to_owned(), report(300, None)),
        ]);
        assert_eq!(
            cond(&fine),
            ("False".to_owned(), reason::ARCHIVE_CURRENT.to_owned())
        );
        let late = BTreeMap::from([
            ("sh1".to_owned(), report(0, None)),
            ("sh2".to_owned(), report(301, None)),
        ]);
        let c = archive_condition(&late, limit, Some(2), None, now());
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", reason::ARCHIVE_LAGGING)
        );
        assert!(
            c.message.contains("sh2 (301 s, 602 entries)"),
            "{}",
            c.message
        );
        let down = BTreeMap::from([("sh1".to_owned(), report(5, Some("store unreachable")))]);
        let c = archive_condition(&down, limit, Some(2), None, now());
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", reason::ARCHIVE_FAILING)
        );
        assert!(c.message.contains("sh1: store unreachable"));
    }

    #[test]
    fn the_transition_time_stays_while_the_status_does() {
        let earlier: Timestamp = "2026-12-07T09:00:00Z".parse().unwrap();
        let fine = BTreeMap::from([("sh1".to_owned(), report(0, None))]);
        let first = archive_condition(&fine, Duration::from_secs(60), None, None, earlier);
        let status = ShardedDatabaseStatus {
            conditions: vec![first.clone()],
            ..Default::default()
        };
        let again = archive_condition(&fine, Duration::from_secs(60), None, Some(&status), now());
        assert_eq!(again.last_transition_time, first.last_transition_time);
        let late = BTreeMap::from([("sh1".to_owned(), report(61, None))]);
        let changed = archive_condition(&late, Duration::from_secs(60), None, Some(&status), now());
        assert_eq!(changed.last_transition_time, Time(now()));
    }

    #[test]
    fn an_unreadable_store_keeps_what_the_status_showed() {
        let current = BackupStatus {
            last_backup_id: Some("20261207T030000000Z".into()),
            ..Default::default()
        };
        let s = backup_status(Some(&current), None, &BTreeMap::new(), None);
        assert_eq!(s.last_backup_id, current.last_backup_id);
        let empty = Catalog {
            backups: Vec::new(),
            marks: BTreeMap::new(),
        };
        let s = backup_status(Some(&current), Some(&empty), &BTreeMap::new(), None);
        assert_eq!(
            s.last_backup_id, None,
            "the store is the truth when readable"
        );
    }

    #[test]
    fn a_request_moves_through_its_phases() {
        let running = request_status(None, BackupPhase::Running, Some("s3://b/p"), now());
        assert_eq!(running.phase, Some(BackupPhase::Running));
        assert!(running.started_at.is_some() && running.completed_at.is_none());
        let failed = failed(
            Some(&running),
            "server Server0: down [fleet-unavailable]",
            now(),
        );
        assert_eq!(failed.phase, Some(BackupPhase::Failed));
        assert_eq!(failed.store.as_deref(), Some("s3://b/p"));
        assert_eq!(failed.conditions[0].status, "False");
        assert_eq!(failed.conditions[0].reason, reason::BACKUP_FAILED);
        assert!(failed.conditions[0].message.contains("fleet-unavailable"));
    }
}
