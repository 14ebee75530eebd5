//! One reconciliation of a database: resolve the spec → build the desired objects → credentials
//! → apply → control plane → drain removed servers → roll out → status; and its deletion.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{debug, info, warn};
use walshard_k8s_api::spec::{LayoutSource, Retention, ShardedDatabase};

use super::credentials::{agent_access, ensure_secret, random_secret};
use super::drain::remove_server;
use super::observe::{owned_by, router_state, server_of, server_state};
use super::report::{invalid_spec, publish, report_apply, write_status};
use super::rollout::restart_one;
use super::status::{self, Observation, reason};
use super::{Context, Fleet, ReconcileError, delete_if_present, lock, switchover};
use crate::k8s::objects::{self, GeneratedSecrets, ObjectsError};

/// Requeue while a removed server is draining.
const DRAIN_POLL: Duration = Duration::from_secs(5);
/// Requeue while a server's primaries are handed over (a planned switchover takes well under
/// a second).
const HANDOVER_POLL: Duration = Duration::from_secs(1);
/// Requeue after a control-plane error.
const CONTROL_RETRY: Duration = Duration::from_secs(10);
/// Requeue while the database is not ready (owned objects' changes trigger earlier).
const NOT_READY_POLL: Duration = Duration::from_secs(15);
/// Requeue of a ready database (refreshes the status from the control plane's topology).
const READY_POLL: Duration = Duration::from_secs(120);
/// Requeue while a credentials Secret the spec names is missing.
const CREDENTIALS_POLL: Duration = Duration::from_secs(30);

