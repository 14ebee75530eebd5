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
//!
//! Files: this one wires the Controller (errors, backoff, the watched kinds); `context` (what
//! reconciliations share, the [`Fleet`] they drive), `database` (one pass: resolve → build →
//! apply → control plane → drain → rollout → status, and deletion), `credentials` (step 4 and
//! the cluster token), [`apply`](mod@apply) (step 5), `drain` (step 7), `rollout` (step 8),
//! `observe` (the applied objects' state), [`status`] (pure status), `report` (Events, status
//! writes), [`switchover`] (the user annotation), [`terminating`] (hand-over of terminating
//! pods).

pub mod apply;
mod context;
mod credentials;
mod database;
mod drain;
mod metrics;
mod observe;
mod report;
mod rollout;
pub mod status;
pub mod switchover;
pub mod terminating;
mod tls;

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::{
    Action, Config as ControllerConfig, Controller, Error as ControllerError,
};
use kube::runtime::finalizer::{self, Event as Finalized, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use thiserror::Error;
use tracing::{Instrument, debug, info, info_span, warn};
use walshard_contract::Backoff;
use walshard_k8s_api::spec::ShardedDatabase;

pub use context::{AgentAccess, Context, Fleet, FleetError};
pub use metrics::{DatabaseLabels, ErrorLabels, ReconcileMetrics};
use observe::server_of;
use report::publish;
use status::reason;

use super::objects::{self, ObjectsError};

/// The one field manager of everything the operator applies (objects and status).
pub const FIELD_MANAGER: &str = "walshard-operator";
/// The finalizer that stops a database's control plane before the database goes.
pub const FINALIZER: &str = "walshard.io/cleanup";
/// `reportingController` of the operator's Events.
pub const REPORTING_CONTROLLER: &str = "walshard-operator";
/// Length of a generated cluster token or password (`[A-Za-z0-9]`, ~190 bits).
pub const GENERATED_SECRET_LEN: usize = 32;

/// Error requeues: 1 s, 2 s, 4 s, … up to 5 min (the contract's backoff policy).
pub const REQUEUE_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));

/// Why a reconciliation failed; it is retried with [`backoff`].
#[derive(Debug, Error)]
pub enum ReconcileError {
    /// The object lacks this metadata field.
    #[error("the ShardedDatabase has no metadata.{0}")]
    MissingMetadata(&'static str),
    /// The desired objects could not be built.
    #[error("building the desired objects: {0}")]
    Objects(#[source] ObjectsError),
    /// An API call failed.
    #[error("{verb} {kind} {name}: {source}")]
    Api {
        /// `get`, `list`, `create`, `patch`, `delete`.
        verb: &'static str,
        /// The object's kind.
        kind: String,
        /// Its name (or the list's selector).
        name: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The status write failed.
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    /// The generated TLS authority or certificate could not be made.
    #[error("generating the TLS authority: {0}")]
    Tls(String),
    /// Adding or removing the finalizer failed, or the wrapped reconciliation did.
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
            ReconcileError::Tls(_) => "tls",
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error requeue after `failures` consecutive failures: 1 s, 2 s, 4 s, … up to 5 min. Not
/// jittered: the requeue times are part of the operator's tested contract.
pub fn backoff(failures: u32) -> Duration {
    REQUEUE_BACKOFF.ceiling(failures.saturating_sub(1))
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
                Finalized::Apply(db) => database::apply(&db, &ctx).await,
                Finalized::Cleanup(db) => database::cleanup(&db, &ctx).await,
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
    let scopes = crate::k8s::scope::scopes(namespaces);
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
    use crate::k8s::scope::api;
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

#[cfg(test)]
mod tests;
