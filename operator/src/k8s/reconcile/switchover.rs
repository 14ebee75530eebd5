//! User switchovers on Kubernetes: the annotation `walshard.io/switchover: "sh1=Server2"` (several
//! comma-separated) on a `ShardedDatabase` asks its control plane for a planned switchover of each
//! shard to the named replica. The reconciler requests it (Event `Switchover`), removes the
//! annotation once every named replica is primary (Event `SwitchedOver`), and removes it with a
//! Warning Event `SwitchoverRefused` when it cannot be done (malformed, unknown shard, not a
//! replica).

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::{Context, Fleet, ReconcileError, lock, publish};
use walshard_k8s_api::spec::ShardedDatabase;
use walshard_k8s_api::switchover::{SWITCHOVER_ANNOTATION, parse_switchover};

/// Handles the annotation; `true` while a switchover is under way.
pub(super) async fn requested<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
) -> Result<bool, ReconcileError> {
    let Some(text) = db.annotations().get(SWITCHOVER_ANNOTATION).cloned() else {
        return Ok(false);
    };
    let namespace = db.namespace().unwrap_or_default();
    let name = db.name_any();
    let key = (
        (namespace.clone(), name.clone()),
        format!("switchover {text}"),
    );
    let mut outcome: Result<bool, String> = parse_switchover(&text).map(|_| true);
    if let Ok(pairs) = parse_switchover(&text) {
        for (shard, to) in &pairs {
            match ctx.fleet.switchover(&namespace, &name, shard, to).await {
                Ok(done) => {
                    if let Ok(all) = &mut outcome {
                        *all &= done;
                    }
                }
                Err(e) => {
                    outcome = Err(format!("{shard}={to}: {e}"));
                    break;
                }
            }
        }
    }
    match outcome {
        Ok(false) => {
            if lock(&ctx.handovers).insert(key) {
                info!(%text, "switchover requested");
                publish(
                    ctx,
                    db,
                    None,
                    EventType::Normal,
                    "Switchover",
                    "Switchover",
                    format!("switching over {text} (annotation {SWITCHOVER_ANNOTATION})"),
                )
                .await;
            }
            Ok(true)
        }
        Ok(true) => {
            lock(&ctx.handovers).remove(&key);
            remove_annotation(ctx, db).await?;
            publish(
                ctx,
                db,
                None,
                EventType::Normal,
                "SwitchedOver",
                "Switchover",
                format!("switched over: {text}"),
            )
            .await;
            Ok(false)
        }
        Err(reason) => {
            lock(&ctx.handovers).remove(&key);
            warn!(%text, %reason, "switchover refused");
            remove_annotation(ctx, db).await?;
            publish(
                ctx,
                db,
                None,
                EventType::Warning,
                "SwitchoverRefused",
                "Switchover",
                format!("{SWITCHOVER_ANNOTATION}: {text:?} refused: {reason}"),
            )
            .await;
            Ok(false)
        }
    }
}

/// Removes the annotation (JSON merge patch; it is the user's field, not applied by us).
async fn remove_annotation<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
) -> Result<(), ReconcileError> {
    let namespace = db.namespace().unwrap_or_default();
    let api: Api<ShardedDatabase> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {SWITCHOVER_ANNOTATION: null}}});
    api.patch(
        &db.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| ReconcileError::api("patch", &ShardedDatabase::kind(&()), &db.name_any(), e))?;
    Ok(())
}
