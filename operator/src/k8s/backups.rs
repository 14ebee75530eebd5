//! Backups on Kubernetes (docs/backup.md, "On Kubernetes"): base backups run **in the operator**,
//! next to each database's control plane, which knows the agents' URLs and the cluster token:
//! `walshard_backup::take::take_base_backup`, the same code as `walshard backup create`, asks
//! a caught-up replica of every shard to stream its copy to the store, then writes the manifest.
//! (Continuous WAL archiving runs in the agents, configured by `spec.backup`, see
//! [`super::objects::backup`].)
//!
//! Two controllers, started with the `ShardedDatabase` one while this operator leads:
//! - [`request`]: every `ShardedDatabaseBackup` goes `Pending` → `Running` → `Succeeded` or
//!   `Failed` (status, Events, metrics); after a success the database's retention is applied
//!   and the scheduled backup objects whose backups it deleted go too;
//! - [`database`]: every `ShardedDatabase` with `spec.backup`: creates a `ShardedDatabaseBackup`
//!   at each occurrence of `spec.backup.schedule` ([`schedule`]), and keeps `status.backup`
//!   (newest backup, restorable range from the store, each shard's archive lag from the control
//!   plane) and the `ArchiveLagging` condition current ([`status`]).
//!
//! Everything here is written with the field manager [`FIELD_MANAGER`], so the reconciler's and
//! the control plane's status writes leave it alone.

pub mod database;
mod metrics;
pub mod request;
pub mod schedule;
pub mod status;
pub mod store;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::{Action, Controller, Error as ControllerError};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource};
use thiserror::Error;
use tracing::{debug, info, warn};
use walshard_backup::take::TakeError;
use walshard_backup::{BackupStore, Manifest, StoreError};
use walshard_contract::ArchiveReport;
use walshard_k8s_api::backup::{ShardedDatabaseBackup, ShardedDatabaseBackupStatus};
use walshard_k8s_api::spec::ShardedDatabase;

pub use metrics::BackupMetrics;

/// The field manager of everything the backup manager writes: `ShardedDatabaseBackup` statuses,
/// the database's `status.backup` and its `ArchiveLagging` condition, scheduled backups.
pub const FIELD_MANAGER: &str = "walshard-operator-backup";
/// `reportingController` of the backup manager's Events.
pub const REPORTING_CONTROLLER: &str = "walshard-operator-backup";

/// Why a backup, or reading a database's store, failed; [`BackupError::code`] classifies it.
#[derive(Debug, Error)]
pub enum BackupError {
    /// The database's control plane does not run in this operator (yet).
    #[error("the control plane of {namespace}/{name} is not running here (yet)")]
    NotRunning {
        /// The database's namespace.
        namespace: String,
        /// The database's name.
        name: String,
    },
    /// Taking the backup through the agents failed.
    #[error(transparent)]
    Take(#[from] TakeError),
    /// The store failed (a backup's objects, retention, the catalog).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The credentials Secret is missing or lacks a key.
    #[error("credentials Secret {secret}: {reason}")]
    Credentials {
        /// The Secret's name.
        secret: String,
        /// What is wrong.
        reason: String,
    },
    /// The database to back up does not exist, or has no `spec.backup`.
    #[error("{0}")]
    Database(String),
    /// An API call failed.
    #[error("{verb} {what}: {source}")]
    Api {
        /// `get`, `patch`, `create`, `list`, `delete`.
        verb: &'static str,
        /// The object or collection.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

impl BackupError {
    /// A machine-readable code (the store's and the fleet's codes of `walshard backup`).
    pub fn code(&self) -> &'static str {
        match self {
            BackupError::NotRunning { .. } => "fleet-unavailable",
            BackupError::Take(e) => e.code(),
            BackupError::Store(e) => e.code(),
            BackupError::Credentials { .. } => "credentials-missing",
            BackupError::Database(_) => "invalid-request",
            BackupError::Api { .. } => "api",
        }
    }

    fn api(verb: &'static str, what: impl Into<String>, source: kube::Error) -> Self {
        BackupError::Api {
            verb,
            what: what.into(),
            source,
        }
    }
}

/// The fleets' side of backups: implemented by
/// [`HostedPlanes`](crate::k8s::hosting::HostedPlanes) (through the control plane of each
/// database) and by test doubles.
pub trait BaseBackups: Send + Sync + 'static {
    /// Takes a base backup of `db`'s fleet into `store` and writes its manifest.
    fn take(
        &self,
        db: &ShardedDatabase,
        store: &BackupStore,
    ) -> impl Future<Output = Result<Manifest, BackupError>> + Send;
    /// Whether `namespace/name`'s control plane runs here (a backup can be taken).
    fn runs(&self, namespace: &str, name: &str) -> bool;
    /// Each shard's archive as its primary reports it to the control plane, if that runs.
    fn archive(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, ArchiveReport>>;
}

/// Settings of the backup manager.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// `ArchiveLagging` turns True when some shard's archive is incomplete longer than this.
    pub archive_lag: Duration,
    /// How often a database's `status.backup` is refreshed from its store.
    pub refresh: Duration,
    /// How long a backup request waits for its database's control plane before it fails.
    pub start_timeout: Duration,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            archive_lag: Duration::from_secs(300),
            refresh: Duration::from_secs(60),
            start_timeout: Duration::from_secs(600),
        }
    }
}

