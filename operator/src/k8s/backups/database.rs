//! A `ShardedDatabase` as the backup manager sees it: its schedule and its `status.backup`.
//!
//! - Without `spec.backup`: whatever the manager wrote before (`status.backup`, the
//!   `ArchiveLagging` condition) is removed, by applying an empty status with its field manager.
//! - Paused (`spec.paused`): nothing happens.
//! - With `spec.backup.schedule`: when an occurrence is due ([`schedule::due`] after
//!   `status.backup.lastScheduleTime`, or after the database's creation), a
//!   `ShardedDatabaseBackup` named `<db>-<YYYYMMDDHHMMSS>` is created (owned by the database,
//!   labels [`LABEL_SCHEDULED`] and [`LABEL_DATABASE`]; the same name for the same occurrence,
//!   so it is never created twice) and the occurrence recorded.
//! - `status.backup` and `ArchiveLagging` are refreshed ([`refresh`]), then the database is
//!   requeued at the next occurrence or the refresh interval, whichever comes first.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};
use walshard_backup::BackupStore;
use walshard_k8s_api::backup::{
    LABEL_DATABASE, LABEL_SCHEDULED, ShardedDatabaseBackup, ShardedDatabaseBackupSpec,
};
use walshard_k8s_api::names;
use walshard_k8s_api::spec::backup::parse_schedule;
use walshard_k8s_api::spec::{CONDITION_ARCHIVE_LAGGING, ShardedDatabase};

use super::request::publish;
use super::status::{self, reason};
use super::{BackupContext, BackupError, BaseBackups, FIELD_MANAGER, schedule, store};

/// Reconciles one database's schedule and backup status (the Controller's reconcile function).
pub async fn reconcile<B: BaseBackups>(
    db: Arc<ShardedDatabase>,
    ctx: Arc<BackupContext<B>>,
) -> Result<Action, BackupError> {
    let Some(spec) = db.spec.backup.clone() else {
        forget(&ctx, &db).await?;
        return Ok(Action::await_change());
    };
    if db.spec.paused || db.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let mut wait = ctx.settings.refresh;
    let mut scheduled = None;
    if let Some(cron) = spec
        .schedule
        .as_deref()
        .and_then(|c| parse_schedule(c).ok())
    {
        let since = db
            .status
            .as_ref()
            .and_then(|s| s.backup.as_ref())
            .and_then(|b| b.last_schedule_time.as_ref())
            .or(db.metadata.creation_timestamp.as_ref())
            .map_or(now, |t| t.0);
        if let Some(at) = schedule::due(&cron, since, now) {
            start_scheduled(&ctx, &db, at).await?;
            scheduled = Some(Time(at));
        }
        if let Some(next) = schedule::next(&cron, now) {
            wait = wait.min(next.duration_since(now).unsigned_abs());
        }
    }
    let backups = match store::open(
        &ctx.client,
        &db.namespace().unwrap_or_default(),
        &spec.store,
        spec.s3.as_ref(),
    )
    .await
    {
        Ok(s) => Some(s),
        Err(e) => {
            unreadable(&ctx, &db, &e).await;
            None
        }
    };
    refresh(&ctx, &db, backups.as_ref(), scheduled).await?;
    Ok(Action::requeue(wait.max(std::time::Duration::from_secs(1))))
}

