//! The control plane over real HTTP: `ControlPlane<HttpAgentApi>` against agents that serve
//! docs/replication.md's endpoints from a simulated cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use walshard_operator::sim::SimCluster;
use walshard_operator::wire::{FenceRequest, PromoteRequest, StepDownRequest};
use walshard_operator::{
    ApiError, ClusterSpec, ControlPlane, ControlPlaneConfig, FenceReply, HttpAgentApi,
    HttpTimeouts, Quorum,
};

const TOKEN: &str = "t0ken";

#[derive(Clone)]
struct Agent {
    name: String,
    sim: Arc<Mutex<SimCluster>>,
}

impl Agent {
    fn sim(&self) -> MutexGuard<'_, SimCluster> {
        self.sim.lock().unwrap()
    }
}

type Answer = (StatusCode, Json<Value>);

fn failure(e: ApiError) -> Answer {
    match e {
        ApiError::Conflict {
            epoch,
            primary,
            message,
        } => (
            StatusCode::CONFLICT,
            Json(
                json!({"message": message, "status": "failure", "epoch": epoch, "primary": primary}),
            ),
        ),
        ApiError::Status { status, message } => (
            StatusCode::from_u16(status).unwrap(),
            Json(json!({"message": message, "status": "failure"})),
        ),
        // A "crashed" or "hung" simulated server: the HTTP front answers 503.
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": other.to_string(), "status": "failure"})),
        ),
    }
}

fn check(headers: &HeaderMap) -> Result<(), Answer> {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
    {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "missing or wrong bearer token", "status": "failure"})),
        ))
    }
}

async fn status(State(a): State<Agent>, headers: HeaderMap) -> Answer {
    if let Err(e) = check(&headers) {
        return e;
    }
    let result = a.sim().status(&a.name);
    match result {
        Ok(s) => {
            let mut v = serde_json::to_value(s).unwrap();
            v["status"] = json!("success");
            (StatusCode::OK, Json(v))
        }
        Err(e) => failure(e),
    }
}

async fn fence(
    State(a): State<Agent>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<FenceRequest>,
) -> Answer {
    if let Err(e) = check(&headers) {
        return e;
    }
    let result = a.sim().fence(&a.name, &id, body.epoch);
    match result {
        Ok(FenceReply::Accepted(acc)) => (StatusCode::OK, Json(serde_json::to_value(acc).unwrap())),
        Ok(FenceReply::Rejected { epoch, primary }) => failure(ApiError::Conflict {
            epoch,
            primary,
            message: "epoch already promised".into(),
        }),
        Err(e) => failure(e),
    }
}

async fn promote(
    State(a): State<Agent>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<PromoteRequest>,
) -> Answer {
    if let Err(e) = check(&headers) {
        return e;
    }
    let result = a
        .sim()
        .promote(&a.name, &id, body.epoch, &body.replicas, body.quorum);
    match result {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "success"}))),
        Err(ApiError::Unavailable(m)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": m, "status": "failure"})),
        ),
        Err(e) => failure(e),
    }
}

async fn step_down(
    State(a): State<Agent>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<StepDownRequest>,
) -> Answer {
    if let Err(e) = check(&headers) {
        return e;
    }
    let result = a.sim().step_down(&a.name, &id, &body.to);
    match result {
        Ok(last_lsn) => (
            StatusCode::OK,
            Json(json!({"last_lsn": last_lsn, "status": "success"})),
        ),
        Err(e) => failure(e),
    }
}

async fn serve(agent: Agent) -> String {
    let app = Router::new()
        .route("/status", get(status))
        .route("/shards/{id}/fence", post(fence))
        .route("/shards/{id}/promote", post(promote))
        .route("/shards/{id}/step-down", post(step_down))
        .with_state(agent);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elections_and_switchover_over_http() {
    let shards: BTreeMap<String, Vec<String>> = [
        (
            "sh1".to_string(),
            vec!["S0".into(), "S1".into(), "S2".into()],
        ),
        (
            "sh2".to_string(),
            vec!["S2".into(), "S0".into(), "S1".into()],
        ),
    ]
    .into_iter()
    .collect();
    let sim = Arc::new(Mutex::new(SimCluster::new(&shards)));
    let mut servers = BTreeMap::new();
    for name in ["S0", "S1", "S2"] {
        let url = serve(Agent {
            name: name.into(),
            sim: Arc::clone(&sim),
        })
        .await;
        servers.insert(name.to_string(), url);
    }
    let spec = ClusterSpec {
        servers,
        shards,
        write_quorum: Quorum::Majority,
    };
    let api = HttpAgentApi::new(TOKEN, HttpTimeouts::default()).unwrap();
    let mut registry = Registry::default();
    let mut cp =
        ControlPlane::new(spec, api, ControlPlaneConfig::default(), &mut registry).unwrap();
    let mut now = Instant::now();
    let beat = Duration::from_millis(200);

    // First start: every replica fenced at 0 → one primary per shard at epoch 1.
    cp.tick(now).await;
    now += beat;
    let t = cp.topology(now);
    let p1 = t.primary("sh1").expect("sh1 primary").to_owned();
    assert_eq!(t.epoch("sh1"), Some(1));
    assert!(t.primary("sh2").is_some());
    assert_eq!(sim.lock().unwrap().primaries("sh1"), vec![(p1.clone(), 1)]);
    assert!(sim.lock().unwrap().write("sh1", &p1, None).unwrap());

    // The primary's agent fails (503 on every call): three missed heartbeats, then an election.
    sim.lock().unwrap().crash(&p1);
    for _ in 0..3 {
        cp.tick(now).await;
        now += beat;
    }
    let t = cp.topology(now);
    let p2 = t.primary("sh1").expect("new sh1 primary").to_owned();
    assert_ne!(p2, p1);
    assert_eq!(t.epoch("sh1"), Some(2));
    assert!(sim.lock().unwrap().write("sh1", &p2, None).unwrap());

    // It comes back (fenced), then a planned switchover hands the primary to it.
    sim.lock().unwrap().restore(&p1);
    cp.tick(now).await;
    now += beat;
    cp.request_switchover("sh1", &p1, now).unwrap();
    cp.tick(now).await;
    now += beat;
    let t = cp.topology(now);
    assert_eq!(t.primary("sh1"), Some(p1.as_str()));
    assert_eq!(t.epoch("sh1"), Some(3));
    assert!(sim.lock().unwrap().write("sh1", &p1, None).unwrap());
    assert!(sim.lock().unwrap().violations().is_empty());
    let committed = sim.lock().unwrap().committed("sh1");
    assert_eq!(committed.len(), 6, "{committed:?}");
}
