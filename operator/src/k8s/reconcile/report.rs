//! What the reconciler tells: Events about a database and the status fields it owns.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::warn;
use walshard_k8s_api::spec::{API_VERSION, KIND, ShardedDatabase};

use super::status::{self, OwnedStatus, reason};
use super::{Context, FIELD_MANAGER, Fleet, ReconcileError, apply};

/// Events for what [`apply::apply_all`] did: one Warning `ApplyFailed` listing every refused
/// object, one `ExpandingVolume` for claims resized and StatefulSets being recreated.
pub(super) async fn report_apply<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    applied: &apply::Applied,
) {
    if !applied.failures.is_empty() {
        let failures: Vec<String> = applied
            .failures
            .iter()
            .map(|(object, error)| format!("{object}: {error}"))
            .collect();
        publish(
            ctx,
            db,
            None,
            EventType::Warning,
            reason::APPLY_FAILED,
            "Apply",
            failures.join("; "),
        )
        .await;
    }
    if !applied.expanded.is_empty() {
        let resized: Vec<String> = applied
            .expanded
            .iter()
            .map(|(server, from, to)| format!("{server} {from} -> {to}"))
            .collect();
        publish(
            ctx,
            db,
            None,
            EventType::Normal,
            reason::EXPANDING_VOLUMES,
            "ExpandVolume",
            format!(
                "claims resized ({}); their StatefulSets are recreated with the new claim template, pods kept",
                resized.join(", ")
            ),
        )
        .await;
    }
}

/// An invalid spec: a Warning Event, every condition says why, nothing is applied.
pub(super) async fn invalid_spec<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    message: &str,
) -> Result<Action, ReconcileError> {
    warn!(%message, "invalid spec: nothing applied");
    let status = status::blocked(
        db.metadata.generation,
        db.status.as_ref(),
        reason::INVALID_SPEC,
        message,
        Timestamp::now(),
    );
    if !status.is_shown_by(db.status.as_ref()) {
        publish(
            ctx,
            db,
            None,
            EventType::Warning,
            reason::INVALID_SPEC,
            "Validate",
            message.to_owned(),
        )
        .await;
    }
    write_status(ctx, db, &status).await?;
    let namespace = db.namespace().unwrap_or_default();
    ctx.metrics.set_ready(&namespace, &db.name_any(), false);
    Ok(Action::await_change())
}

/// Server-side applies the reconciler's status fields, unless the status already shows them.
pub(super) async fn write_status<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    status: &OwnedStatus,
) -> Result<(), ReconcileError> {
    if status.is_shown_by(db.status.as_ref()) {
        return Ok(());
    }
    let namespace = db.namespace().unwrap_or_default();
    let api: Api<ShardedDatabase> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": status,
    });
    api.patch_status(
        &db.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(ReconcileError::Status)?;
    Ok(())
}

/// Publishes an Event about `db`, `related` to one of its objects; a failure is logged, never
/// fatal. (The recorder folds repeats of the same type, reason, action and related object into
/// one Event's series.)
pub(super) async fn publish<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    related: Option<ObjectReference>,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: related,
    };
    if let Err(error) = ctx.recorder.publish(&event, &db.object_ref(&())).await {
        warn!(%error, reason, "publishing an Event");
    }
}
