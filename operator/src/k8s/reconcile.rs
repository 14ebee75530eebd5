//! The `ShardedDatabase` reconciler: a kube-runtime [`Controller`] that keeps each database's
//! objects ([`super::objects::desired`]) applied, its control plane running ([`Fleet`]) and its
//! status ([`status`]) current.
//!
//! One reconciliation of a database that is not being deleted:
//! 1. the finalizer [`FINALIZER`] is added first (kube-runtime's `finalizer` helper);
//! 2. `spec.paused`: only the status changes (Progressing False/`Paused`);
//! 3. the spec is resolved; an invalid one gets an `InvalidSpec` Event and conditions, and
//!    nothing is applied;
//! 4. the generated credentials Secret is created if missing and never written again;
//! 5. every other desired object is server-side applied with the one field manager
//!    [`FIELD_MANAGER`] (force);
//! 6. the control plane is started or reconfigured ([`Fleet::ensure`]);
//! 7. a server StatefulSet no longer in the spec is drained ([`Fleet::drain`], requeued until it
//!    answers `true`), then deleted with its pod; its claim follows `retention.whenRemoved`;
//! 8. server StatefulSets are `OnDelete`: an outdated server's pod is deleted, one server at a
//!    time and only while the fleet is settled, so that a template change never takes a
//!    shard's quorum;
//! 9. the status fields the reconciler owns are server-side applied.
//!
//! Deletion: the finalizer stops the control plane ([`Fleet::remove`]), deletes the data claims
//! when `retention.whenDeleted` is `Delete`, and lets owner references remove the rest.

pub mod apply;
mod metrics;
pub mod status;
pub mod switchover;
pub mod terminating;

