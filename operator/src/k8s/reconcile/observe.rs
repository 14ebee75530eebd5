//! The state of the applied objects, as the status and the rollout read it.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::{Resource, ResourceExt};
use walshard_k8s_api::names;
use walshard_k8s_api::spec::ShardedDatabase;

use super::status::{RouterState, ServerState};
use crate::k8s::objects;

pub(super) fn owned_by(object: &impl Resource, db: &ShardedDatabase) -> bool {
    let uid = db.metadata.uid.as_deref();
    object
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// The server a StatefulSet runs: its server label, else its name.
pub(super) fn server_of(set: &StatefulSet) -> String {
    set.labels()
        .get(objects::LABEL_SERVER)
        .cloned()
        .unwrap_or_else(|| set.name_any())
}

pub(super) fn server_state(set: &StatefulSet) -> ServerState {
    let status = set.status.as_ref();
    let wanted = set.spec.replicas.unwrap_or(1);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    ServerState {
        server: server_of(set),
        ready: wanted >= 1 && ready >= wanted,
        rolled_out: !outdated(set) && observed_current(set),
    }
}

/// The StatefulSet controller has seen the latest spec.
pub(super) fn observed_current(set: &StatefulSet) -> bool {
    set.status.as_ref().and_then(|s| s.observed_generation) >= set.metadata.generation
}

/// The set's pod runs an older template: the StatefulSet controller has seen the latest spec and
/// made the pod, which is not at the update revision. (Under `OnDelete`, `currentRevision` never
/// catches up with `updateRevision`, so count the pods at the update revision instead.)
pub(super) fn outdated(set: &StatefulSet) -> bool {
    let wanted = set.spec.replicas.unwrap_or(1);
    let Some(status) = set.status.as_ref() else {
        return false;
    };
    status.observed_generation.is_some()
        && observed_current(set)
        && status.replicas >= wanted
        && status.updated_replicas.unwrap_or(0) < wanted
}

pub(super) fn router_state(deployments: &[Deployment], db: &str) -> RouterState {
    let router = names::router(db);
    let Some(d) = deployments.iter().find(|d| d.name_any() == router) else {
        return RouterState::default();
    };
    let status = d.status.as_ref();
    let replicas = d.spec.replicas.unwrap_or(1);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let total = status.and_then(|s| s.replicas).unwrap_or(0);
    RouterState {
        replicas,
        ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        rolled_out: status.and_then(|s| s.observed_generation) >= d.metadata.generation
            && updated >= replicas
            && total <= replicas,
    }
}
