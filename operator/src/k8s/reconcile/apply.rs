//! Server-side apply of the desired objects, where one refused object never stops the others:
//! an API error is recorded (Degraded `ApplyFailed` and a Warning Event in the caller), and a
//! server whose StatefulSet was refused keeps being observed through its live object, so
//! failover bookkeeping, drains and status go on for everything that did apply.
//!
//! Volume expansion: a StatefulSet's `volumeClaimTemplates` cannot change, so a claim template
//! that differs (a larger `storage.size`, a `storageClassName` set for the first time) is carried
//! out as: patch the server's claim to the new size (the StorageClass must allow expansion;
//! if it refuses, nothing else is done), delete the StatefulSet with `Orphan` propagation (its
//! pod and claim keep running: no restart, no failover), and apply it again once it is gone;
//! the new StatefulSet adopts the running pod.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::{Context, FIELD_MANAGER, Fleet, ReconcileError, server_of};
use crate::k8s::objects::Desired;
use walshard_k8s_api::spec::transition;

/// What [`apply_all`] did.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// One per desired server: the applied object, or the live one when its apply was refused
    /// or it is being recreated.
    pub stateful_sets: Vec<StatefulSet>,
    pub deployments: Vec<Deployment>,
    /// `(object, error)` of every refused apply or expansion step.
    pub failures: Vec<(String, String)>,
    /// Servers whose StatefulSet is being recreated for a new claim template.
    pub recreating: Vec<String>,
    /// `(server, old size, new size)` of claims patched in this pass.
    pub expanded: Vec<(String, String, String)>,
}

/// How a server's claim template changes from the live StatefulSet to the desired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimChange {
    /// Nothing to do.
    Same,
    /// Larger: patch the claim, then recreate the StatefulSet.
    Grow {
        /// The live size.
        from: String,
        /// The desired size.
        to: String,
    },
    /// Same size, other template (a class set for the first time): recreate only.
    Recreate,
    /// Smaller: refused (a claim cannot shrink; the CRD's transition rule refuses it too).
    Shrink {
        /// The live size.
        from: String,
        /// The desired (smaller) size.
        to: String,
    },
}

fn claim_template(set: &StatefulSet) -> (Option<String>, Option<String>) {
    let template = set.spec.volume_claim_templates.as_ref().and_then(|t| {
        t.iter()
            .find(|c| c.metadata.name.as_deref() == Some("data"))
    });
    let spec = template.and_then(|t| t.spec.as_ref());
    let size = spec
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    let class = spec.and_then(|s| s.storage_class_name.clone());
    (size, class)
}

/// Compares the claim templates (size and class only: the API server defaults the rest).
pub fn claim_change(live: &StatefulSet, desired: &StatefulSet) -> ClaimChange {
    let (live_size, live_class) = claim_template(live);
    let (size, class) = claim_template(desired);
    let bytes = |s: &Option<String>| s.as_deref().and_then(transition::bytes);
    match (bytes(&live_size), bytes(&size)) {
        (Some(old), Some(new)) if new > old => ClaimChange::Grow {
            from: live_size.unwrap_or_default(),
            to: size.unwrap_or_default(),
        },
        (Some(old), Some(new)) if new < old => ClaimChange::Shrink {
            from: live_size.unwrap_or_default(),
            to: size.unwrap_or_default(),
        },
        _ if live_class != class && class.is_some() => ClaimChange::Recreate,
        _ => ClaimChange::Same,
    }
}

/// Server-side applies every desired object but the Secret, in dependency order. `live` are
/// the database's StatefulSets as listed before.
pub(super) async fn apply_all<F: Fleet>(
    ctx: &Context<F>,
    namespace: &str,
    desired: &Desired,
    live: &[StatefulSet],
) -> Result<Applied, ReconcileError> {
    let mut out = Applied::default();
    apply_each(ctx, namespace, &desired.service_accounts, &mut out.failures).await?;
    apply_each(ctx, namespace, &desired.roles, &mut out.failures).await?;
    apply_each(ctx, namespace, &desired.role_bindings, &mut out.failures).await?;
    apply_each(ctx, namespace, &desired.config_maps, &mut out.failures).await?;
    apply_each(ctx, namespace, &desired.services, &mut out.failures).await?;
    for set in &desired.stateful_sets {
        let current = live.iter().find(|l| l.name_any() == set.name_any());
        if let Some(current) = current {
            let apply_now = if current.metadata.deletion_timestamp.is_some() {
                // Deleted with orphan propagation; applied again once it is gone.
                out.recreating.push(server_of(current));
                false
            } else {
                claim_step(ctx, namespace, current, set, &mut out).await?
            };
            if !apply_now {
                out.stateful_sets.push(current.clone());
                continue;
            }
        }
        match apply_one(ctx, namespace, set).await? {
            Ok(applied) => out.stateful_sets.push(applied),
            Err(error) => {
                out.failures
                    .push((format!("StatefulSet {}", set.name_any()), error));
                if let Some(current) = current {
                    out.stateful_sets.push(current.clone());
                }
            }
        }
    }
    for deployment in &desired.deployments {
        match apply_one(ctx, namespace, deployment).await? {
            Ok(applied) => out.deployments.push(applied),
            Err(error) => out
                .failures
                .push((format!("Deployment {}", deployment.name_any()), error)),
        }
    }
    apply_each(ctx, namespace, &desired.pdbs, &mut out.failures).await?;
    Ok(out)
}

