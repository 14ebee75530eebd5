//! The router in Kubernetes mode against a fake API server on loopback: the watched
//! `ShardedDatabase` becomes its routes, `/add` and `/rm` become server-side apply patches of
//! `spec.layout` alone under the field manager `walshard-router` (conditioned on
//! `resourceVersion`, validated again after a 409), the user's `shards` and `servers` stay as
//! written, `/init` of another layout is refused without a patch.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tower::ServiceExt;
use walshard_k8s_api::spec::ShardedDatabase;
use walshard_router::fleet::{FleetAdmin, FleetPrimaries};
use walshard_router::hashing::HashMode;
use walshard_router::kube_mode::{FIELD_MANAGER, KubeFleet};
use walshard_router::service::{self, RouterState};

const SEED_DEFAULT: &str = include_str!("../../examples/seed-default.yaml");
const BASE: &str = "/apis/walshard.io/v1alpha1/namespaces/db/shardeddatabases";

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    query: String,
    content_type: String,
    body: Value,
}

#[derive(Clone)]
struct Fake {
    object: Arc<Mutex<Value>>,
    patches: Arc<Mutex<Vec<Recorded>>>,
    /// The next PATCH meets a concurrent change: 409, and the object's resourceVersion moves.
    conflict: Arc<AtomicBool>,
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The status the operator would publish for `object`: observed, a primary for every shard.
fn settle(object: &mut Value) {
    let db: ShardedDatabase = serde_json::from_value(object.clone()).unwrap();
    let resolved = db.spec.resolve().unwrap();
    let shards: Vec<Value> = resolved
        .shards
        .iter()
        .map(|s| {
            let primary = resolved
                .placement
                .iter()
                .find(|(_, held)| held.iter().any(|h| h == s.id.as_str()))
                .map(|(server, _)| server.clone());
            json!({"id": s.id.as_str(), "primary": primary, "epoch": 1, "readyReplicas": 3, "replicas": 3})
        })
        .collect();
    object["status"] = json!({
        "observedGeneration": object["metadata"]["generation"],
        "shardCount": shards.len(),
        "shards": shards,
        "primaries": format!("{n}/{n}", n = resolved.shards.len()),
    });
}

async fn list_or_watch(State(f): State<Fake>, RawQuery(q): RawQuery) -> Response {
    if q.unwrap_or_default().contains("watch=true") {
        // A watch that stays open without news.
        let body = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        return (StatusCode::OK, body).into_response();
    }
    let object = f.object.lock().unwrap().clone();
    axum::Json(json!({
        "apiVersion": "walshard.io/v1alpha1",
        "kind": "ShardedDatabaseList",
        "metadata": {"resourceVersion": object["metadata"]["resourceVersion"]},
        "items": [object],
    }))
    .into_response()
}

async fn get_object(State(f): State<Fake>) -> axum::Json<Value> {
    axum::Json(f.object.lock().unwrap().clone())
}

async fn patch_object(
    State(f): State<Fake>,
    method: axum::http::Method,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let apply = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/apply-patch+yaml");
    f.patches.lock().unwrap().push(Recorded {
        method: method.to_string(),
        query: q.unwrap_or_default(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body.clone(),
    });
    let mut object = f.object.lock().unwrap();
    let rv = object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    if f.conflict.swap(false, Ordering::SeqCst)
        || body["metadata"]["resourceVersion"] != json!(rv.to_string())
    {
        object["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "the object has been modified", "reason": "Conflict", "code": 409});
        return (StatusCode::CONFLICT, axum::Json(status)).into_response();
    }
    let mut patch = body;
    if let Some(m) = patch["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    if apply {
        // Server-side apply by a manager that owns only `spec.layout`: its applied
        // configuration replaces that field; every other field keeps its owner and value.
        object["spec"]["layout"] = patch["spec"]["layout"].clone();
    } else {
        merge(&mut object, &patch);
    }
    let generation = object["metadata"]["generation"].as_i64().unwrap() + 1;
    object["metadata"]["generation"] = json!(generation);
    object["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
    settle(&mut object);
    axum::Json(object.clone()).into_response()
}

async fn serve(f: Fake) -> String {
    let app = Router::new()
        .route(BASE, get(list_or_watch))
        .route(
            &format!("{BASE}/studt"),
            get(get_object).patch(patch_object),
        )
        .with_state(f);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn call(app: &Router, method: &str, path: &str, body: Value) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requests_become_spec_patches() {
    let mut object =
        serde_json::to_value(ShardedDatabase::from_yaml(SEED_DEFAULT).unwrap()).unwrap();
    object["metadata"] =
        json!({"name": "studt", "namespace": "db", "generation": 1, "resourceVersion": "41"});
    settle(&mut object);
    let fake = Fake {
        object: Arc::new(Mutex::new(object)),
        patches: Arc::default(),
        conflict: Arc::default(),
    };
    let url = serve(fake.clone()).await;
    let mut config = kube::Config::new(url.parse().unwrap());
    config.default_namespace = "db".to_owned();
    let client = kube::Client::try_from(config).unwrap();

    let (control, watch) = KubeFleet::start(client, "db", "studt", Duration::from_secs(5));
    let control: Arc<dyn FleetAdmin> = control;
    let primaries = Arc::new(FleetPrimaries::default());
    let state =
        RouterState::with_control(control.clone(), primaries.clone(), HashMode::Default, "t")
            .expect("router state");
    let follower = tokio::spawn(service::follow(
        control,
        state.clone(),
        primaries,
        HashMode::Default,
    ));
    let app = service::router(state, 1 << 20);

    // The watched object becomes the routes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        // Before the first view the router answers the seed's empty configuration (N 0).
        let (code, v) = call(&app, "GET", "/status", Value::Null).await;
        if code == 200 && v["N"] != 0 {
            break v;
        }
        assert!(Instant::now() < deadline, "no fleet view: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["N"], 6);
    assert_eq!(status["shards"][0]["primary"], "Server0");

    // /add: a concurrent change first (409), then validated again and written.
    fake.conflict.store(true, Ordering::SeqCst);
    let (code, answer) = call(
        &app,
        "POST",
        "/add",
        json!({"n": 1, "new_shards": [{"Stud_id_low": 16384, "Shard_id": "sh5", "Shard_size": 4096}],
               "servers": {"Server6": ["sh5", "sh1"]}}),
    )
    .await;
    assert_eq!(
        (code, &answer),
        (
            200,
            &json!({"N": 7, "message": "Add Server:6", "status": "successful"})
        )
    );
    let patches = fake.patches.lock().unwrap().clone();
    assert_eq!(patches.len(), 2, "{patches:?}");
    for p in &patches {
        assert_eq!(p.method, "PATCH");
        assert_eq!(p.content_type, "application/apply-patch+yaml");
        assert!(
            p.query.contains(&format!("fieldManager={FIELD_MANAGER}")),
            "{}",
            p.query
        );
        assert!(p.query.contains("force=true"), "{}", p.query);
        let spec_fields: Vec<&String> = p.body["spec"]
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(spec_fields, ["layout"], "only spec.layout: {}", p.body);
        assert_eq!(p.body["metadata"]["name"], "studt");
        assert_eq!(p.body["kind"], "ShardedDatabase");
    }
    assert_eq!(patches[0].body["metadata"]["resourceVersion"], "41");
    assert_eq!(
        patches[1].body["metadata"]["resourceVersion"], "42",
        "read again after the 409"
    );
    let layout = &patches[1].body["spec"]["layout"];
    assert_eq!(layout["shards"][4]["id"], "sh5");
    assert_eq!(
        layout["servers"][6],
        json!({"name": "Server6", "shards": ["sh5", "sh1"]})
    );
    let stored = fake.object.lock().unwrap().clone();
    assert_eq!(
        stored["spec"]["shards"],
        json!({"count": 4, "size": 4096}),
        "the user's form is kept: {stored}"
    );
    assert_eq!(stored["spec"]["servers"], json!({"count": 6}));
    // Answered with the new view taken up.
    let (_, status) = call(&app, "GET", "/status", Value::Null).await;
    assert_eq!(status["N"], 7);
    assert_eq!(status["shards"][4]["Shard_id"], "sh5");

    // /rm.
    let (code, answer) = call(
        &app,
        "DELETE",
        "/rm",
        json!({"n": 1, "servers": ["Server5"]}),
    )
    .await;
    assert_eq!(
        (code, &answer),
        (
            200,
            &json!({"message": {"N": 6, "servers": ["Server5"]}, "status": "successful"})
        )
    );
    let (_, status) = call(&app, "GET", "/status", Value::Null).await;
    assert_eq!(status["N"], 6);
    assert!(status["servers"].get("Server5").is_none());
    assert!(status["servers"].get("Server6").is_some());

    // /init: the same layout is fine, another is a 409; neither writes.
    let before = fake.patches.lock().unwrap().len();
    let mut same = status.clone();
    same.as_object_mut().unwrap().remove("status");
    let (code, answer) = call(&app, "POST", "/init", same.clone()).await;
    assert_eq!(
        (code, answer["message"].as_str()),
        (200, Some("Configured Database"))
    );
    let mut other = same;
    other["shards"][0]["Shard_size"] = json!(1);
    let (code, answer) = call(&app, "POST", "/init", other).await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(answer["status"], "failure");
    // Refused requests write nothing.
    let (code, _) = call(
        &app,
        "DELETE",
        "/rm",
        json!({"n": 1, "servers": ["Nobody"]}),
    )
    .await;
    assert_eq!(code, 404);
    assert_eq!(fake.patches.lock().unwrap().len(), before);

    follower.abort();
    watch.abort();
}
