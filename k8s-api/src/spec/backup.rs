//! `spec.backup` (continuous WAL archiving and base backups, docs/backup.md), `spec.restore` (a
//! new database built from a store, only at creation) and `status.backup`.
//!
//! ```yaml
//! spec:
//!   backup:
//!     store: s3://backups/shop/studt            # or file:///path (local mode, tests)
//!     s3: {endpoint: http://minio.minio:9000, region: us-east-1, credentialsSecretRef: {name: s3}}
//!     schedule: "0 3 * * *"                     # cron, UTC; 5 fields or 6 with seconds first
//!     retention: {keepCount: 7, keepDays: 14}
//!     archiveIntervalMs: 1000
//!   restore:                                    # only when the database is created
//!     store: s3://backups/shop/studt-old
//!     s3: {endpoint: ..., credentialsSecretRef: {name: s3}}
//!     toTime: "2026-12-07T10:00:00Z"            # or backupId: 20261207T030000123Z; neither: latest
//! ```
//!
//! The rules: the schema bounds every field (the store URL's form, the backup id's characters,
//! an RFC 3339 `toTime`); CEL refuses `backup.store == restore.store` ([`BACKUP_STORE_DIFFERS`],
//! ignoring one trailing `/`) and a restore naming both a backup and a time
//! ([`RESTORE_TARGET_FORM`]); the transition rule [`RESTORE_FIXED`] keeps `restore` as it was
//! created (it may be removed, never added or changed); Rust only: `schedule` is a cron
//! expression ([`parse_schedule`]). [`validate`] mirrors all of them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rules::{self, CelRule, is_dns_subdomain};
use super::{ShardedDatabaseSpec, SpecError};

/// Longest store URL.
pub const MAX_STORE_URL: usize = 1024;
/// A backup store URL: `s3://bucket[/prefix]` (a DNS-style bucket name) or `file:///path`.
pub const STORE_URL_PATTERN: &str =
    r"^(s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9](/[^?#]*)?|file:///[^?#]*)$";
/// A base backup id (what `walshard backup list` prints, e.g. `20261207T030000123Z`).
pub const BACKUP_ID_PATTERN: &str = r"^[A-Za-z0-9_-]{1,64}$";
/// An RFC 3339 time with a zone: `2026-12-07T10:00:00Z`, `2026-12-07T11:00:00.5+01:00`.
pub const TIME_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";
/// An S3 endpoint URL.
pub const ENDPOINT_PATTERN: &str = r"^https?://[^\s/?#]+(/[^\s?#]*)?$";
/// An S3 region name.
pub const REGION_PATTERN: &str = r"^[a-z0-9][-a-z0-9]*$";
/// The Secret keys of the S3 credentials (the usual AWS environment variables).
pub const S3_CREDENTIAL_KEYS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
/// Shortest archive interval accepted (milliseconds).
pub const MIN_ARCHIVE_INTERVAL_MS: i64 = 100;
/// Longest archive interval accepted (milliseconds).
pub const MAX_ARCHIVE_INTERVAL_MS: i64 = 60_000;

/// The restored fleet must archive elsewhere than where it was restored from: its history
/// diverges from the source's after the restore point.
pub const BACKUP_STORE_DIFFERS: CelRule = CelRule {
    at: "spec",
    rule: "!has(self.backup) || !has(self.restore) || (self.backup.store.endsWith('/') ? self.backup.store : self.backup.store + '/') != (self.restore.store.endsWith('/') ? self.restore.store : self.restore.store + '/')",
    message: "backup.store must differ from restore.store (the restored database's history diverges from the source's after the restore point: archive it under another prefix)",
};

/// A restore goes to one target: a backup, a time, or (neither) the latest point.
pub const RESTORE_TARGET_FORM: CelRule = CelRule {
    at: "spec.restore",
    rule: "!has(self.backupId) || !has(self.toTime)",
    message: "set restore.backupId or restore.toTime, not both (neither: the latest point)",
};

/// `restore` is set when the database is created, or never: it may be removed later (the
/// servers then lose their restore init container), not added or changed.
pub const RESTORE_FIXED: CelRule = CelRule {
    at: "spec",
    rule: "!has(self.restore) || (has(oldSelf.restore) && self.restore == oldSelf.restore)",
    message: "restore can only be set when the database is created (it may be removed later, not added or changed)",
};

