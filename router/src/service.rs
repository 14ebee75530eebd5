//! The router's data path over HTTP: the seed's `/read`, `/write`, `/update`, `/del` and
//! `/status`, sent to the shard agents.
//!
//! - Reads fan out over the shards a range touches, in parallel. An eventual read goes to the
//!   replica the shard's consistent-hash ring picks for the request, falling back around the ring
//!   if it fails; a strong read goes to the primary, which runs a read-index round.
//! - Writes are validated whole, grouped per shard, and sent to every shard's primary in
//!   parallel, each group with an operation id that stays the same across retries (so a retry
//!   after a timeout or a failover is applied once). A "not the primary" answer (421) is followed
//!   to the primary it names, or the topology is asked again; an in-doubt 503 or a lost
//!   connection is retried until [`WRITE_DEADLINE`]. If some shards fail, the answer says exactly
//!   which entries were written.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde_json::{Map, Value as Json_, json};
use tracing::{debug, warn};
use walshard_contract::{ApiError, ErrorCode, Ident, KeyRange, Row, STATUS_SUCCESS, code_of};

use crate::fleet::{self, Admin, FleetPrimaries};
use crate::hashing::HashMode;
use crate::requests::{self, Consistency};
use crate::routes::{Primaries, Routes};
use crate::session::{RouterMemory, SESSION_HEADER, SessionToken};

/// How long a write keeps retrying through failovers before it answers 503.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Timeout of one call to an agent.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A call to a primary slower than this starts watching for a failover ...
const MOVED_CHECK_AFTER: Duration = Duration::from_millis(100);
/// ... this often, and is resent to the new primary at once.
const MOVED_CHECK_EVERY: Duration = Duration::from_millis(10);
/// Header of the agent's data answers: the log position the answer reflects.
const LSN_HEADER: &str = "x-walshard-lsn";
/// Header carrying the operation id (the agent's `x-walshard-op-id`).
const OP_ID_HEADER: &str = "x-walshard-op-id";
/// How long a replica may wait to reach a session read's position before the router tries the
/// next one (a replica lags its primary by about one round trip).
const REPLICA_SESSION_WAIT_MS: u64 = 50;
/// How long the primary may wait for it (it has applied all it acknowledged, unless it was
/// elected a moment ago).
const PRIMARY_SESSION_WAIT_MS: u64 = 2000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    reason: String,
}

/// The router's Prometheus metrics.
pub struct RouterMetrics {
    registry: Registry,
    requests: Family<EndpointLabels, Counter>,
    seconds: Family<EndpointLabels, Histogram>,
    retries: Family<RetryLabels, Counter>,
}

