//! Kubernetes mode: the router serves one `ShardedDatabase` ([`KubeFleet`], a
//! [`FleetAdmin`]). It watches the object and turns every version into a [`FleetView`]: the
//! configuration from the spec, the agents' URLs through the headless Service, the primaries
//! and epochs the operator's control plane publishes in `status.shards`. `/init`, `/add` and
//! `/rm` are validated against the current layout by the seed API's own parsers; `/add` and
//! `/rm` write the result as `spec.layout` (explicit shards and placement, with the basis of the
//! user's form) in a server-side apply patch under the field manager [`FIELD_MANAGER`] that
//! holds nothing else, so the user's `shards`/`servers` and a later `kubectl apply` of the
//! user's manifest are left alone. The patch is conditioned on the object's `resourceVersion`
//! (a concurrent change makes it a 409 and the request is validated again); the answer is the
//! seed's once the status shows the change (or after a bounded wait).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use walshard_contract::{ApiError, Ident, Phase, ShardInfo, Topology};
use walshard_k8s_api::names;
use walshard_k8s_api::spec::{
    API_VERSION, KIND, LayoutSpec, ServerPlacement, ShardedDatabase, ShardedDatabaseSpec, layout,
};

use crate::fleet::{Admin, FleetAdmin, FleetError, FleetView};
use crate::layout::Layout;
use crate::requests;

/// The field manager of the router's spec patches.
pub const FIELD_MANAGER: &str = "walshard-router";
/// How often a patch meeting a concurrent change is validated and tried again.
const CONFLICT_RETRIES: usize = 5;

/// The fleet view of `db` (version 0: [`KubeFleet`] numbers them): the configuration its spec
/// resolves to, an agent URL for every server of the placement and every primary the status
/// names (a server being drained still holds primaries), the primaries and epochs of
/// `status.shards`.
pub fn fleet_view(db: &ShardedDatabase) -> Result<FleetView, ApiError> {
    let name = db.metadata.name.clone().unwrap_or_default();
    let namespace = db.metadata.namespace.clone().unwrap_or_default();
    let resolved = db
        .spec
        .resolve()
        .map_err(|e| ApiError::new(500u16, format!("the ShardedDatabase's spec: {e}")))?;
    let summaries = db
        .status
        .as_ref()
        .map(|s| s.shards.as_slice())
        .unwrap_or_default();
    let mut topology = Topology::default();
    for s in summaries {
        topology.shards.insert(
            s.id.clone(),
            ShardInfo {
                shard: s.id.clone(),
                state: if s.primary.is_some() {
                    Phase::Healthy
                } else {
                    Phase::Electing
                },
                reason: None,
                primary: s.primary.clone(),
                epoch: u64::try_from(s.epoch).unwrap_or(0),
                quorum_reachable: s.primary.is_some(),
                replicas: Vec::new(),
                reconfiguring: false,
            },
        );
    }
    let urls = resolved
        .placement
        .keys()
        .map(String::as_str)
        .chain(summaries.iter().filter_map(|s| s.primary.as_deref()))
        .map(|server| {
            (
                server.to_owned(),
                names::with_tls(
                    names::agent_url(&name, &namespace, server),
                    db.spec.tls.is_some(),
                ),
            )
        })
        .collect();
    Ok(FleetView {
        version: 0,
        config: Some(resolved.init_body()),
        urls,
        topology,
    })
}

/// The seed layout `db`'s spec stands for.
pub fn layout_of(spec: &ShardedDatabaseSpec) -> Result<Layout, ApiError> {
    let resolved = spec
        .resolve()
        .map_err(|e| ApiError::new(500u16, format!("the ShardedDatabase's spec: {e}")))?;
    requests::parse_init(&resolved.init_body())
        .map_err(|e| ApiError::new(500u16, format!("the ShardedDatabase's spec: {e}")))
}

/// What an administrative request does to the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The spec to write, `None` when nothing changes (`/init` of the same layout).
    pub spec: Option<ShardedDatabaseSpec>,
    /// The seed's answer.
    pub answer: Json,
    /// Servers `/rm` removes.
    pub removed: Vec<String>,
}

