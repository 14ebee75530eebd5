//! The router's shared state: the routes, where the primaries come from, the control plane it
//! follows (if any), the tokens clients must present, its HTTP client and metrics.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::warn;
use walshard_contract::batch::{BatchedOp, BatchedRead};
use walshard_contract::bearer::BearerToken;
use walshard_contract::http_client::{ClientError, ClientSettings, TrustedCa};
use walshard_contract::{ApiError, ErrorCode, Ident};

use super::batches::{MAX_READ_BATCH, MAX_WRITE_BATCH, ReadKey};
use super::metrics::RouterMetrics;
use crate::coalesce::Coalescer;
use crate::fleet::{self, FleetPrimaries, FleetView};
use crate::hashing::HashMode;
use crate::routes::{Primaries, Routes};
use crate::session::RouterMemory;

/// Batches on the wire at once per shard primary (writes) or server (reads): while they are in
/// flight the next batch gathers.
const BATCHES_IN_FLIGHT: usize = 1;
/// Timeout of one call to an agent.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The control plane the router follows (see [`crate::fleet`]).
pub(super) struct FleetLink {
    pub(super) plane: Arc<dyn fleet::FleetAdmin>,
    pub(super) primaries: Arc<FleetPrimaries>,
    pub(super) mode: HashMode,
}

/// Shared state of the router service.
pub struct RouterState {
    /// `None` until the fleet is configured (`/init`).
    routes: RwLock<Option<Arc<Routes>>>,
    pub(super) primaries: Arc<dyn Primaries>,
    /// Carries out `/init`, `/add` and `/rm`; without one they answer 501.
    pub(super) control: Option<FleetLink>,
    /// If set, every endpoint but `/metrics` needs `Authorization: Bearer <api_token>`.
    api_token: Option<BearerToken>,
    /// If set, `/init`, `/add` and `/rm` need `Authorization: Bearer <admin_token>` (instead of
    /// the API token).
    admin_token: Option<BearerToken>,
    pub(super) http: reqwest::Client,
    /// The cluster token the agents require.
    pub(super) token: String,
    pub(super) metrics: RouterMetrics,
    /// What this router acknowledged or served, per shard (session reads see at least this).
    pub(super) memory: RouterMemory,
    /// Client writes waiting for their shard's next write batch.
    pub(super) writes: Arc<Coalescer<Ident, BatchedOp>>,
    /// Reads waiting for their server's (or shard primary's) next read batch.
    pub(super) reads: Arc<Coalescer<ReadKey, BatchedRead>>,
}

impl RouterState {
    /// `token` is the cluster token the agents require; `routes` the configured layout, if any.
    pub fn new(
        routes: Option<Routes>,
        primaries: Arc<dyn Primaries>,
        token: impl Into<String>,
    ) -> Result<Arc<Self>, ClientError> {
        Ok(Arc::new(Self::build(routes, primaries, None, token)?))
    }

    /// A router whose routes and primaries come from a control plane (kept current by
    /// [`super::follow`]), which also carries out `/init`, `/add` and `/rm`.
    pub fn with_control(
        plane: Arc<dyn fleet::FleetAdmin>,
        primaries: Arc<FleetPrimaries>,
        mode: HashMode,
        token: impl Into<String>,
    ) -> Result<Arc<Self>, ClientError> {
        let control = FleetLink {
            plane,
            primaries: primaries.clone(),
            mode,
        };
        Ok(Arc::new(Self::build(
            None,
            primaries,
            Some(control),
            token,
        )?))
    }

    fn build(
        routes: Option<Routes>,
        primaries: Arc<dyn Primaries>,
        control: Option<FleetLink>,
        token: impl Into<String>,
    ) -> Result<Self, ClientError> {
        let http = agent_client(None)?;
        Ok(Self {
            routes: RwLock::new(routes.map(Arc::new)),
            primaries,
            control,
            api_token: None,
            admin_token: None,
            http,
            token: token.into(),
            metrics: RouterMetrics::new(),
            memory: RouterMemory::default(),
            writes: Coalescer::new(MAX_WRITE_BATCH, BATCHES_IN_FLIGHT),
            reads: Coalescer::new(MAX_READ_BATCH, BATCHES_IN_FLIGHT),
        })
    }

    /// Requires `Authorization: Bearer <token>` on the public API (all but `/metrics`). Call
    /// before sharing the state.
    pub fn require_api_token(self: &mut Arc<Self>, token: impl Into<String>) {
        if let Some(state) = Arc::get_mut(self) {
            state.api_token = Some(BearerToken::new(token.into()));
        }
    }

    /// Trusts `ca`, the fleet's authority, for the agents' `https://` URLs. Call before sharing
    /// the state.
    pub fn trust_authority(self: &mut Arc<Self>, ca: TrustedCa) -> Result<(), ClientError> {
        if let Some(state) = Arc::get_mut(self) {
            state.http = agent_client(Some(ca))?;
        }
        Ok(())
    }

    /// Guards the administrative endpoints (`/init`, `/add`, `/rm`) with their own token.
    pub fn require_admin_token(self: &mut Arc<Self>, token: impl Into<String>) {
        if let Some(state) = Arc::get_mut(self) {
            state.admin_token = Some(BearerToken::new(token.into()));
        }
    }

    /// Replaces the layout (after `/init`, `/add`, `/rm`).
    pub fn set_routes(&self, routes: Option<Routes>) {
        let routes = routes.map(Arc::new);
        match self.routes.write() {
            Ok(mut r) => *r = routes,
            Err(poisoned) => *poisoned.into_inner() = routes,
        }
    }

    /// Takes up a fleet view: its routes, and its primaries into `primaries`.
    pub fn apply_view(&self, primaries: &FleetPrimaries, view: FleetView, mode: HashMode) {
        match view.routes(mode) {
            Ok(routes) => self.set_routes(routes),
            Err(e) => warn!(error = %e, version = view.version, "ignoring an unusable fleet view"),
        }
        primaries.set(view.topology);
    }

    /// The current routes, or the 400 a request gets before `/init`.
    pub(super) fn routes(&self) -> Result<Arc<Routes>, ApiError> {
        let r = match self.routes.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        r.ok_or_else(|| {
            ApiError::coded(
                ErrorCode::NotConfigured,
                "the database is not configured yet: POST /init first",
            )
        })
    }

    /// The token a request to `path` needs: the admin token for `/init`, `/add`, `/rm` when one
    /// is set, else the public API token when one is set.
    fn required_token(&self, path: &str) -> Option<&BearerToken> {
        let admin = matches!(path, "/init" | "/add" | "/rm");
        match (&self.admin_token, admin) {
            (Some(t), true) => Some(t),
            _ => self.api_token.as_ref(),
        }
    }
}

/// Middleware: refuses requests without the token they need ([`RouterState::required_token`]).
pub(super) async fn check_tokens(
    State(state): State<Arc<RouterState>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = state.required_token(req.uri().path())
        && let Err(e) = token.check(req.headers())
    {
        return e.into_response();
    }
    next.run(req).await
}

/// The client of the calls to agents.
fn agent_client(trust: Option<TrustedCa>) -> Result<reqwest::Client, ClientError> {
    ClientSettings {
        timeout: Some(CALL_TIMEOUT),
        pool_max_idle_per_host: Some(512),
        trust,
        ..ClientSettings::default()
    }
    .build()
}