impl RouterMetrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("walshard_router");
        let requests = Family::<EndpointLabels, Counter>::default();
        let seconds = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register("requests", "Seed API requests answered", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Seed API latency",
            seconds.clone(),
        );
        registry.register(
            "agent_retries",
            "Calls to agents retried, by reason",
            retries.clone(),
        );
        Self {
            registry,
            requests,
            seconds,
            retries,
        }
    }

    fn record(&self, endpoint: &str, status: StatusCode, started: Instant) {
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
            status: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
        self.seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    fn retry(&self, reason: &str) {
        self.retries
            .get_or_create(&RetryLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}

/// The control plane the router follows (see [`crate::fleet`]).
struct Control {
    plane: Arc<dyn fleet::FleetAdmin>,
    primaries: Arc<FleetPrimaries>,
    mode: HashMode,
}

/// Shared state of the router service.
pub struct RouterState {
    /// `None` until the fleet is configured (`/init`).
    routes: RwLock<Option<Arc<Routes>>>,
    primaries: Arc<dyn Primaries>,
    /// Carries out `/init`, `/add` and `/rm`; without one they answer 501.
    control: Option<Control>,
    /// If set, every endpoint but `/metrics` needs `Authorization: Bearer <api_token>`.
    api_token: Option<String>,
    /// If set, `/init`, `/add` and `/rm` need `Authorization: Bearer <admin_token>` (instead of
    /// the API token).
    admin_token: Option<String>,
    http: reqwest::Client,
    token: String,
    metrics: RouterMetrics,
    /// What this router acknowledged or served, per shard (session reads see at least this).
    memory: RouterMemory,
}

impl RouterState {
    /// `token` is the cluster token the agents require; `routes` the configured layout, if any.
    pub fn new(
        routes: Option<Routes>,
        primaries: Arc<dyn Primaries>,
        token: impl Into<String>,
    ) -> Arc<Self> {
        Arc::new(Self::build(routes, primaries, None, token))
    }

    /// A router whose routes and primaries come from a control plane (kept current by
    /// [`fleet::follow`]), which also carries out `/init`, `/add` and `/rm`.
    pub fn with_control(
        plane: Arc<dyn fleet::FleetAdmin>,
        primaries: Arc<FleetPrimaries>,
        mode: HashMode,
        token: impl Into<String>,
    ) -> Arc<Self> {
        let control = Control {
            plane,
            primaries: primaries.clone(),
            mode,
        };
        Arc::new(Self::build(None, primaries, Some(control), token))
    }

    fn build(
        routes: Option<Routes>,
        primaries: Arc<dyn Primaries>,
        control: Option<Control>,
        token: impl Into<String>,
    ) -> Self {
        Self {
            routes: RwLock::new(routes.map(Arc::new)),
            primaries,
            control,
            api_token: None,
            admin_token: None,
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .tcp_nodelay(true)
                .pool_max_idle_per_host(512)
                .build()
                .unwrap_or_default(),
            token: token.into(),
            metrics: RouterMetrics::new(),
            memory: RouterMemory::default(),
        }
    }

    /// Requires `Authorization: Bearer <token>` on the public API (all but `/metrics`). Call
    /// before sharing the state.
    pub fn require_api_token(self: &mut Arc<Self>, token: impl Into<String>) {
        if let Some(state) = Arc::get_mut(self) {
            state.api_token = Some(token.into());
        }
    }

    /// Guards the administrative endpoints (`/init`, `/add`, `/rm`) with their own token.
    pub fn require_admin_token(self: &mut Arc<Self>, token: impl Into<String>) {
        if let Some(state) = Arc::get_mut(self) {
            state.admin_token = Some(token.into());
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

    /// The current routes, or the 400 a request gets before `/init`.
    fn routes(&self) -> Result<Arc<Routes>, ApiError> {
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

    /// One call to an agent: `(status, body)`, or the transport error.
    async fn call(
        &self,
        url: &str,
        method: reqwest::Method,
        path: &str,
        body: &Json_,
        op_id: Option<&str>,
    ) -> Result<(u16, Json_), reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{url}{path}"))
            .bearer_auth(&self.token)
            .json(body);
        if let Some(id) = op_id {
            req = req.header(OP_ID_HEADER, id);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let lsn = resp
            .headers()
            .get(LSN_HEADER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let mut value = resp.json::<Json_>().await.unwrap_or(Json_::Null);
        // The answer's log position travels in a header; the router reads it as `"lsn"`.
        if let (Some(lsn), Some(obj)) = (lsn, value.as_object_mut()) {
            obj.insert("lsn".into(), lsn.into());
        }
        Ok((status, value))
    }

    /// Sends `body` to the shard's primary until it answers for sure or [`WRITE_DEADLINE`]
    /// passes: follows 421 hints, asks the topology again, retries in-doubt failures with the
    /// same `op_id`.
    async fn to_primary(
        &self,
        shard: &Ident,
        method: reqwest::Method,
        path: &str,
        body: &Json_,
        op_id: Option<&str>,
    ) -> Result<Json_, ApiError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut hint: Option<String> = None;
        let mut last_error = format!("shard {shard} has no primary");
        let mut pause = Duration::from_millis(5);
        while Instant::now() < deadline {
            let primary = hint
                .take()
                .or_else(|| self.primaries.primary(shard.as_str()));
            let routes = self.routes()?;
            let Some((server, url)) =
                primary.and_then(|p| routes.url(&p).map(|u| (p.clone(), u.to_owned())))
            else {
                self.metrics.retry("no-primary");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
                continue;
            };
            let sent = tokio::select! {
                answer = self.call(&url, method.clone(), path, body, op_id) => Some(answer),
                () = self.primary_moved(shard, &server) => None,
            };
            let Some(answer) = sent else {
                // The control plane elected another primary while this call hung (a frozen or
                // partitioned primary): resend to it now; the op id makes that safe.
                self.metrics.retry("primary-moved");
                last_error = format!("{server} stopped answering and was replaced");
                continue;
            };
            match answer {
                Ok((200, v)) => return Ok(v),
                // Branch on the agent's error code, never on its message.
                Ok((status, v)) => match code_of(status, &v) {
                    ErrorCode::NotPrimary => {
                        self.metrics.retry("not-primary");
                        hint = v["primary"]
                            .as_str()
                            .filter(|p| *p != server)
                            .map(str::to_owned);
                        last_error = message_of(&v);
                    }
                    code if code.is_transient() => {
                        self.metrics.retry("unavailable");
                        last_error = format!("{server} answered {code}: {}", message_of(&v));
                    }
                    code => return Err(relayed(status, code, &v, "")),
                },
                Err(e) => {
                    self.metrics.retry("unreachable");
                    last_error = format!("{server} unreachable: {e}");
                }
            }
            debug!(%shard, %last_error, "retrying the primary");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "shard {shard}: {last_error}; gave up after {}s (a retry is safe)",
                WRITE_DEADLINE.as_secs()
            ),
        ))
    }

    /// Resolves once the published primary of `shard` is another server than `server`. Checked
    /// only after [`MOVED_CHECK_AFTER`], when a call is slower than any healthy one.
    async fn primary_moved(&self, shard: &Ident, server: &str) {
        tokio::time::sleep(MOVED_CHECK_AFTER).await;
        loop {
            if self
                .primaries
                .primary(shard.as_str())
                .is_some_and(|p| p != server)
            {
                return;
            }
            tokio::time::sleep(MOVED_CHECK_EVERY).await;
        }
    }

    /// A read of one shard that sees at least log position `min_lsn` (0: any committed state):
    /// the ring's pick first, then the other replicas, each waiting a moment for the position;
    /// for a session read the primary last, which may wait longer. Returns the rows and the
    /// position the read was served at.
    async fn read_from(
        &self,
        shard: &Ident,
        range: KeyRange,
        request_id: u64,
        min_lsn: Option<u64>,
    ) -> Result<(Vec<Json_>, u64), ApiError> {
        let routes = self.routes()?;
        let key = routes.layout.schema.key().to_string();
        let mut body =
            json!({"shard": shard.as_str(), key: {"low": range.low, "high": range.high}});
        if let Some(lsn) = min_lsn {
            body["min_lsn"] = lsn.into();
            body["wait_ms"] = REPLICA_SESSION_WAIT_MS.into();
        }
        let mut last_error = format!("shard {shard} has no replica");
        for server in routes.read_order(shard, request_id) {
            let Some(url) = routes.url(server) else {
                continue;
            };
            match self
                .call(url, reqwest::Method::POST, "/read", &body, None)
                .await
            {
                Ok((200, v)) => return Ok((rows_of(&v), applied_of(&v))),
                Ok((code, v)) => {
                    last_error = format!("{server} answered {code}: {}", message_of(&v))
                }
                Err(e) => last_error = format!("{server} unreachable: {e}"),
            }
            self.metrics.retry("read-fallback");
        }
        if min_lsn.is_some() {
            body["wait_ms"] = PRIMARY_SESSION_WAIT_MS.into();
            let v = self
                .to_primary(shard, reqwest::Method::POST, "/read", &body, None)
                .await?;
            return Ok((rows_of(&v), applied_of(&v)));
        }
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, last_error))
    }

    /// The seed's answer to an acknowledged `/update` or `/del`, with the causality token it
    /// reached; this router remembers the position.
    fn acknowledged(
        &self,
        headers: &HeaderMap,
        shard: &Ident,
        agent_answer: &Json_,
    ) -> Result<Json_, ApiError> {
        let lsn = applied_of(agent_answer);
        self.memory.raise(shard.as_str(), lsn);
        let mut token = session_of(headers, None)?;
        token.raise(shard.as_str(), lsn);
        let mut answer = json!({"message": message_of(agent_answer)});
        if !token.is_empty() {
            answer["session"] = token.to_string().into();
        }
        answer["status"] = STATUS_SUCCESS.into();
        Ok(answer)
    }

    async fn read_strong(
        &self,
        shard: &Ident,
        range: KeyRange,
    ) -> Result<(Vec<Json_>, u64), ApiError> {
        let key = self.routes()?.layout.schema.key().to_string();
        let body = json!({"shard": shard.as_str(), key: {"low": range.low, "high": range.high}, "consistency": "strong"});
        let v = self
            .to_primary(shard, reqwest::Method::POST, "/read", &body, None)
            .await?;
        Ok((rows_of(&v), applied_of(&v)))
    }
}

/// The log position an agent's data answer reflects (its `x-walshard-lsn` header).
fn applied_of(v: &Json_) -> u64 {
    v["lsn"].as_u64().unwrap_or(0)
}

/// The client's causality token: the `X-Walshard-Session` header, or a `"session"` field.
fn session_of(headers: &HeaderMap, body: Option<&Json_>) -> Result<SessionToken, ApiError> {
    let mut token = SessionToken::default();
    if let Some(h) = headers.get(SESSION_HEADER) {
        let text = h.to_str().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "the session header is not text")
        })?;
        token = SessionToken::parse(text)?;
    }
    if let Some(field) = body.and_then(|b| b.get("session")) {
        let text = field.as_str().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "\"session\" must be a token string",
            )
        })?;
        let extra = SessionToken::parse(text)?;
        for shard in extra.shards() {
            token.raise(shard, extra.get(shard));
        }
    }
    Ok(token)
}