/// What the backup controllers share.
pub struct BackupContext<B> {
    pub(crate) client: Client,
    pub(crate) backups: B,
    pub(crate) recorder: Recorder,
    pub(crate) metrics: BackupMetrics,
    pub(crate) settings: BackupSettings,
    /// Final statuses of requests whose backup ended but whose status write failed, by
    /// `(namespace, name)`: written on the next reconciliation instead of calling the request
    /// interrupted.
    pub(crate) unwritten: std::sync::Mutex<BTreeMap<(String, String), ShardedDatabaseBackupStatus>>,
}

impl<B: BaseBackups> BackupContext<B> {
    /// `instance` is the reporting instance of Events (the pod name).
    pub fn new(
        client: Client,
        backups: B,
        instance: Option<String>,
        metrics: BackupMetrics,
        settings: BackupSettings,
    ) -> Self {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            backups,
            metrics,
            settings,
            unwritten: std::sync::Mutex::default(),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &BackupMetrics {
        &self.metrics
    }
}

/// The requeue after a failed reconciliation of the backup controllers.
const ERROR_RETRY: Duration = Duration::from_secs(15);

/// Runs both backup controllers over `namespaces` (all when empty) until `stop` completes.
pub async fn run<B: BaseBackups>(
    ctx: Arc<BackupContext<B>>,
    namespaces: &[String],
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let stop = stop.boxed().shared();
    let scopes = crate::k8s::scope::scopes(namespaces);
    let mut streams = Vec::new();
    for scope in scopes {
        let requests = Controller::new(
            crate::k8s::scope::api::<ShardedDatabaseBackup>(&ctx.client, scope),
            watcher::Config::default(),
        )
        .graceful_shutdown_on(stop.clone())
        .run(
            request::reconcile,
            |_, error: &BackupError, _| {
                warn!(%error, code = error.code(), "backup request");
                Action::requeue(ERROR_RETRY)
            },
            ctx.clone(),
        )
        .map(outcome)
        .boxed();
        let databases = Controller::new(
            crate::k8s::scope::api::<ShardedDatabase>(&ctx.client, scope),
            watcher::Config::default(),
        )
        .owns(
            crate::k8s::scope::api::<ShardedDatabaseBackup>(&ctx.client, scope),
            watcher::Config::default(),
        )
        .graceful_shutdown_on(stop.clone())
        .run(
            database::reconcile,
            |_, error: &BackupError, _| {
                warn!(%error, code = error.code(), "backup status or schedule");
                Action::requeue(ERROR_RETRY)
            },
            ctx.clone(),
        )
        .map(outcome)
        .boxed();
        streams.push(requests);
        streams.push(databases);
    }
    futures::stream::select_all(streams)
        .for_each(|result| async move {
            match result {
                Ok(object) => debug!(%object, "backups reconciled"),
                Err(Some(error)) => warn!(%error, "backup controller"),
                // Logged by the error policy, or benign (the object was deleted meanwhile).
                Err(None) => {}
            }
        })
        .await;
    info!("backup controllers stopped");
}

/// A reconciliation's outcome for the log: the object, or the error worth logging.
fn outcome<K: Resource>(
    result: Result<
        (kube::runtime::reflector::ObjectRef<K>, Action),
        ControllerError<BackupError, watcher::Error>,
    >,
) -> Result<String, Option<String>> {
    match result {
        Ok((object, _)) => Ok(object.to_string()),
        Err(ControllerError::ReconcilerFailed(..) | ControllerError::ObjectNotFound(_)) => {
            Err(None)
        }
        Err(error) => Err(Some(error.to_string())),
    }
}