/// Where a store is and how to reach it, for S3-compatible storage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Spec {
    /// The endpoint of an S3-compatible server (path-style requests), e.g.
    /// `http://minio.minio:9000`; AWS S3 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = ENDPOINT_PATTERN))]
    pub endpoint: Option<String>,
    /// The region (else the agents' `AWS_REGION`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = REGION_PATTERN))]
    pub region: Option<String>,
    /// A Secret with the keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, given to the
    /// agents (and read by the operator) as environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretNameRef>,
}

/// A Secret in the database's namespace, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretNameRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253), regex(pattern = rules::DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// How many base backups to keep; with neither, all. The newest is always kept, and every
/// point from the oldest kept backup on stays restorable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupRetentionSpec {
    /// Keep the newest this many backups (and whatever `keepDays` keeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub keep_count: Option<i32>,
    /// Keep backups that finished at most this many days ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36500))]
    pub keep_days: Option<i32>,
}

impl BackupRetentionSpec {
    /// `keepCount` as a count.
    pub fn keep_count(&self) -> Option<usize> {
        self.keep_count.and_then(|n| usize::try_from(n).ok())
    }

    /// `keepDays` in milliseconds.
    pub fn keep_age_ms(&self) -> Option<u64> {
        self.keep_days
            .and_then(|d| u64::try_from(d).ok())
            .map(|d| d.saturating_mul(86_400_000))
    }
}

/// `spec.backup`: every shard's primary archives its committed WAL to `store` continuously;
/// base backups are taken on `schedule` (and by `ShardedDatabaseBackup` objects), then
/// `retention` is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupSpec {
    /// `s3://bucket/prefix`, or `file:///path` (a path every agent and the operator share: local
    /// mode and tests).
    #[schemars(length(min = 1, max = MAX_STORE_URL), regex(pattern = STORE_URL_PATTERN))]
    pub store: String,
    /// S3 endpoint, region and credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// Take a base backup at every occurrence of this cron expression (UTC; 5 fields, or 6
    /// with seconds first), e.g. `0 3 * * *`; none: on demand only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: Option<String>,
    /// What to keep after each base backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<BackupRetentionSpec>,
    /// How often each shard's primary ships its committed entries (milliseconds; the agents'
    /// default, 1000, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = MIN_ARCHIVE_INTERVAL_MS, max = MAX_ARCHIVE_INTERVAL_MS))]
    pub archive_interval_ms: Option<i64>,
}

/// `spec.restore`: the database is created from a store (a base backup plus the archived WAL):
/// the latest point, a time, or exactly one backup.
#[derive(KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = kube::core::Rule::new(RESTORE_TARGET_FORM.rule).message(RESTORE_TARGET_FORM.message))]
pub struct RestoreSpec {
    /// The store to restore from (another database's `backup.store`).
    #[schemars(length(min = 1, max = MAX_STORE_URL), regex(pattern = STORE_URL_PATTERN))]
    pub store: String,
    /// S3 endpoint, region and credentials of that store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Spec>,
    /// Restore exactly this base backup (no archived entries after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = BACKUP_ID_PATTERN))]
    pub backup_id: Option<String>,
    /// Restore to this moment (RFC 3339): every write acknowledged before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 20, max = 64), regex(pattern = TIME_PATTERN))]
    pub to_time: Option<String>,
}

/// Parses a backup schedule: a cron expression, 5 fields or 6 with seconds first, in UTC. The
/// local fleet (`walshard up --backup-schedule`) and the operator both schedule with it.
pub fn parse_schedule(cron: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(cron)
        .map_err(|e| format!("{cron:?} is not a cron expression: {e}"))
}