/// An agent's error answer relayed as the router's own (its status, code and message, and the
/// server and shard it names, e.g. of a full disk).
fn relayed(status: u16, code: ErrorCode, v: &Json_, prefix: &str) -> ApiError {
    let mut e = ApiError::new(status, format!("{prefix}{}", message_of(v))).with_code(code);
    for field in ["server", "shard"] {
        if let Some(x) = v.get(field) {
            e.extra.insert(field.into(), x.clone());
        }
    }
    e
}

fn message_of(v: &Json_) -> String {
    v["message"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_owned)
}

fn rows_of(v: &Json_) -> Vec<Json_> {
    v["data"].as_array().cloned().unwrap_or_default()
}

fn parse_json(bytes: &[u8]) -> Result<Json_, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))
}

fn new_op_id() -> String {
    format!("{:032x}", uuid::Uuid::new_v4().as_u128())
}

/// The router's data-path endpoints.
pub fn router(state: Arc<RouterState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/read", post(read))
        .route("/write", post(write))
        .route("/update", put(update))
        .route("/del", delete(del))
        .route("/read/{server}", get(read_server))
        .route("/status", get(status))
        .route("/init", post(init))
        .route("/add", post(add))
        .route("/rm", delete(rm))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_api_token,
        ))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Refuses requests without the token they need: the admin token for `/init`, `/add`, `/rm`