/// Validates `request` against `current` with the seed API's parsers and computes the spec it
/// asks for, checked by the CRD's rules (`resolve`) so the API server's refusal is not the first
/// word. `/init` of another layout is a 409: the database exists, `/add` and `/rm` change it.
pub fn plan(
    request: Admin,
    current: &ShardedDatabaseSpec,
    body: &Json,
) -> Result<Change, ApiError> {
    let layout = layout_of(current)?;
    let (next, answer, removed) = match request {
        Admin::Init => {
            let wanted = requests::parse_init(body)?;
            requests::check_reinit(&layout, &wanted)?;
            return Ok(Change {
                spec: None,
                answer: requests::init_answer(),
                removed: Vec::new(),
            });
        }
        Admin::Add => {
            let (next, added) = requests::parse_add(&layout, body)?;
            let answer = requests::add_answer(&next, &added);
            (next, answer, Vec::new())
        }
        Admin::Rm => {
            let (next, removed) = requests::parse_rm(&layout, body)?;
            let answer = requests::rm_answer(&next, &removed);
            (next, answer, removed.iter().map(Ident::to_string).collect())
        }
    };
    let spec = explicit_spec(current, &next);
    spec.resolve()
        .map_err(|e| ApiError::new(400u16, format!("the resulting spec: {e}")))?;
    Ok(Change {
        spec: Some(spec),
        answer,
        removed,
    })
}

/// `spec` with `next` as its `spec.layout`; the user's form stays as it is. The basis is the
/// current layout's (so a user edit it overrides stays reported), else that of `spec`'s form.
pub fn explicit_spec(spec: &ShardedDatabaseSpec, next: &Layout) -> ShardedDatabaseSpec {
    let basis = spec
        .layout
        .as_ref()
        .and_then(|l| l.basis.clone())
        .unwrap_or_else(|| layout::basis(spec));
    let mut out = spec.clone();
    out.layout = Some(LayoutSpec {
        shards: next.shards().to_vec(),
        servers: next
            .placement
            .iter()
            .map(|(name, shards)| ServerPlacement {
                name: name.clone(),
                shards: shards.clone(),
            })
            .collect(),
        basis: Some(basis),
    });
    out
}

/// The server-side apply patch of `name` holding only `spec.layout` of `spec` (the router's
/// field), conditioned on `resource_version`.
pub fn layout_patch(
    name: &str,
    spec: &ShardedDatabaseSpec,
    resource_version: Option<&str>,
) -> Json {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "resourceVersion": resource_version},
        "spec": {"layout": spec.layout},
    })
}

/// The patch parameters of [`layout_patch`]: server-side apply as [`FIELD_MANAGER`], forced
/// (`spec.layout` is the router's; a `kubectl edit` of it is taken back).
pub fn layout_patch_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The status shows a change written as `generation`: the reconciler observed it, every shard
/// of the spec has a primary, and none is on a `removed` server.
pub fn shows(db: &ShardedDatabase, generation: i64, removed: &[String]) -> bool {
    let Some(status) = &db.status else {
        return false;
    };
    let Ok(resolved) = db.spec.resolve() else {
        return false;
    };
    status.observed_generation.is_some_and(|g| g >= generation)
        && resolved.shards.iter().all(|shard| {
            status
                .shards
                .iter()
                .find(|s| s.id == shard.id.as_str())
                .and_then(|s| s.primary.as_ref())
                .is_some_and(|p| !removed.contains(p))
        })
}

/// The latest object and the views built from it.
struct Views {
    latest: watch::Sender<Option<ShardedDatabase>>,
    views: watch::Sender<FleetView>,
}

impl Views {
    /// Takes up `db` unless an object of a later generation was seen (a watch event older than
    /// the answer to the router's own patch).
    fn accept(&self, db: ShardedDatabase) {
        let stale = self
            .latest
            .borrow()
            .as_ref()
            .is_some_and(|cur| cur.metadata.generation > db.metadata.generation);
        if stale {
            debug!("ignoring an older version of the ShardedDatabase");
            return;
        }
        let view = fleet_view(&db);
        self.latest.send_replace(Some(db));
        let view = match view {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e.message, "keeping the last fleet view");
                return;
            }
        };
        self.views.send_if_modified(|current| {
            let same = current.config == view.config
                && current.urls == view.urls
                && current.topology == view.topology;
            if !same {
                *current = FleetView {
                    version: current.version + 1,
                    ..view
                };
                if current.version == 1 {
                    info!("fleet view received");
                }
            }
            !same
        });
    }
}