use std::collections::{BTreeSet, HashMap};
use std::error::Error as StdError;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, ObjectReference, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::controller::{
    Action, Config as ControllerConfig, Controller, Error as ControllerError,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalized, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use rand::distr::{Alphanumeric, SampleString};
use serde::de::DeserializeOwned;
use thiserror::Error;
use tracing::{Instrument, debug, info, info_span, warn};

pub use metrics::{DatabaseLabels, ErrorLabels, ReconcileMetrics};
use status::{Observation, OwnedStatus, RouterState, ServerState, reason};

use super::objects::{self, GeneratedSecrets, Images, ObjectsError};
use walshard_contract::Topology;
use walshard_k8s_api::names;
use walshard_k8s_api::spec::{API_VERSION, KIND, Retention, ShardedDatabase};

/// The one field manager of everything the operator applies (objects and status).
pub const FIELD_MANAGER: &str = "walshard-operator";
/// The finalizer that stops a database's control plane before the database goes.
pub const FINALIZER: &str = "walshard.io/cleanup";
/// `reportingController` of the operator's Events.
pub const REPORTING_CONTROLLER: &str = "walshard-operator";
/// Length of a generated cluster token or password (`[A-Za-z0-9]`, ~190 bits).
pub const GENERATED_SECRET_LEN: usize = 32;

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
/// A server's pod is deleted for a template update at most once in this long (the StatefulSet's
/// status may still count the new pod as outdated for a moment).
const RESTART_GRACE: Duration = Duration::from_secs(60);
/// Longest error backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The per-database control planes, as the reconciler drives them: implemented by
/// [`super::hosting::HostedPlanes`] and by test doubles.
pub trait Fleet: Send + Sync + 'static {
    /// Starts or reconfigures the control plane of `db` from its spec; a no-op when unchanged.
    fn ensure(
        &self,
        db: &ShardedDatabase,
        token: &str,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;
    /// Stops the control plane of a database (deleted, or this operator stepped down).
    fn remove(&self, namespace: &str, name: &str) -> impl Future<Output = ()> + Send;
    /// The control plane's latest view of the database, if it runs.
    fn topology(&self, namespace: &str, name: &str) -> Option<Topology>;
    /// Moves `server`'s primaries and replicas away; `true` once nothing needs the server.
    fn drain(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> impl Future<Output = Result<bool, FleetError>> + Send;
    /// Switches the primaries of `server` (staying in the spec) over to other replicas before
    /// it stops; `true` once it leads no shard.
    fn handover(
        &self,
        namespace: &str,
        name: &str,
        server: &str,
    ) -> impl Future<Output = Result<bool, FleetError>> + Send;
    /// A user switchover of `shard` to `to`; `true` once `to` is its primary.
    fn switchover(
        &self,
        namespace: &str,
        name: &str,
        shard: &str,
        to: &str,
    ) -> impl Future<Output = Result<bool, FleetError>> + Send;
}

/// An error of a [`Fleet`] operation (retried by the reconciler).
#[derive(Debug, Error)]
#[error(transparent)]
pub struct FleetError(Box<dyn StdError + Send + Sync>);

impl FleetError {
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

/// Why a reconciliation failed; it is retried with [`backoff`].
#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("the ShardedDatabase has no metadata.{0}")]
    MissingMetadata(&'static str),
    #[error("building the desired objects: {0}")]
    Objects(#[source] ObjectsError),
    #[error("{verb} {kind} {name}: {source}")]
    Api {
        verb: &'static str,
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error(transparent)]
    Finalizer(Box<finalizer::Error<ReconcileError>>),
}

impl ReconcileError {
    /// The `error` label of `walshard_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::MissingMetadata(_) => "metadata",
            ReconcileError::Objects(_) => "objects",
            ReconcileError::Api { .. } => "api",
            ReconcileError::Status(_) => "status",
            ReconcileError::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                _ => "finalizer",
            },
        }
    }

    fn api(verb: &'static str, kind: &str, name: &str, source: kube::Error) -> Self {
        ReconcileError::Api {
            verb,
            kind: kind.to_owned(),
            name: name.to_owned(),
            source,
        }
    }
}

type Key = (String, String);

/// What every reconciliation shares: the API client, the control planes, the images, the Event
/// recorder, the metrics and a little per-database memory (error counts, drains under way).
pub struct Context<F> {
    client: Client,
    fleet: F,
    images: Images,
    recorder: Recorder,
    metrics: ReconcileMetrics,
    /// Consecutive failures per database, for the error backoff.
    failures: Mutex<HashMap<Key, u32>>,
    /// Databases whose control plane this process ensured (stopped on step-down).
    running: Mutex<BTreeSet<Key>>,
    /// Servers being drained (the `Draining` Event is sent once per drain).
    draining: Mutex<BTreeSet<(Key, String)>>,
    /// When each server's pod was last deleted for a template update.
    restarts: Mutex<HashMap<(Key, String), Instant>>,
    /// Servers whose primaries are being handed over before a restart (one Event each).
    handovers: Mutex<BTreeSet<(Key, String)>>,
}

impl<F: Fleet> Context<F> {
    /// `instance` is the reporting instance of Events (the pod name).
    pub fn new(
        client: Client,
        fleet: F,
        images: Images,
        instance: Option<String>,
        metrics: ReconcileMetrics,
    ) -> Self {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            fleet,
            images,
            metrics,
            failures: Mutex::default(),
            running: Mutex::default(),
            draining: Mutex::default(),
            restarts: Mutex::default(),
            handovers: Mutex::default(),
        }
    }

    pub fn fleet(&self) -> &F {
        &self.fleet
    }

    pub fn metrics(&self) -> &ReconcileMetrics {
        &self.metrics
    }

    /// Stops every control plane this process started (after the controller stopped).
    pub async fn stop_control_planes(&self) {
        let running = std::mem::take(&mut *lock(&self.running));
        for (namespace, name) in running {
            info!(%namespace, %name, "stopping the control plane");
            self.fleet.remove(&namespace, &name).await;
            self.metrics.forget(&namespace, &name);
        }
        lock(&self.draining).clear();
        lock(&self.failures).clear();
        lock(&self.restarts).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error backoff after `failures` consecutive failures: 1 s, 2 s, 4 s, … up to 5 min.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

/// The Controller's error policy: requeue with [`backoff`] per database.
pub fn error_policy<F: Fleet>(
    db: Arc<ShardedDatabase>,
    error: &ReconcileError,
    ctx: Arc<Context<F>>,
) -> Action {
    let key = (db.namespace().unwrap_or_default(), db.name_any());
    let failures = {
        let mut failures = lock(&ctx.failures);
        let n = failures.entry(key.clone()).or_default();
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff(failures);
    warn!(namespace = %key.0, name = %key.1, %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Reconciles one database (the Controller's reconcile function).
pub async fn reconcile<F: Fleet>(
    db: Arc<ShardedDatabase>,
    ctx: Arc<Context<F>>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let namespace = db.namespace().unwrap_or_default();
    let name = db.name_any();
    let span = info_span!(
        "reconcile",
        %namespace,
        %name,
        generation = db.metadata.generation.unwrap_or_default()
    );
    let result = async {
        if namespace.is_empty() {
            return Err(ReconcileError::MissingMetadata("namespace"));
        }
        let api: Api<ShardedDatabase> = Api::namespaced(ctx.client.clone(), &namespace);
        finalizer(&api, FINALIZER, db, |event| async {
            match event {
                Finalized::Apply(db) => apply(&db, &ctx).await,
                Finalized::Cleanup(db) => cleanup(&db, &ctx).await,
            }
        })
        .await
        .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
    }
    .instrument(span)
    .await;
    ctx.metrics.finished(
        started.elapsed(),
        result.as_ref().err().map(ReconcileError::metric_label),
    );
    if result.is_ok() {
        lock(&ctx.failures).remove(&(namespace, name));
    }
    result
}

/// Runs the Controller over the databases in `namespaces` (all when empty) until `stop`
/// completes; reconciliations under way finish first.
pub async fn run<F: Fleet>(
    ctx: Arc<Context<F>>,
    namespaces: &[String],
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let stop = stop.boxed().shared();
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let streams = scopes.clone().into_iter().map(|scope| {
        controller(&ctx.client, scope)
            .graceful_shutdown_on(stop.clone())
            .run(reconcile, error_policy, ctx.clone())
            .boxed()
    });
    // Terminating server pods hand over too (stopped with the controllers).
    let pod_watchers = futures::future::join_all(scopes.iter().map(|scope| {
        let stop = stop.clone();
        let watch = terminating::watch(ctx.clone(), scope.map(str::to_owned));
        async move {
            tokio::select! {
                () = watch => {}
                () = stop => {}
            }
        }
    }));
    let controllers = futures::stream::select_all(streams).for_each(|result| async move {
        match result {
            Ok((object, _)) => debug!(%object, "reconciled"),
            // Logged by `error_policy`, or benign (the object was deleted meanwhile).
            Err(ControllerError::ReconcilerFailed(..) | ControllerError::ObjectNotFound(_)) => {}
            // Watch failures (RBAC, API server); the watchers retry with backoff.
            Err(error) => warn!(%error, "controller"),
        }
    });
    futures::join!(controllers, pod_watchers);
    info!("controller stopped");
}

/// The Controller of one scope: databases, and the kinds they own (by the managed-by label).
pub fn controller(client: &Client, namespace: Option<&str>) -> Controller<ShardedDatabase> {
    fn api<K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>>(
        client: &Client,
        namespace: Option<&str>,
    ) -> Api<K> {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let owned = || {
        watcher::Config::default().labels(&format!(
            "{}={}",
            objects::LABEL_MANAGED_BY,
            objects::MANAGED_BY
        ))
    };
    Controller::new(
        api::<ShardedDatabase>(client, namespace),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(client, namespace), owned())
    .owns(api::<Service>(client, namespace), owned())
    .owns(api::<Deployment>(client, namespace), owned())
    .owns(api::<PodDisruptionBudget>(client, namespace), owned())
    .owns(api::<ConfigMap>(client, namespace), owned())
    .owns(api::<Secret>(client, namespace), owned())
    .with_config(ControllerConfig::default().debounce(Duration::from_millis(500)))
}

/// One database, not being deleted.
async fn apply<F: Fleet>(db: &ShardedDatabase, ctx: &Context<F>) -> Result<Action, ReconcileError> {
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
    };
    let desired = match objects::desired(db, &ctx.images, &generated) {
        Ok(desired) => desired,
        Err(ObjectsError::MissingMetadata(field)) => {
            return Err(ReconcileError::MissingMetadata(field));
        }
        Err(error) => return invalid_spec(ctx, db, &error.to_string()).await,
    };

    let secret = ensure_secret(ctx, db, &desired.secret).await?;
    let token = match cluster_token(ctx, db, &namespace, &secret).await? {
        Ok(token) => token,
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

    let applied = apply::apply_all(ctx, &namespace, &desired, &existing).await?;
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

    let control_error = match ctx.fleet.ensure(db, &token).await {
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
        ..Observation::default()
    };
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
async fn cleanup<F: Fleet>(
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

/// A server no longer in the spec: drained first, then its StatefulSet and pod deleted, its
/// claim kept or deleted per `retention.whenRemoved`.
async fn remove_server<F: Fleet>(
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

/// Rolls an updated pod template out, one server at a time (the StatefulSets are `OnDelete`).
/// An outdated server that is not ready is restarted at once (it serves nothing; the new
/// template may be its fix). A ready one only while the fleet is settled (every server ready,
/// nothing draining, every shard with a primary), and servers that lead no shard first. A server
/// is not restarted twice within [`RESTART_GRACE`]. Returns whether a pod was deleted.
async fn restart_one<F: Fleet>(
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

/// Whether deleting `set` leaves `claim` in place: the set's claim policy is `Retain` (as the
/// StatefulSet controller saw it) and the claim has no owner reference to the set. Otherwise
/// the policy is switched to `Retain` (merge patch) and the caller waits.
async fn claim_released<F: Fleet>(
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

/// The generated Secret: created when it does not exist, never written once it does.
async fn ensure_secret<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    secret: &Secret,
) -> Result<Secret, ReconcileError> {
    let namespace = db.namespace().unwrap_or_default();
    let name = secret.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let get = || async {
        secrets
            .get_opt(&name)
            .await
            .map_err(|e| ReconcileError::api("get", "Secret", &name, e))
    };
    if let Some(existing) = get().await? {
        return add_missing_keys(&secrets, existing, secret).await;
    }
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let created = match secrets.create(&params, secret).await {
        Ok(created) => created,
        // Created concurrently (another reconcile, or a user): keep that one.
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            return get().await?.ok_or_else(|| {
                ReconcileError::api("get", "Secret", &name, kube::Error::Api(status))
            });
        }
        Err(e) => return Err(ReconcileError::api("create", "Secret", &name, e)),
    };
    info!(secret = %name, "created the credentials Secret");
    publish(
        ctx,
        db,
        Some(created.object_ref(&())),
        EventType::Normal,
        "Created",
        "CreateCredentials",
        format!("created Secret {name} with a generated cluster token and MySQL password"),
    )
    .await;
    Ok(created)
}

/// The cluster token the agents use: from `credentials.clusterTokenSecretRef` or the generated
/// Secret `generated`. `Ok(Err(why))` when it is missing.
async fn cluster_token<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
    namespace: &str,
    generated: &Secret,
) -> Result<Result<String, String>, ReconcileError> {
    let selector = objects::cluster_token_ref(&db.name_any(), &db.spec.credentials);
    let fetched;
    let secret = if selector.name == generated.name_any() {
        generated
    } else {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        fetched = secrets
            .get_opt(&selector.name)
            .await
            .map_err(|e| ReconcileError::api("get", "Secret", &selector.name, e))?;
        match &fetched {
            Some(secret) => secret,
            None => return Ok(Err(format!("Secret {} not found", selector.name))),
        }
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&selector.key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .filter(|v| !v.is_empty());
    Ok(value.ok_or_else(|| {
        format!(
            "Secret {} has no non-empty key {:?}",
            selector.name, selector.key
        )
    }))
}

async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> Result<(), ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(ReconcileError::api("delete", &K::kind(&()), name, e)),
    }
}

/// Events for what [`apply::apply_all`] did: one Warning `ApplyFailed` listing every refused
/// object, one `ExpandingVolume` for claims resized and StatefulSets being recreated.
async fn report_apply<F: Fleet>(ctx: &Context<F>, db: &ShardedDatabase, applied: &apply::Applied) {
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
async fn invalid_spec<F: Fleet>(
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

/// Adds the keys `desired` has and `existing` lacks (a key a newer operator generates, e.g. the
/// router's admin token), with a JSON merge patch of those keys only: a key, once written, is
/// never changed.
async fn add_missing_keys(
    secrets: &Api<Secret>,
    existing: Secret,
    desired: &Secret,
) -> Result<Secret, ReconcileError> {
    let have = existing.data.as_ref();
    let missing: std::collections::BTreeMap<&String, &k8s_openapi::ByteString> = desired
        .data
        .iter()
        .flatten()
        .filter(|(k, _)| !have.is_some_and(|d| d.contains_key(*k)))
        .collect();
    if missing.is_empty() {
        return Ok(existing);
    }
    let name = existing.name_any();
    let keys: Vec<&str> = missing.keys().map(|k| k.as_str()).collect();
    info!(secret = %name, ?keys, "adding generated keys to the credentials Secret");
    let patch = serde_json::json!({ "data": missing });
    secrets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| ReconcileError::api("patch", "Secret", &name, e))
}

/// Server-side applies the reconciler's status fields, unless the status already shows them.
async fn write_status<F: Fleet>(
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
async fn publish<F: Fleet>(
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

fn owned_by(object: &impl Resource, db: &ShardedDatabase) -> bool {
    let uid = db.metadata.uid.as_deref();
    object
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// The server a StatefulSet runs: its server label, else its name.
fn server_of(set: &StatefulSet) -> String {
    set.labels()
        .get(objects::LABEL_SERVER)
        .cloned()
        .unwrap_or_else(|| set.name_any())
}

fn server_state(set: &StatefulSet) -> ServerState {
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
fn observed_current(set: &StatefulSet) -> bool {
    set.status.as_ref().and_then(|s| s.observed_generation) >= set.metadata.generation
}

/// The set's pod runs an older template: the StatefulSet controller has seen the latest spec and
/// made the pod, which is not at the update revision. (Under `OnDelete`, `currentRevision` never
/// catches up with `updateRevision`, so count the pods at the update revision instead.)
fn outdated(set: &StatefulSet) -> bool {
    let wanted = set.spec.replicas.unwrap_or(1);
    let Some(status) = set.status.as_ref() else {
        return false;
    };
    status.observed_generation.is_some()
        && observed_current(set)
        && status.replicas >= wanted
        && status.updated_replicas.unwrap_or(0) < wanted
}

fn router_state(deployments: &[Deployment], db: &str) -> RouterState {
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

fn random_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), GENERATED_SECRET_LEN)
}

#[cfg(test)]
mod tests;
