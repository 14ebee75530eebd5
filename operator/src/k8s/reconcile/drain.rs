//! Removing a server that left the spec: drained first ([`Fleet::drain`]), then its StatefulSet
//! and pod deleted, its claim kept or deleted per `retention.whenRemoved`.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};
use walshard_k8s_api::spec::{Retention, ShardedDatabase};

use super::observe::server_of;
use super::report::publish;
use super::status::Observation;
use super::{Context, Fleet, ReconcileError, delete_if_present, lock};
use crate::k8s::objects;

/// A server no longer in the spec: drained first, then its StatefulSet and pod deleted, its
/// claim kept or deleted per `retention.whenRemoved`.
pub(super) async fn remove_server<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    set: &StatefulSet,
    observation: &mut Observation,
) -> Result<(), ReconcileError> {
    let namespace = db.namespace().unwrap_or_default();
    let name = db.name_any();
    let server = server_of(set);
    let key = ((namespace.clone(), name.clone()), server.clone());
    match ctx.fleet.drain(&namespace, &name, &server).await {
        Ok(true) => {}
        Ok(false) => {
            observation.draining.push(server.clone());
            if lock(&ctx.draining).insert(key) {
                info!(%server, "draining a removed server");
                publish(
                    ctx,
                    db,
                    Some(set.object_ref(&())),
                    EventType::Normal,
                    "Draining",
                    "DrainServer",
                    format!("draining server {server}: moving its primaries and replicas away before deleting it"),
                )
                .await;
            }
            return Ok(());
        }
        Err(error) => {
            warn!(%server, %error, "drain failed");
            observation
                .drain_failures
                .push((server.clone(), error.to_string()));
            return Ok(());
        }
    }

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let claim = objects::data_claim(&name, &server);
    let retention = db.spec.storage.retention.when_removed;
    if retention == Retention::Retain && !claim_released(ctx, set, &claims, &claim).await? {
        // The StatefulSet controller owns the claim (whenDeleted: Delete) until it sees Retain.
        observation.draining.push(server);
        return Ok(());
    }
    let set_name = set.name_any();
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: set.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    delete_if_present(&sets, &set_name, &params).await?;
    if retention == Retention::Delete {
        delete_if_present(&claims, &claim, &DeleteParams::default()).await?;
    }
    lock(&ctx.draining).remove(&key);
    info!(%server, ?retention, "removed a drained server");
    let kept = match retention {
        Retention::Retain => format!("; its claim {claim} is kept"),
        Retention::Delete => format!("; its claim {claim} is deleted"),
    };
    publish(
        ctx,
        db,
        Some(set.object_ref(&())),
        EventType::Normal,
        "Removed",
        "RemoveServer",
        format!("removed drained server {server} (StatefulSet {set_name}){kept}"),
    )
    .await;
    Ok(())
}

/// Whether deleting `set` leaves `claim` in place: the set's claim policy is `Retain` (as the
/// StatefulSet controller saw it) and the claim has no owner reference to the set. Otherwise
/// the policy is switched to `Retain` (merge patch) and the caller waits.
pub(super) async fn claim_released<F: Fleet>(
    ctx: &Context<F>,
    set: &StatefulSet,
    claims: &Api<PersistentVolumeClaim>,
    claim: &str,
) -> Result<bool, ReconcileError> {
    let retains = set
        .spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .and_then(|p| p.when_deleted.as_deref())
        .is_none_or(|w| w == "Retain");
    let observed =
        set.status.as_ref().and_then(|s| s.observed_generation) >= set.metadata.generation;
    let set_name = set.name_any();
    if !retains {
        let sets: Api<StatefulSet> =
            Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
        let patch = serde_json::json!({
            "spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain"}}
        });
        sets.patch(&set_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| ReconcileError::api("patch", "StatefulSet", &set_name, e))?;
        return Ok(false);
    }
    let owned = claims
        .get_opt(claim)
        .await
        .map_err(|e| ReconcileError::api("get", "PersistentVolumeClaim", claim, e))?
        .is_some_and(|c| {
            c.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == set.metadata.uid.as_ref())
        });
    Ok(observed && !owned)
}
