//! Server pods that are going away without the reconciler deciding it (`kubectl delete pod`, an
//! eviction by `kubectl drain` or the scheduler, a node shutdown): as soon as a pod carries a
//! `deletionTimestamp`, its server's primaries are switched over to other replicas, while the
//! pod's `preStop` hook still holds its containers up (see `objects::server`). One watcher on
//! the server pods of every database (label `app.kubernetes.io/component=server`); one handover
//! task per terminating pod, until its server leads no shard or the pod's deadline passes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::Api;
use kube::runtime::events::{Event, EventType};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::{Context, Fleet, lock, reason};
use crate::k8s::objects;
use walshard_k8s_api::spec::{API_VERSION, KIND};

/// Between two handover steps of a terminating pod.
const STEP: Duration = Duration::from_millis(250);
/// Longest a handover is tried when the pod's deadline is unknown.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// `(namespace, database, server)` of a terminating server pod of ours.
pub fn terminating_server(pod: &Pod) -> Option<(String, String, String)> {
    pod.metadata.deletion_timestamp.as_ref()?;
    let labels = pod.labels();
    if labels.get(objects::LABEL_MANAGED_BY).map(String::as_str) != Some(objects::MANAGED_BY)
        || labels.get(objects::LABEL_COMPONENT).map(String::as_str)
            != Some(objects::COMPONENT_SERVER)
    {
        return None;
    }
    Some((
        pod.namespace()?,
        labels.get(objects::LABEL_INSTANCE)?.clone(),
        labels.get(objects::LABEL_SERVER)?.clone(),
    ))
}

/// The label selector of the watched pods.
pub fn selector() -> String {
    format!(
        "{}={},{}={}",
        objects::LABEL_MANAGED_BY,
        objects::MANAGED_BY,
        objects::LABEL_COMPONENT,
        objects::COMPONENT_SERVER
    )
}

/// Watches server pods in `scope` (all namespaces when `None`) until the stream ends.
pub async fn watch<F: Fleet>(ctx: Arc<Context<F>>, scope: Option<String>) {
    let api: Api<Pod> = crate::k8s::scope::api(&ctx.client, scope.as_deref());
    let config = watcher::Config::default().labels(&selector());
    watcher(api, config)
        .default_backoff()
        .applied_objects()
        .for_each(|pod| {
            let ctx = ctx.clone();
            async move {
                match pod {
                    Ok(pod) => {
                        if terminating_server(&pod).is_some() {
                            tokio::spawn(async move { hand_over_terminating(&ctx, &pod).await });
                        }
                    }
                    Err(error) => warn!(%error, "watching server pods"),
                }
            }
        })
        .await;
}

/// Hands the primaries of a terminating pod's server over, stepping every [`STEP`] until it
/// leads no shard or the pod's deadline (its `deletionTimestamp`) passes. One task per pod:
/// a second call for a pod already handled returns at once.
pub async fn hand_over_terminating<F: Fleet>(ctx: &Context<F>, pod: &Pod) {
    let Some((namespace, db, server)) = terminating_server(pod) else {
        return;
    };
    let key = (
        (namespace.clone(), db.clone()),
        format!("pod {}", pod.name_any()),
    );
    if !lock(&ctx.handovers).insert(key.clone()) {
        return;
    }
    let deadline = pod
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| {
            let left = t.0.duration_since(k8s_openapi::jiff::Timestamp::now());
            Duration::try_from(left).ok()
        })
        .unwrap_or(DEFAULT_DEADLINE);
    let until = tokio::time::Instant::now() + deadline;
    let mut announced = false;
    loop {
        match ctx.fleet.handover(&namespace, &db, &server).await {
            Ok(true) => {
                if announced {
                    info!(%namespace, %db, %server, "terminating server leads no shard now");
                }
                break;
            }
            Ok(false) if !announced => {
                announced = true;
                info!(%namespace, %db, %server, pod = %pod.name_any(), "terminating pod: handing its primaries over");
                publish(ctx, &namespace, &db, pod, &server).await;
            }
            Ok(false) => {}
            Err(error) => {
                // No control plane for this database here (not leading, or deleted).
                debug!(%namespace, %db, %server, %error, "handover of a terminating pod");
                break;
            }
        }
        if tokio::time::Instant::now() + STEP > until {
            warn!(%namespace, %db, %server, "terminating pod: deadline passed before the handover");
            break;
        }
        tokio::time::sleep(STEP).await;
    }
    lock(&ctx.handovers).remove(&key);
}

async fn publish<F: Fleet>(ctx: &Context<F>, namespace: &str, db: &str, pod: &Pod, server: &str) {
    let regarding = ObjectReference {
        api_version: Some(API_VERSION.to_owned()),
        kind: Some(KIND.to_owned()),
        name: Some(db.to_owned()),
        namespace: Some(namespace.to_owned()),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: reason::HANDING_OVER.to_owned(),
        note: Some(format!(
            "pod {} of server {server} is terminating: switching its primaries over",
            pod.name_any()
        )),
        action: "HandOver".to_owned(),
        secondary: Some(pod.object_ref(&())),
    };
    if let Err(error) = ctx.recorder.publish(&event, &regarding).await {
        warn!(%error, "publishing an Event");
    }
}
