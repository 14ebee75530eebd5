//! One `ShardedDatabaseBackup`: `Pending` → `Running` → `Succeeded` or `Failed`.
//!
//! 1. A finished request is left alone. One whose backup ended here but whose status write
//!    failed gets that status now. One found `Running` otherwise was interrupted (the operator
//!    that ran it stopped): it fails, saying so; create another.
//! 2. Its database must exist and have `spec.backup`, and the store must open (credentials from
//!    the Secret); otherwise it fails with the reason.
//! 3. Its database's control plane must run in this operator; while it does not, the request
//!    stays `Pending` (retried) up to [`BackupSettings::start_timeout`] after its creation.
//! 4. `Running` (status, Event), then the base backup through the agents.
//! 5. Success: `Succeeded` with the backup's id and size; the database's retention is applied,
//!    and the scheduled requests whose backups it deleted are deleted; the database's
//!    `status.backup` is refreshed. Failure: `Failed` with the message and its code, a Warning
//!    Event `BackupFailed` on the request and on the database.
//!
//! [`BackupSettings::start_timeout`]: super::BackupSettings::start_timeout

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};
use walshard_backup::{Manifest, Retention, now_ms};
use walshard_k8s_api::backup::{
    BackupPhase, KIND, LABEL_DATABASE, LABEL_SCHEDULED, ShardedDatabaseBackup,
    ShardedDatabaseBackupStatus,
};
use walshard_k8s_api::spec::{API_VERSION, BackupSpec, ShardedDatabase};

use super::status::{self, reason};
use super::{BackupContext, BackupError, BaseBackups, FIELD_MANAGER, database, store};

/// Requeue of a request waiting for its database's control plane.
const WAIT_FOR_CONTROL_PLANE: Duration = Duration::from_secs(10);

/// Reconciles one backup request (the Controller's reconcile function).
pub async fn reconcile<B: BaseBackups>(
    request: Arc<ShardedDatabaseBackup>,
    ctx: Arc<BackupContext<B>>,
) -> Result<Action, BackupError> {
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let key = (namespace.clone(), name.clone());
    let pending = lock(&ctx.unwritten).remove(&key);
    if let Some(done) = pending {
        // The backup ended in this process; only its status write failed.
        if let Err(e) = write(&ctx, &request, &done).await {
            lock(&ctx.unwritten).insert(key, done);
            return Err(e);
        }
        return Ok(Action::await_change());
    }
    match request.phase() {
        BackupPhase::Succeeded | BackupPhase::Failed => return Ok(Action::await_change()),
        BackupPhase::Running => {
            warn!(%namespace, %name, "a backup found running was interrupted");
            let message = "interrupted: the operator running it stopped before it finished; create another ShardedDatabaseBackup";
            fail(&ctx, &request, None, message).await?;
            return Ok(Action::await_change());
        }
        BackupPhase::Pending => {}
    }
    let dbs: Api<ShardedDatabase> = Api::namespaced(ctx.client.clone(), &namespace);
    let database = &request.spec.database;
    let db = dbs
        .get_opt(database)
        .await
        .map_err(|e| BackupError::api("get", format!("ShardedDatabase {database}"), e))?;
    let Some(db) = db else {
        fail(
            &ctx,
            &request,
            None,
            &format!("ShardedDatabase {database} not found"),
        )
        .await?;
        return Ok(Action::await_change());
    };
    let Some(spec) = db.spec.backup.clone() else {
        let message =
            format!("ShardedDatabase {database} has no spec.backup (no store to back up to)");
        fail(&ctx, &request, Some(&db), &message).await?;
        return Ok(Action::await_change());
    };
    let backups = match store::open(&ctx.client, &namespace, &spec.store, spec.s3.as_ref()).await {
        Ok(s) => s,
        Err(e) => {
            fail(&ctx, &request, Some(&db), &format!("{e} [{}]", e.code())).await?;
            return Ok(Action::await_change());
        }
    };
    if !ctx.backups.runs(&namespace, database) {
        let age = request
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| Timestamp::now().duration_since(t.0).unsigned_abs())
            .unwrap_or_default();
        if age < ctx.settings.start_timeout {
            info!(%namespace, %name, %database, "waiting for the database's control plane");
            return Ok(Action::requeue(WAIT_FOR_CONTROL_PLANE));
        }
        let e = BackupError::NotRunning {
            namespace: namespace.clone(),
            name: database.clone(),
        };
        fail(&ctx, &request, Some(&db), &format!("{e} [{}]", e.code())).await?;
        return Ok(Action::await_change());
    }

    let running = status::request_status(
        request.status.as_ref(),
        BackupPhase::Running,
        Some(backups.url()),
        Timestamp::now(),
    );
    write(&ctx, &request, &running).await?;
    info!(%namespace, %name, %database, store = %backups.url(), "base backup started");
    event(
        &ctx,
        &request,
        EventType::Normal,
        reason::BACKUP_STARTED,
        format!("base backup of {database} into {}", backups.url()),
    )
    .await;

    match ctx.backups.take(&db, &backups).await {
        Ok(manifest) => {
            let done =
                status::succeeded(Some(&running), &manifest, backups.url(), Timestamp::now());
            ctx.metrics.finished(
                &namespace,
                database,
                true,
                Timestamp::now().as_millisecond(),
            );
            if let Err(e) = write(&ctx, &request, &done).await {
                lock(&ctx.unwritten).insert(key, done);
                return Err(e);
            }
            let message = done.message.clone().unwrap_or_default();
            info!(%namespace, %name, %database, backup = %manifest.id, "{message}");
            event(
                &ctx,
                &request,
                EventType::Normal,
                reason::BACKUP_SUCCEEDED,
                message,
            )
            .await;
            retain(&ctx, &db, &spec, &backups, &manifest).await;
            database::refresh(&ctx, &db, Some(&backups), None).await?;
        }
        Err(e) => {
            let message = format!("{e} [{}]", e.code());
            warn!(%namespace, %name, %database, error = %e, code = e.code(), "base backup failed");
            fail(&ctx, &request, Some(&db), &message).await?;
        }
    }
    Ok(Action::await_change())
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The request failed: its status, a Warning Event on it and on its database, the metrics.
async fn fail<B: BaseBackups>(
    ctx: &BackupContext<B>,
    request: &ShardedDatabaseBackup,
    db: Option<&ShardedDatabase>,
    message: &str,
) -> Result<(), BackupError> {
    let failed = status::failed(request.status.as_ref(), message, Timestamp::now());
    let namespace = request.namespace().unwrap_or_default();
    ctx.metrics.finished(
        &namespace,
        &request.spec.database,
        false,
        Timestamp::now().as_millisecond(),
    );
    if let Err(e) = write(ctx, request, &failed).await {
        lock(&ctx.unwritten).insert((namespace, request.name_any()), failed);
        return Err(e);
    }
    event(
        ctx,
        request,
        EventType::Warning,
        reason::BACKUP_FAILED,
        message.to_owned(),
    )
    .await;
    if let Some(db) = db {
        let note = format!("ShardedDatabaseBackup {}: {message}", request.name_any());
        publish(
            ctx,
            db.object_ref(&()),
            EventType::Warning,
            reason::BACKUP_FAILED,
            note,
        )
        .await;
    }
    Ok(())
}