/// A `ShardedDatabase` as the router's control plane.
pub struct KubeFleet {
    api: Api<ShardedDatabase>,
    name: String,
    settle: Duration,
    views: Arc<Views>,
    /// One administrative request at a time.
    admin: tokio::sync::Mutex<()>,
}

impl KubeFleet {
    /// Serves `name` in `namespace` through `client`; the returned task watches it (with the
    /// watcher's default backoff) until aborted. `/init`, `/add` and `/rm` wait up to `settle`
    /// for the status to show their change.
    pub fn start(
        client: Client,
        namespace: &str,
        name: &str,
        settle: Duration,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let api: Api<ShardedDatabase> = Api::namespaced(client, namespace);
        let views = Arc::new(Views {
            latest: watch::Sender::new(None),
            views: watch::Sender::new(FleetView::default()),
        });
        let task = tokio::spawn(follow_object(
            api.clone(),
            name.to_owned(),
            Arc::clone(&views),
        ));
        let control = Arc::new(Self {
            api,
            name: name.to_owned(),
            settle,
            views,
            admin: tokio::sync::Mutex::new(()),
        });
        (control, task)
    }

    async fn carry_out(&self, request: Admin, body: &Json) -> Result<Json, ApiError> {
        let _one = self.admin.lock().await;
        for _ in 0..CONFLICT_RETRIES {
            let db = self.api.get(&self.name).await.map_err(unavailable)?;
            let change = plan(request, &db.spec, body)?;
            let Some(spec) = change.spec else {
                return Ok(change.answer);
            };
            let patch = layout_patch(&self.name, &spec, db.metadata.resource_version.as_deref());
            match self
                .api
                .patch(&self.name, &layout_patch_params(), &Patch::Apply(&patch))
                .await
            {
                Ok(updated) => {
                    let generation = updated.metadata.generation.unwrap_or_default();
                    info!(request = request.path(), generation, "spec changed");
                    self.views.accept(updated);
                    self.wait_shown(generation, &change.removed).await;
                    return Ok(change.answer);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    debug!("the ShardedDatabase changed meanwhile; validating again");
                }
                Err(kube::Error::Api(s)) if s.code == 422 => {
                    return Err(ApiError::new(400u16, s.message));
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(ApiError::new(
            409u16,
            "the ShardedDatabase kept changing meanwhile; try again",
        ))
    }

    /// Waits up to `settle` for the status to show the change; it proceeds anyway after that.
    async fn wait_shown(&self, generation: i64, removed: &[String]) {
        let mut latest = self.views.latest.subscribe();
        let shown = tokio::time::timeout(
            self.settle,
            latest.wait_for(|db| db.as_ref().is_some_and(|db| shows(db, generation, removed))),
        )
        .await;
        if !matches!(shown, Ok(Ok(_))) {
            warn!(
                generation,
                "the change is written but not shown in the status after {}s; it proceeds",
                self.settle.as_secs()
            );
        }
    }
}

fn unavailable(e: kube::Error) -> ApiError {
    ApiError::new(503u16, format!("the Kubernetes API: {e}"))
}

impl FleetAdmin for KubeFleet {
    fn view(&self, after: u64, wait: Duration) -> BoxFuture<'_, Result<FleetView, FleetError>> {
        Box::pin(async move {
            let mut views = self.views.views.subscribe();
            // A timeout answers with the current view.
            let _ = tokio::time::timeout(wait, views.wait_for(|v| v.version > after)).await;
            let view = views.borrow().clone();
            Ok(view)
        })
    }

    fn admin<'a>(
        &'a self,
        request: Admin,
        body: &'a Json,
    ) -> BoxFuture<'a, Result<Json, ApiError>> {
        Box::pin(self.carry_out(request, body))
    }
}

/// Watches the object, feeding every version to `views`.
async fn follow_object(api: Api<ShardedDatabase>, name: String, views: Arc<Views>) {
    let stream = watcher::watch_object(api, &name).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Some(db)) => views.accept(db),
            Ok(None) => {
                warn!(database = %name, "the ShardedDatabase is gone; keeping the last view")
            }
            Err(e) => warn!(database = %name, error = %e, "watching the ShardedDatabase; retrying"),
        }
    }
}

#[cfg(test)]
mod tests;