/// `spec.backup` and `spec.restore` as the schema and CEL check them, and the schedule.
pub fn validate(spec: &ShardedDatabaseSpec) -> Result<(), SpecError> {
    if let Some(backup) = &spec.backup {
        store_url("backup.store", &backup.store)?;
        if let Some(s3) = &backup.s3 {
            validate_s3("backup.s3", s3)?;
        }
        if let Some(cron) = &backup.schedule {
            if cron.is_empty() || cron.len() > 128 {
                return Err(SpecError::invalid(
                    "backup.schedule",
                    "must have 1 to 128 characters",
                ));
            }
            parse_schedule(cron).map_err(|e| SpecError::invalid("backup.schedule", e))?;
        }
        if let Some(r) = &backup.retention {
            if r.keep_count.is_some_and(|n| !(1..=10_000).contains(&n)) {
                return Err(SpecError::invalid(
                    "backup.retention.keepCount",
                    "must be 1 to 10000",
                ));
            }
            if r.keep_days.is_some_and(|n| !(1..=36_500).contains(&n)) {
                return Err(SpecError::invalid(
                    "backup.retention.keepDays",
                    "must be 1 to 36500",
                ));
            }
        }
        if backup
            .archive_interval_ms
            .is_some_and(|ms| !(MIN_ARCHIVE_INTERVAL_MS..=MAX_ARCHIVE_INTERVAL_MS).contains(&ms))
        {
            return Err(SpecError::invalid(
                "backup.archiveIntervalMs",
                format!("must be {MIN_ARCHIVE_INTERVAL_MS} to {MAX_ARCHIVE_INTERVAL_MS}"),
            ));
        }
    }
    if let Some(restore) = &spec.restore {
        store_url("restore.store", &restore.store)?;
        if let Some(s3) = &restore.s3 {
            validate_s3("restore.s3", s3)?;
        }
        if let Some(id) = &restore.backup_id
            && !is_backup_id(id)
        {
            return Err(SpecError::invalid(
                "restore.backupId",
                format!("{id:?} is not a backup id (letters, digits, '-' and '_', at most 64)"),
            ));
        }
        if let Some(t) = &restore.to_time {
            parse_time(t).map_err(|e| SpecError::invalid("restore.toTime", e))?;
        }
        if restore.backup_id.is_some() && restore.to_time.is_some() {
            return Err(SpecError::invalid("restore", RESTORE_TARGET_FORM.message));
        }
    }
    if let (Some(backup), Some(restore)) = (&spec.backup, &spec.restore)
        && same_store(&backup.store, &restore.store)
    {
        return Err(SpecError::invalid(
            "backup.store",
            BACKUP_STORE_DIFFERS.message,
        ));
    }
    Ok(())
}

/// The transition rule [`RESTORE_FIXED`] in Rust.
pub fn validate_transition(
    old: &ShardedDatabaseSpec,
    new: &ShardedDatabaseSpec,
) -> Result<(), SpecError> {
    match (&old.restore, &new.restore) {
        (_, None) => Ok(()),
        (Some(o), Some(n)) if o == n => Ok(()),
        _ => Err(SpecError::invalid("restore", RESTORE_FIXED.message)),
    }
}

/// [`BACKUP_STORE_DIFFERS`]: the same URL, ignoring one trailing `/`.
pub fn same_store(a: &str, b: &str) -> bool {
    let slash = |s: &str| {
        if s.ends_with('/') {
            s.to_owned()
        } else {
            format!("{s}/")
        }
    };
    slash(a) == slash(b)
}

/// [`STORE_URL_PATTERN`] and [`MAX_STORE_URL`].
fn store_url(field: &'static str, url: &str) -> Result<(), SpecError> {
    let bad = || {
        SpecError::invalid(
            field,
            format!("{url:?} is not s3://bucket[/prefix] or file:///path"),
        )
    };
    if url.is_empty() || url.len() > MAX_STORE_URL || url.contains(['?', '#']) {
        return Err(bad());
    }
    if url.starts_with("file:///") {
        return Ok(());
    }
    let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
    let bucket = rest.split('/').next().unwrap_or_default();
    let b = bucket.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = (3..=63).contains(&b.len())
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'.');
    if ok { Ok(()) } else { Err(bad()) }
}