/// Applies the database's retention after a backup, then deletes the scheduled requests whose
/// backups it removed; failures are Events, never the backup's.
async fn retain<B: BaseBackups>(
    ctx: &BackupContext<B>,
    db: &ShardedDatabase,
    spec: &BackupSpec,
    backups: &walshard_backup::BackupStore,
    manifest: &Manifest,
) {
    let Some(retention) = spec.retention else {
        return;
    };
    let policy = Retention {
        keep_count: retention.keep_count(),
        keep_age_ms: retention.keep_age_ms(),
    };
    let gone = match backups.apply_retention(policy, now_ms()).await {
        Ok(gone) => gone,
        Err(e) => {
            warn!(error = %e, "retention failed");
            let note = format!(
                "retention after backup {} failed: {e} [{}]",
                manifest.id,
                e.code()
            );
            publish(
                ctx,
                db.object_ref(&()),
                EventType::Warning,
                reason::STORE_UNAVAILABLE,
                note,
            )
            .await;
            return;
        }
    };
    if gone.backups.is_empty() && gone.chunks.is_empty() {
        return;
    }
    let note = format!(
        "retention removed {} backups ({}) and {} archived chunks",
        gone.backups.len(),
        gone.backups
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        gone.chunks.len()
    );
    info!("{note}");
    publish(
        ctx,
        db.object_ref(&()),
        EventType::Normal,
        reason::RETENTION,
        note,
    )
    .await;
    let namespace = db.namespace().unwrap_or_default();
    let requests: Api<ShardedDatabaseBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = format!("{LABEL_DATABASE}={},{LABEL_SCHEDULED}=true", db.name_any());
    let listed = match requests
        .list(&ListParams::default().labels(&selector))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "listing scheduled backups for retention");
            return;
        }
    };
    let deleted: Vec<String> = gone.backups.iter().map(ToString::to_string).collect();
    for old in listed.items.iter().filter(|r| {
        r.status
            .as_ref()
            .and_then(|s| s.backup_id.as_ref())
            .is_some_and(|id| deleted.contains(id))
    }) {
        let name = old.name_any();
        match requests.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                info!(request = %name, "deleted the scheduled backup request of a removed backup")
            }
            Err(e) => warn!(request = %name, error = %e, "deleting a scheduled backup request"),
        }
    }
}

/// Server-side applies a request's status (field manager [`FIELD_MANAGER`]).
async fn write<B: BaseBackups>(
    ctx: &BackupContext<B>,
    request: &ShardedDatabaseBackup,
    status: &ShardedDatabaseBackupStatus,
) -> Result<(), BackupError> {
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let api: Api<ShardedDatabaseBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({"apiVersion": API_VERSION, "kind": KIND, "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| BackupError::api("patch", format!("ShardedDatabaseBackup {name} status"), e))?;
    Ok(())
}

async fn event<B: BaseBackups>(
    ctx: &BackupContext<B>,
    request: &ShardedDatabaseBackup,
    type_: EventType,
    reason: &str,
    note: String,
) {
    publish(ctx, request.object_ref(&()), type_, reason, note).await;
}

/// Publishes an Event about `regarding`; a failure is logged, never fatal.
pub(super) async fn publish<B: BaseBackups>(
    ctx: &BackupContext<B>,
    regarding: k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Backup".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &regarding).await {
        warn!(%error, reason, "publishing an Event");
    }
}
