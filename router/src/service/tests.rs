//! The router's token checks and its answers without a control plane.

use std::sync::Arc;

use axum::Router;
use serde_json::Value as Json_;

use super::{RouterState, router};
use crate::routes::Primaries;
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
    let mut state =
        RouterState::new(None, Arc::new(NoPrimaries), "agent-token").expect("router state");
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
    let mut state =
        RouterState::new(None, Arc::new(NoPrimaries), "agent-token").expect("router state");
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
    let state = RouterState::new(None, Arc::new(NoPrimaries), "t").expect("router state");
    let app = router(state, 1 << 20);
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

/// An agent of an older version: the single endpoints only (`/shards/{id}/writes` and `/reads`
/// answer 404, as its fallback does). It records the paths it was called on.
async fn older_agent(seen: Arc<std::sync::Mutex<Vec<String>>>) -> String {
    use axum::routing::post;
    let record = move |path: &'static str| {
        let seen = seen.clone();
        move |axum::Json(body): axum::Json<Json_>| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("seen").push(path.to_owned());
                let answer = match path {
                    "/write" => {
                        serde_json::json!({"message": "Data entries added", "count": body["data"].as_array().map_or(0, Vec::len), "status": "success"})
                    }
                    _ => {
                        serde_json::json!({"data": [{"Stud_id": body["Stud_id"]["low"], "Stud_name": "a", "Stud_marks": "1"}], "status": "success"})
                    }
                };
                ([("x-walshard-lsn", "7")], axum::Json(answer))
            }
        }
    };
    let app = Router::new()
        .route("/write", post(record("/write")))
        .route("/read", post(record("/read")))
        .fallback(walshard_contract::answers::no_such_endpoint);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

struct OnePrimary;

impl Primaries for OnePrimary {
    fn primary(&self, _shard: &str) -> Option<String> {
        Some("Server0".into())
    }
}

#[tokio::test]
async fn an_agent_without_batch_endpoints_gets_single_requests() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let url = older_agent(seen.clone()).await;
    let layout = crate::requests::parse_init(&serde_json::json!({
        "N": 1,
        "schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]},
        "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 100}],
        "servers": {"Server0": ["sh1"]}
    }))
    .expect("layout");
    let urls = [(walshard_contract::Ident::new("Server0").expect("name"), url)]
        .into_iter()
        .collect();
    let routes = crate::routes::Routes::new(layout, urls, crate::hashing::HashMode::Default)
        .expect("routes");
    let app = router(
        RouterState::new(Some(routes), Arc::new(OnePrimary), "t").expect("state"),
        1 << 20,
    );
    let send = |path: &str, body: Json_| {
        let req = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        app.clone().oneshot(req)
    };
    let resp = send(
        "/write",
        serde_json::json!({"data": [{"Stud_id": 3, "Stud_name": "a", "Stud_marks": 1}]}),
    )
    .await
    .expect("answer");
    assert_eq!(resp.status(), 200);
    let resp = send(
        "/read",
        serde_json::json!({"Stud_id": {"low": 3, "high": 4}}),
    )
    .await
    .expect("answer");
    assert_eq!(resp.status(), 200);
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let v: Json_ = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["data"][0]["Stud_id"], 3, "{v}");
    assert_eq!(*seen.lock().expect("seen"), vec!["/write", "/read"]);
}