/// when one is set, else the public API token when one is set.
async fn check_api_token(
    State(state): State<Arc<RouterState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let admin = matches!(req.uri().path(), "/init" | "/add" | "/rm");
    let required = match (&state.admin_token, admin) {
        (Some(t), true) => Some(t),
        _ => state.api_token.as_ref(),
    };
    if let Some(token) = required {
        let given = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| {
            use subtle::ConstantTimeEq;
            g.as_bytes().ct_eq(token.as_bytes()).into()
        });
        if !ok {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token>)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Runs a handler body and records its outcome in the metrics.
async fn timed(
    state: &RouterState,
    endpoint: &str,
    work: impl Future<Output = Result<Json_, ApiError>>,
) -> Response {
    let started = Instant::now();
    let (status, response) = match work.await {
        Ok(v) => {
            let session = v["session"].as_str().map(str::to_owned);
            let mut response = Json(v).into_response();
            if let Some(value) = session.and_then(|t| HeaderValue::from_str(&t).ok()) {
                response.headers_mut().insert(SESSION_HEADER, value);
            }
            (StatusCode::OK, response)
        }
        Err(e) => (
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.into_response(),
        ),
    };
    state.metrics.record(endpoint, status, started);
    response
}

/// `GET /status`: the configuration with each shard's primary; before `/init`, as the seed does,
/// an empty configuration.
async fn status(State(state): State<Arc<RouterState>>) -> Response {
    timed(&state, "/status", async {
        let mut v = match state.routes() {
            Ok(routes) => routes
                .layout
                .to_json(|s| state.primaries.primary(s.as_str())),
            Err(_) => json!({
                "N": 0,
                "schema": {"columns": [], "dtypes": []},
                "shards": [],
                "servers": {},
            }),
        };
        v["status"] = STATUS_SUCCESS.into();
        Ok(v)
    })
    .await
}

async fn metrics(State(state): State<Arc<RouterState>>) -> Response {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &state.metrics.registry).is_err() {
        out.clear();
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// `POST /read`: each shard the range touches, in parallel, at the requested consistency
/// (docs/consistency.md); a session read sees at least the client's token and what this router
/// acknowledged or served, and answers the token it reached.
async fn read(State(state): State<Arc<RouterState>>, headers: HeaderMap, body: Bytes) -> Response {
    timed(&state, "/read", async {
        let body = parse_json(&body)?;
        let routes = state.routes()?;
        let (range, consistency) = requests::parse_read(&routes.layout, &body)?;
        let mut token = session_of(&headers, Some(&body))?;
        let plan = routes.layout.plan_read(range);
        let request_id = uuid::Uuid::new_v4().as_u128() as u64;
        let calls = plan.iter().map(|(shard, part)| {
            let state = state.clone();
            let (shard, part) = (shard.id.clone(), *part);
            let needed = token
                .get(shard.as_str())
                .max(state.memory.get(shard.as_str()));
            async move {
                let read = match consistency {
                    Consistency::Eventual => state.read_from(&shard, part, request_id, None).await,
                    Consistency::Session => {
                        state
                            .read_from(&shard, part, request_id, Some(needed))
                            .await
                    }
                    Consistency::Strong => state.read_strong(&shard, part).await,
                };
                (shard, read)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut data = Vec::new();
        for (shard, r) in results {
            let (rows, served_at) = r?;
            data.extend(rows);
            if consistency != Consistency::Eventual {
                state.memory.raise(shard.as_str(), served_at);
                token.raise(shard.as_str(), served_at);
            }
        }
        let queried: Vec<&str> = plan.iter().map(|(s, _)| s.id.as_str()).collect();
        let mut answer = json!({"shards_queried": queried, "data": data});
        if !token.is_empty() {
            answer["session"] = token.to_string().into();
        }
        answer["status"] = STATUS_SUCCESS.into();
        Ok(answer)
    })
    .await
}

async fn write(State(state): State<Arc<RouterState>>, headers: HeaderMap, body: Bytes) -> Response {
    timed(&state, "/write", async {
        let body = parse_json(&body)?;
        let mut token = session_of(&headers, None)?;
        let routes = state.routes()?;
        let schema = routes.layout.schema.clone();
        let plan = requests::parse_write(&routes.layout, &body)?;
        let total: usize = plan.groups.values().map(Vec::len).sum();
        let on_duplicate = plan.on_duplicate;
        let calls = plan.groups.into_iter().map(|(shard, rows)| {
            let state = state.clone();
            let schema = schema.clone();
            async move {
                let data: Vec<Json_> = rows
                    .iter()
                    .map(|r| Json_::Object(r.to_json(&schema)))
                    .collect();
                let body =
                    json!({"shard": shard.as_str(), "data": data, "on_duplicate": on_duplicate});
                let op_id = new_op_id();
                let result = state
                    .to_primary(&shard, reqwest::Method::POST, "/write", &body, Some(&op_id))
                    .await;
                (shard, rows, result)
            }
        });
        let results = futures::future::join_all(calls).await;
        let mut written: Vec<i64> = Vec::new();
        let mut skipped: Vec<i64> = Vec::new();
        let mut failures: Vec<(Ident, Vec<i64>, ApiError)> = Vec::new();
        for (shard, rows, result) in results {
            let keys: Vec<i64> = rows.iter().map(Row::key).collect();
            match result {
                Ok(v) => {
                    state.memory.raise(shard.as_str(), applied_of(&v));
                    token.raise(shard.as_str(), applied_of(&v));
                    let stored: Vec<i64> = v["skipped"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Json_::as_i64).collect())
                        .unwrap_or_default();
                    written.extend(keys.iter().filter(|k| !stored.contains(k)));
                    skipped.extend(stored);
                }
                Err(e) => failures.push((shard, keys, e)),
            }
        }
        skipped.sort_unstable();
        if failures.is_empty() {
            let mut answer = json!({"message": format!("{} Data entries added", written.len())});
            if !skipped.is_empty() {
                answer["skipped"] = json!(skipped);
            }
            if !token.is_empty() {
                answer["session"] = token.to_string().into();
            }
            answer["status"] = STATUS_SUCCESS.into();
            return Ok(answer);
        }
        let (status, code) = failures.first().map_or(
            (StatusCode::BAD_GATEWAY.as_u16(), ErrorCode::BadGateway),
            |(_, _, e)| (e.status, e.code),
        );
        let detail: Vec<String> = failures
            .iter()
            .map(|(s, _, e)| format!("{s}: {}", e.message))
            .collect();
        let failed: Map<String, Json_> = failures
            .iter()
            .map(|(s, keys, _)| (s.to_string(), json!(keys)))
            .collect();
        warn!(written = written.len(), total, "write partly failed");
        let mut err = ApiError::new(
            status,
            format!(
                "{} of {total} entries written; failed: {}",
                written.len(),
                detail.join("; ")
            ),
        )
        .with_code(code);
        err.extra.insert("written".into(), json!(written));
        if !skipped.is_empty() {
            err.extra.insert("skipped".into(), json!(skipped));
        }
        err.extra.insert("failed".into(), Json_::Object(failed));
        if !token.is_empty() {
            err.extra.insert("session".into(), token.to_string().into());
        }
        Err(err)
    })
    .await
}

async fn update(
    State(state): State<Arc<RouterState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    timed(&state, "/update", async {
        let body = parse_json(&body)?;
        let routes = state.routes()?;
        let (shard, key, patch) = requests::parse_update(&routes.layout, &body)?;
        let key_name = routes.layout.schema.key().to_string();
        let data = Json_::Object(patch.to_json(&routes.layout.schema, key));
        let agent_body = json!({"shard": shard.as_str(), key_name: key, "data": data});
        let v = state
            .to_primary(
                &shard,
                reqwest::Method::PUT,
                "/update",
                &agent_body,
                Some(&new_op_id()),
            )
            .await?;
        state.acknowledged(&headers, &shard, &v)
    })
    .await
}

async fn del(State(state): State<Arc<RouterState>>, headers: HeaderMap, body: Bytes) -> Response {
    timed(&state, "/del", async {
        let body = parse_json(&body)?;
        let routes = state.routes()?;
        let (shard, key) = requests::parse_delete(&routes.layout, &body)?;
        let key_name = routes.layout.schema.key().to_string();
        let agent_body = json!({"shard": shard.as_str(), key_name: key});
        let v = state
            .to_primary(
                &shard,
                reqwest::Method::DELETE,
                "/del",
                &agent_body,
                Some(&new_op_id()),
            )
            .await?;
        state.acknowledged(&headers, &shard, &v)
    })
    .await
}

/// `GET /read/<server>`: every shard the server holds, `{"sh1": [...], ..., "status": "success"}`.
async fn read_server(
    State(state): State<Arc<RouterState>>,
    axum::extract::Path(server): axum::extract::Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
) -> Response {
    timed(&state, "/read/{server}", async {
        let routes = state.routes()?;
        let name = Ident::new(&server)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("server name: {e}")))?;
        let held = routes.layout.placement.get(&name).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("no server named {name}"))
        })?;
        let url = routes.url(name.as_str()).ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{name} has no URL"),
            )
        })?;
        let consistency = requests::consistency(
            query_param(query.as_deref(), "consistency")
                .map(Json_::from)
                .as_ref(),
        )?;
        let mut token = session_of(&headers, None)?;
        let shards: Vec<&str> = held.iter().map(Ident::as_str).collect();
        let mut body = json!({"shards": shards});
        if consistency != Consistency::Eventual {
            // This server must reach the positions itself: the session's, or for a strong read
            // each shard's read index taken on its primary (an empty strong read).
            let mut min = Map::new();
            for shard in held {
                let at = match consistency {
                    Consistency::Strong => {
                        state
                            .read_strong(shard, KeyRange { low: 1, high: 0 })
                            .await?
                            .1
                    }
                    _ => token
                        .get(shard.as_str())
                        .max(state.memory.get(shard.as_str())),
                };
                min.insert(shard.to_string(), at.into());
            }
            body["min_lsn"] = Json_::Object(min);
            body["wait_ms"] = PRIMARY_SESSION_WAIT_MS.into();
        }
        let (code, v) = state
            .call(url, reqwest::Method::GET, "/copy", &body, None)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{name} unreachable: {e}"),
                )
            })?;
        if code != 200 {
            let prefix = format!("{name}: ");
            return Err(relayed(code, code_of(code, &v), &v, &prefix));
        }
        let mut out = Map::new();
        for shard in &shards {
            out.insert((*shard).to_owned(), v[*shard].clone());
            if let Some(at) = v["applied_lsn"][*shard].as_u64() {
                state.memory.raise(shard, at);
                token.raise(shard, at);
            }
        }
        if !token.is_empty() {
            out.insert("session".into(), token.to_string().into());
        }
        out.insert("status".into(), STATUS_SUCCESS.into());
        Ok(Json_::Object(out))
    })
    .await
}