/// Carries out a claim template change; `true` when the StatefulSet is to be applied now.
async fn claim_step<F: Fleet>(
    ctx: &Context<F>,
    namespace: &str,
    live: &StatefulSet,
    desired: &StatefulSet,
    out: &mut Applied,
) -> Result<bool, ReconcileError> {
    let server = server_of(live);
    let set_name = live.name_any();
    let grow = match claim_change(live, desired) {
        ClaimChange::Same => return Ok(true),
        ClaimChange::Shrink { from, to } => {
            out.failures.push((
                format!("StatefulSet {set_name}"),
                format!("storage cannot shrink from {from} to {to}; the claims are kept"),
            ));
            return Ok(false);
        }
        ClaimChange::Recreate => None,
        ClaimChange::Grow { from, to } => Some((from, to)),
    };
    if let Some((from, to)) = &grow {
        let claim = format!("data-{set_name}-0");
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
        let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": to}}}});
        match claims
            .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => info!(%claim, %from, %to, "claim resized"),
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(kube::Error::Api(status)) => {
                warn!(%claim, message = %status.message, "claim expansion refused");
                out.failures.push((
                    format!("PersistentVolumeClaim {claim}"),
                    format!(
                        "expanding to {to} refused (does its StorageClass allow volume expansion?): {}",
                        status.message
                    ),
                ));
                return Ok(false);
            }
            Err(e) => {
                return Err(ReconcileError::api(
                    "patch",
                    "PersistentVolumeClaim",
                    &claim,
                    e,
                ));
            }
        }
        out.expanded
            .push((server.clone(), from.clone(), to.clone()));
    }
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Orphan),
        preconditions: live.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match sets.delete(&set_name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(kube::Error::Api(status)) => {
            out.failures.push((
                format!("StatefulSet {set_name}"),
                format!(
                    "deleting it to change its claim template: {}",
                    status.message
                ),
            ));
            return Ok(false);
        }
        Err(e) => return Err(ReconcileError::api("delete", "StatefulSet", &set_name, e)),
    }
    info!(%set_name, "StatefulSet deleted (pod and claim orphaned) to change its claim template");
    out.recreating.push(server);
    Ok(false)
}

/// Applies one object: `Ok(Err(message))` when the API server refused it.
async fn apply_one<F: Fleet, K>(
    ctx: &Context<F>,
    namespace: &str,
    object: &K,
) -> Result<Result<K, String>, ReconcileError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let name = object.name_any();
    match api.patch(&name, &params, &Patch::Apply(object)).await {
        Ok(applied) => Ok(Ok(applied)),
        Err(kube::Error::Api(status)) => {
            warn!(kind = %K::kind(&()), %name, code = status.code, message = %status.message, "apply refused");
            Ok(Err(format!("{} ({})", status.message, status.code)))
        }
        Err(e) => Err(ReconcileError::api("apply", &K::kind(&()), &name, e)),
    }
}

async fn apply_each<F: Fleet, K>(
    ctx: &Context<F>,
    namespace: &str,
    objects: &[K],
    failures: &mut Vec<(String, String)>,
) -> Result<(), ReconcileError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    for object in objects {
        if let Err(error) = apply_one(ctx, namespace, object).await? {
            failures.push((format!("{} {}", K::kind(&()), object.name_any()), error));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(size: &str, class: Option<&str>) -> StatefulSet {
        let mut spec = json!({"resources": {"requests": {"storage": size}}});
        if let Some(class) = class {
            spec["storageClassName"] = json!(class);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "db-server0"},
            "spec": {"selector": {}, "serviceName": "s", "template": {},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": spec}]}
        }))
        .unwrap()
    }

    #[test]
    fn claim_changes() {
        let ten = set("10Gi", None);
        assert_eq!(claim_change(&ten, &set("10Gi", None)), ClaimChange::Same);
        assert_eq!(claim_change(&ten, &set("10240Mi", None)), ClaimChange::Same);
        assert_eq!(
            claim_change(&ten, &set("20Gi", None)),
            ClaimChange::Grow {
                from: "10Gi".into(),
                to: "20Gi".into()
            }
        );
        assert!(matches!(
            claim_change(&ten, &set("5Gi", None)),
            ClaimChange::Shrink { .. }
        ));
        assert_eq!(
            claim_change(&ten, &set("10Gi", Some("fast"))),
            ClaimChange::Recreate
        );
        assert_eq!(
            claim_change(&set("10Gi", Some("fast")), &set("10Gi", Some("fast"))),
            ClaimChange::Same
        );
    }
}