fn validate_s3(field: &'static str, s3: &S3Spec) -> Result<(), SpecError> {
    if let Some(endpoint) = &s3.endpoint {
        let rest = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"));
        let host = rest.and_then(|r| r.split('/').next()).unwrap_or_default();
        if endpoint.len() > 512
            || host.is_empty()
            || endpoint.contains(['?', '#'])
            || endpoint.chars().any(char::is_whitespace)
        {
            return Err(SpecError::invalid(
                field,
                format!("endpoint {endpoint:?} is not an http(s) URL"),
            ));
        }
    }
    if let Some(region) = &s3.region {
        let ok = !region.is_empty()
            && region.len() <= 64
            && region.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(SpecError::invalid(
                field,
                format!("region {region:?} is not a region name"),
            ));
        }
    }
    if let Some(secret) = &s3.credentials_secret_ref
        && !is_dns_subdomain(&secret.name)
    {
        return Err(SpecError::invalid(
            field,
            format!(
                "credentialsSecretRef: name {:?} is not a DNS subdomain",
                secret.name
            ),
        ));
    }
    Ok(())
}

/// [`BACKUP_ID_PATTERN`].
pub fn is_backup_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A `toTime` ([`TIME_PATTERN`]) as a time stamp.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    let shape_ok = text.len() >= 20
        && text.len() <= 64
        && text.as_bytes().get(10) == Some(&b'T')
        && (text.ends_with('Z')
            || text
                .get(text.len() - 6..)
                .is_some_and(|z| z.starts_with(['+', '-'])));
    if !shape_ok {
        return Err(format!(
            "{text:?} is not an RFC 3339 time such as 2026-12-07T10:00:00Z"
        ));
    }
    text.parse::<Timestamp>()
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-12-07T10:00:00Z: {e}"))
}

/// `status.backup`: what the operator knows of the database's backups (field manager
/// `walshard-operator-backup`).
#[derive(KubeSchema, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The id of the newest successful base backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_id: Option<String>,
    /// When it finished (the Last Backup column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_time: Option<Time>,
    /// The earliest moment a restore from the store can reach (the oldest backup's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restorable_from: Option<Time>,
    /// The latest moment every shard's archive is known complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restorable_to: Option<Time>,
    /// The last occurrence of `spec.backup.schedule` a backup was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// Per shard, its primary's WAL archive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["shard".into()]))]
    pub archive: Vec<ShardArchiveStatus>,
}

/// One shard's WAL archive, as its primary reports it to the control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardArchiveStatus {
    /// The shard id.
    pub shard: String,
    /// The last LSN known to be in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_lsn: Option<i64>,
    /// Committed entries not archived yet.
    #[serde(default)]
    pub lag_entries: i64,
    /// Seconds since the archive was last known complete (0 while it is).
    #[serde(default)]
    pub lag_seconds: i64,
    /// The last store error, while archiving fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_ids_and_times() {
        for ok in [
            "s3://bucket",
            "s3://my-bucket/a/b",
            "s3://b.c.d/x/",
            "file:///var/backups",
        ] {
            assert!(store_url("x", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "s3://",
            "s3://B/x",
            "s3://ab",
            "http://x/y",
            "file://rel",
            "s3://b-/x",
            "s3://bucket/x?y",
        ] {
            assert!(store_url("x", bad).is_err(), "{bad}");
        }
        assert!(same_store("s3://b/p", "s3://b/p/"));
        assert!(!same_store("s3://b/p", "s3://b/p2"));
        assert!(is_backup_id("20261207T030000123Z"));
        assert!(!is_backup_id("../x"));
        assert!(parse_time("2026-12-07T10:00:00Z").is_ok());
        assert!(parse_time("2026-12-07T10:00:00.250+01:00").is_ok());
        for bad in [
            "2026-12-07",
            "2026-12-07 10:00:00Z",
            "2026-13-07T10:00:00Z",
            "2026-12-07T10:00:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schedules_are_cron_expressions() {
        assert!(parse_schedule("0 3 * * *").is_ok());
        assert!(parse_schedule("*/30 * * * * *").is_ok());
        assert!(parse_schedule("at three").is_err());
        assert!(parse_schedule("61 * * * *").is_err());
    }

    #[test]
    fn retention_converts_days_to_milliseconds() {
        let r = BackupRetentionSpec {
            keep_count: Some(7),
            keep_days: Some(2),
        };
        assert_eq!(r.keep_count(), Some(7));
        assert_eq!(r.keep_age_ms(), Some(2 * 86_400_000));
    }
}