/// Creates the backup request of the occurrence `at` (one that exists already is fine).
async fn start_scheduled<B: BaseBackups>(
    ctx: &BackupContext<B>,
    db: &ShardedDatabase,
    at: Timestamp,
) -> Result<(), BackupError> {
    let namespace = db.namespace().unwrap_or_default();
    let name = names::scheduled_backup(&db.name_any(), &schedule::stamp(at));
    let request = ShardedDatabaseBackup {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(BTreeMap::from([
                (LABEL_SCHEDULED.to_owned(), "true".to_owned()),
                (LABEL_DATABASE.to_owned(), db.name_any()),
            ])),
            owner_references: db.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: ShardedDatabaseBackupSpec {
            database: db.name_any(),
        },
        status: None,
    };
    let api: Api<ShardedDatabaseBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&params, &request).await {
        Ok(_) => {
            info!(%namespace, backup = %name, "scheduled base backup requested");
            let note = format!("scheduled base backup {name} for {at}");
            publish(
                ctx,
                db.object_ref(&()),
                EventType::Normal,
                reason::BACKUP_SCHEDULED,
                note,
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(BackupError::api(
            "create",
            format!("ShardedDatabaseBackup {name}"),
            e,
        )),
    }
}

/// Writes `status.backup` and `ArchiveLagging` of `db`: the newest backup and the restorable
/// range from `backups` (the status' own when the store could not be read), each shard's
/// archive from the control plane, `scheduled` as the last scheduled occurrence. No write when
/// the status shows it already.
pub async fn refresh<B: BaseBackups>(
    ctx: &BackupContext<B>,
    db: &ShardedDatabase,
    backups: Option<&BackupStore>,
    scheduled: Option<Time>,
) -> Result<(), BackupError> {
    let namespace = db.namespace().unwrap_or_default();
    let name = db.name_any();
    let catalog = match backups {
        Some(store) => match store.catalog().await {
            Ok(c) => Some(c),
            Err(e) => {
                unreadable(ctx, db, &BackupError::Store(e)).await;
                None
            }
        },
        None => None,
    };
    let archive = ctx.backups.archive(&namespace, &name).unwrap_or_default();
    let current = db.status.as_ref();
    let backup = status::backup_status(
        current.and_then(|s| s.backup.as_ref()),
        catalog.as_ref(),
        &archive,
        scheduled,
    );
    let condition = status::archive_condition(
        &archive,
        ctx.settings.archive_lag,
        db.metadata.generation,
        current,
        Timestamp::now(),
    );
    if status::database_shows(current, &backup, &condition) {
        return Ok(());
    }
    let lagging = current
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == CONDITION_ARCHIVE_LAGGING)
        })
        .is_some_and(|c| c.status == "True");
    if condition.status == "True" && !lagging {
        warn!(%namespace, %name, message = %condition.message, "archive lagging");
        publish(
            ctx,
            db.object_ref(&()),
            EventType::Warning,
            &condition.reason,
            condition.message.clone(),
        )
        .await;
    }
    let patch = status::database_patch(Some((&backup, &condition)));
    apply(ctx, &namespace, &name, &patch).await
}

/// Removes what the manager wrote into a database that no longer has `spec.backup`.
async fn forget<B: BaseBackups>(
    ctx: &BackupContext<B>,
    db: &ShardedDatabase,
) -> Result<(), BackupError> {
    let wrote = db.status.as_ref().is_some_and(|s| {
        s.backup.is_some()
            || s.conditions
                .iter()
                .any(|c| c.type_ == CONDITION_ARCHIVE_LAGGING)
    });
    if !wrote {
        return Ok(());
    }
    let patch = status::database_patch(None);
    apply(
        ctx,
        &db.namespace().unwrap_or_default(),
        &db.name_any(),
        &patch,
    )
    .await
}

async fn apply<B: BaseBackups>(
    ctx: &BackupContext<B>,
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<(), BackupError> {
    let api: Api<ShardedDatabase> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .map_err(|e| BackupError::api("patch", format!("ShardedDatabase {name} status"), e))?;
    Ok(())
}

/// The store could not be opened or read: a Warning Event (folded into a series by the
/// recorder); the status keeps what it showed.
async fn unreadable<B: BaseBackups>(ctx: &BackupContext<B>, db: &ShardedDatabase, e: &BackupError) {
    warn!(namespace = %db.namespace().unwrap_or_default(), name = %db.name_any(), error = %e, "backup store unreadable");
    let note = format!("reading the backup store: {e} [{}]", e.code());
    publish(
        ctx,
        db.object_ref(&()),
        EventType::Warning,
        reason::STORE_UNAVAILABLE,
        note,
    )
    .await;
}