/// One database, not being deleted.
pub(super) async fn apply<F: Fleet>(
    db: &ShardedDatabase,
    ctx: &Context<F>,
) -> Result<Action, ReconcileError> {
    let namespace = db
        .namespace()
        .ok_or(ReconcileError::MissingMetadata("namespace"))?;
    let name = db.name_any();
    let generation = db.metadata.generation;
    let current = db.status.as_ref();

    if db.spec.paused {
        let status = status::paused(generation, current, Timestamp::now());
        write_status(ctx, db, &status).await?;
        debug!("paused: nothing applied");
        return Ok(Action::await_change());
    }

    let resolved = match db.spec.resolve() {
        Ok(resolved) => resolved,
        Err(error) => return invalid_spec(ctx, db, &error.to_string()).await,
    };
    let generated = GeneratedSecrets {
        cluster_token: random_secret(),
        mysql_password: random_secret(),
        router_admin_token: random_secret(),
        tls: super::tls::generate(db).map_err(|e| ReconcileError::Tls(e.to_string()))?,
    };
    let desired = match objects::desired(db, &ctx.images, &generated) {
        Ok(desired) => desired,
        Err(ObjectsError::MissingMetadata(field)) => {
            return Err(ReconcileError::MissingMetadata(field));
        }
        Err(error) => return invalid_spec(ctx, db, &error.to_string()).await,
    };

    let secret = ensure_secret(ctx, db, &desired.secret).await?;
    if let Some(tls) = &desired.tls_secret {
        ensure_secret(ctx, db, tls).await?;
    }
    let access = match agent_access(ctx, db, &namespace, &secret).await? {
        Ok(access) => access,
        Err(missing) => {
            warn!(%missing, "credentials missing");
            let status = status::blocked(
                generation,
                current,
                reason::CREDENTIALS_MISSING,
                &missing,
                Timestamp::now(),
            );
            write_status(ctx, db, &status).await?;
            return Ok(Action::requeue(CREDENTIALS_POLL));
        }
    };

    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let selector = objects::managed_selector(&name);
    let existing: Vec<StatefulSet> = sets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| ReconcileError::api("list", "StatefulSet", &selector, e))?
        .items
        .into_iter()
        .filter(|s| owned_by(s, db))
        .collect();

    let applied = super::apply::apply_all(ctx, &namespace, &desired, &existing).await?;
    report_apply(ctx, db, &applied).await;
    let new_servers: Vec<String> = applied
        .stateful_sets
        .iter()
        .filter(|s| !existing.iter().any(|e| e.name_any() == s.name_any()))
        .map(server_of)
        .collect();
    if !new_servers.is_empty() {
        info!(servers = ?new_servers, "created server StatefulSets");
        publish(
            ctx,
            db,
            None,
            EventType::Normal,
            "Created",
            "CreateServers",
            format!(
                "created the StatefulSets of servers {}",
                new_servers.join(", ")
            ),
        )
        .await;
    }

    let control_error = match ctx.fleet.ensure(db, &access).await {
        Ok(()) => {
            lock(&ctx.running).insert((namespace.clone(), name.clone()));
            None
        }
        Err(error) => {
            warn!(%error, "control plane");
            Some(error.to_string())
        }
    };

    let switching = if control_error.is_none() {
        switchover::requested(ctx, db).await?
    } else {
        false
    };

    let mut observation = Observation {
        generation,
        shards: resolved.shards.iter().map(|s| s.id.to_string()).collect(),
        servers: applied.stateful_sets.iter().map(server_state).collect(),
        router: router_state(&applied.deployments, &name),
        topology: ctx.fleet.topology(&namespace, &name),
        control_error,
        apply_failures: applied.failures.clone(),
        recreating: applied.recreating.clone(),
        switching,
        layout_overrides: db.spec.layout_source() == LayoutSource::Overriding,
        ..Observation::default()
    };
    if observation.layout_overrides
        && current.is_none_or(|s| {
            !s.conditions
                .iter()
                .any(|c| c.reason == reason::LAYOUT_OVERRIDES_SPEC)
        })
    {
        warn!("spec.layout overrides a later edit of the user's form");
        publish(
            ctx,
            db,
            None,
            EventType::Warning,
            reason::LAYOUT_OVERRIDES_SPEC,
            "Resolve",
            status::LAYOUT_OVERRIDES_MESSAGE.to_owned(),
        )
        .await;
    }
    let desired_sets: BTreeSet<String> = desired
        .stateful_sets
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    for orphan in existing
        .iter()
        .filter(|s| !desired_sets.contains(&s.name_any()))
    {
        remove_server(ctx, db, orphan, &mut observation).await?;
    }

    let restarted = restart_one(ctx, db, &applied.stateful_sets, &mut observation).await?;

    let status = status::observed(&observation, current, Timestamp::now());
    write_status(ctx, db, &status).await?;
    ctx.metrics.set_ready(&namespace, &name, status.is_ready());
    Ok(Action::requeue(
        if !observation.handing_over.is_empty() || observation.switching {
            HANDOVER_POLL
        } else if restarted
            || !observation.draining.is_empty()
            || !observation.drain_failures.is_empty()
            || !observation.recreating.is_empty()
        {
            DRAIN_POLL
        } else if observation.control_error.is_some() || !observation.apply_failures.is_empty() {
            CONTROL_RETRY
        } else if status.is_ready() {
            READY_POLL
        } else {
            NOT_READY_POLL
        },
    ))
}

/// The database is being deleted: stop its control plane, delete the data claims when
/// `retention.whenDeleted` is `Delete`; owner references take the other objects.
pub(super) async fn cleanup<F: Fleet>(
    db: &ShardedDatabase,
    ctx: &Context<F>,
) -> Result<Action, ReconcileError> {
    let namespace = db
        .namespace()
        .ok_or(ReconcileError::MissingMetadata("namespace"))?;
    let name = db.name_any();
    ctx.fleet.remove(&namespace, &name).await;
    lock(&ctx.running).remove(&(namespace.clone(), name.clone()));
    lock(&ctx.draining).retain(|((ns, n), _)| !(ns == &namespace && n == &name));
    lock(&ctx.restarts).retain(|((ns, n), _), _| !(ns == &namespace && n == &name));
    ctx.metrics.forget(&namespace, &name);
    if db.spec.storage.retention.when_deleted == Retention::Delete {
        let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
        let selector = objects::managed_selector(&name);
        let servers = sets
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| ReconcileError::api("list", "StatefulSet", &selector, e))?;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
        for set in servers.items.iter().filter(|s| owned_by(*s, db)) {
            let claim = objects::data_claim(&name, &server_of(set));
            delete_if_present(&claims, &claim, &DeleteParams::default()).await?;
        }
    }
    info!("deleted: control plane stopped");
    Ok(Action::await_change())
}