/// A query string parameter's value (`a=1&b=2`), undecoded.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// Has the control plane carry out `/init`, `/add` or `/rm`, then takes up the fleet view it
/// produced before answering (so the next request sees the change).
async fn administer(state: &RouterState, request: Admin, body: &[u8]) -> Response {
    let endpoint = request.path();
    timed(state, endpoint, async {
        let body = parse_json(body)?;
        let control = state.control.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "this router has no control plane; the fleet is configured elsewhere",
            )
        })?;
        let answer = control.plane.admin(request, &body).await?;
        match control.plane.view(0, Duration::ZERO).await {
            Ok(view) => fleet::apply(state, &control.primaries, view, control.mode),
            Err(e) => warn!(error = %e, "fleet view not refreshed after {endpoint}"),
        }
        Ok(answer)
    })
    .await
}

async fn init(State(state): State<Arc<RouterState>>, body: Bytes) -> Response {
    administer(&state, Admin::Init, &body).await
}

async fn add(State(state): State<Arc<RouterState>>, body: Bytes) -> Response {
    administer(&state, Admin::Add, &body).await
}

async fn rm(State(state): State<Arc<RouterState>>, body: Bytes) -> Response {
    administer(&state, Admin::Rm, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    struct NoPrimaries;

    impl Primaries for NoPrimaries {
        fn primary(&self, _shard: &str) -> Option<String> {
            None
        }
    }

    async fn call(app: &Router, method: &str, path: &str, bearer: Option<&str>) -> (u16, Json_) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = if method == "GET" {
            Body::empty()
        } else {
            Body::from("{}")
        };
        let resp = app
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("answer");
        let status = resp.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Json_::Null),
        )
    }

    #[tokio::test]
    async fn the_api_token_guards_everything_but_metrics() {
        let mut state = RouterState::new(None, Arc::new(NoPrimaries), "agent-token");
        state.require_api_token("s3cret");
        let app = router(state, 1 << 20);
        assert_eq!(call(&app, "GET", "/status", None).await.0, 401);
        assert_eq!(call(&app, "GET", "/status", Some("wrong")).await.0, 401);
        assert_eq!(call(&app, "POST", "/write", Some("wrong")).await.0, 401);
        let (code, v) = call(&app, "GET", "/status", Some("s3cret")).await;
        assert_eq!(code, 200, "not configured yet, as the seed: empty: {v}");
        assert_eq!(
            (v["N"].as_u64(), v["status"].as_str()),
            (Some(0), Some("success"))
        );
        let (code, v) = call(&app, "GET", "/read/Server0", Some("s3cret")).await;
        assert_eq!(code, 400, "not configured yet: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains("/init")),
            "{v}"
        );
        assert_eq!(call(&app, "GET", "/metrics", None).await.0, 200);
    }

    #[tokio::test]
    async fn the_admin_token_guards_init_add_rm_only() {
        let mut state = RouterState::new(None, Arc::new(NoPrimaries), "agent-token");
        state.require_admin_token("adm1n");
        let app = router(state, 1 << 20);
        for (method, path) in [("POST", "/init"), ("POST", "/add"), ("DELETE", "/rm")] {
            assert_eq!(call(&app, method, path, None).await.0, 401, "{path}");
            assert_eq!(
                call(&app, method, path, Some("wrong")).await.0,
                401,
                "{path}"
            );
            // Past the token (no control plane here: 501).
            assert_eq!(
                call(&app, method, path, Some("adm1n")).await.0,
                501,
                "{path}"
            );
        }
        assert_eq!(
            call(&app, "GET", "/status", None).await.0,
            200,
            "reads stay open (an empty configuration before /init)"
        );
    }

    #[tokio::test]
    async fn without_a_control_plane_admin_requests_are_501_and_data_requests_400() {
        let app = router(RouterState::new(None, Arc::new(NoPrimaries), "t"), 1 << 20);
        for (method, path) in [("POST", "/init"), ("POST", "/add"), ("DELETE", "/rm")] {
            let (code, v) = call(&app, method, path, None).await;
            assert_eq!(code, 501, "{path}: {v}");
            assert_eq!(v["status"], "failure");
        }
        for (method, path) in [
            ("POST", "/read"),
            ("POST", "/write"),
            ("GET", "/read/Server0"),
        ] {
            assert_eq!(call(&app, method, path, None).await.0, 400, "{path}");
        }
    }
}
