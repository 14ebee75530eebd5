//! Rolling an updated pod template out: one server at a time, its primaries handed over first.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};
use walshard_k8s_api::names;
use walshard_k8s_api::spec::ShardedDatabase;

use super::observe::{outdated, server_of};
use super::report::publish;
use super::status::{Observation, reason};
use super::{Context, Fleet, ReconcileError, delete_if_present, lock};

/// A server's pod is deleted for a template update at most once in this long (the StatefulSet's
/// status may still count the new pod as outdated for a moment).
const RESTART_GRACE: Duration = Duration::from_secs(60);

/// Rolls an updated pod template out, one server at a time (the StatefulSets are `OnDelete`).
/// An outdated server that is not ready is restarted at once (it serves nothing; the new
/// template may be its fix). A ready one only while the fleet is settled (every server ready,
/// nothing draining, every shard with a primary), and servers that lead no shard first. A server
/// is not restarted twice within [`RESTART_GRACE`]. Returns whether a pod was deleted.
pub(super) async fn restart_one<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    sets: &[StatefulSet],
    observation: &mut Observation,
) -> Result<bool, ReconcileError> {
    let namespace = db.namespace().unwrap_or_default();
    let name = db.name_any();
    let key = (namespace.clone(), name.clone());
    let recent = |server: &str| {
        lock(&ctx.restarts)
            .get(&(key.clone(), server.to_owned()))
            .is_some_and(|at| at.elapsed() < RESTART_GRACE)
    };
    let ready = |server: &str| {
        observation
            .servers
            .iter()
            .any(|s| s.server == server && s.ready)
    };
    // Not a server whose StatefulSet is being recreated: its pod is orphaned for the moment.
    let outdated: Vec<String> = sets
        .iter()
        .filter(|s| outdated(s) && s.metadata.deletion_timestamp.is_none())
        .map(server_of)
        .filter(|server| !recent(server) && !observation.recreating.contains(server))
        .collect();
    let topology = observation.topology.as_ref();
    let leads = |server: &str| {
        topology.is_some_and(|t| {
            t.shards
                .values()
                .any(|s| s.primary.as_deref() == Some(server))
        })
    };
    let settled = observation.servers.iter().all(|s| s.ready)
        && observation.draining.is_empty()
        && observation.drain_failures.is_empty()
        && observation.recreating.is_empty()
        && topology.is_some_and(|t| observation.shards.iter().all(|id| t.primary(id).is_some()));
    let chosen = match outdated.iter().find(|server| !ready(server)) {
        Some(unready) => Some(unready.clone()),
        None if settled => outdated
            .iter()
            .min_by_key(|server| (leads(server), server.as_str()))
            .cloned(),
        None => None,
    };
    let Some(server) = chosen else {
        if !outdated.is_empty() {
            debug!(servers = ?outdated, "outdated servers wait for a settled fleet");
        }
        return Ok(false);
    };
    let related = sets
        .iter()
        .find(|s| server_of(s) == server)
        .map(|s| s.object_ref(&()));
    // A planned restart is not a failover: a ready server's primaries move first.
    if ready(&server) && leads(&server) {
        let done = match ctx.fleet.handover(&namespace, &name, &server).await {
            Ok(done) => done,
            Err(error) => {
                warn!(%server, %error, "handover before restart");
                false
            }
        };
        if !done {
            if lock(&ctx.handovers).insert((key.clone(), server.clone())) {
                publish(
                    ctx,
                    db,
                    related,
                    EventType::Normal,
                    reason::HANDING_OVER,
                    "HandOver",
                    format!("switching the primaries of {server} over before restarting it"),
                )
                .await;
            }
            observation.handing_over.push(server);
            return Ok(true);
        }
    }
    lock(&ctx.handovers).remove(&(key.clone(), server.clone()));
    let pod = names::server_pod(&name, &server);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    delete_if_present(&pods, &pod, &DeleteParams::default()).await?;
    lock(&ctx.restarts).insert((key, server.clone()), Instant::now());
    if let Some(state) = observation.servers.iter_mut().find(|s| s.server == server) {
        state.ready = false;
    }
    info!(%server, %pod, "restarting an outdated server");
    publish(
        ctx,
        db,
        related,
        EventType::Normal,
        "Restarting",
        "RestartServer",
        format!(
            "restarting server {server} (pod {pod}) on its updated template, one server at a time"
        ),
    )
    .await;
    Ok(true)
}
