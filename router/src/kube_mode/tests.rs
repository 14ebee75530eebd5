use serde_json::json;
use walshard_k8s_api::spec::{ShardSummary, ShardedDatabaseStatus};

use super::*;

const SEED_DEFAULT: &str = include_str!("../../../examples/seed-default.yaml");

fn database() -> ShardedDatabase {
    let mut db = ShardedDatabase::from_yaml(SEED_DEFAULT).expect("parses");
    db.metadata.namespace = Some("db".to_owned());
    db.metadata.generation = Some(3);
    db
}

fn summary(id: &str, primary: Option<&str>, epoch: i64) -> ShardSummary {
    ShardSummary {
        id: id.to_owned(),
        primary: primary.map(str::to_owned),
        epoch,
        ready_replicas: 3,
        replicas: 3,
    }
}

fn with_status(
    mut db: ShardedDatabase,
    observed: i64,
    shards: Vec<ShardSummary>,
) -> ShardedDatabase {
    db.status = Some(ShardedDatabaseStatus {
        observed_generation: Some(observed),
        shards,
        ..ShardedDatabaseStatus::default()
    });
    db
}

#[test]
fn a_database_becomes_a_fleet_view() {
    let db = with_status(
        database(),
        3,
        vec![
            summary("sh1", Some("Server0"), 2),
            summary("sh2", None, 1),
            // Being drained: no longer in the placement, still a primary.
            summary("sh3", Some("Server9"), 4),
        ],
    );
    let view = fleet_view(&db).expect("resolves");
    assert_eq!(
        view.config,
        Some(db.spec.resolve().expect("resolves").init_body())
    );
    assert_eq!(view.urls.len(), 7, "six servers and the draining primary");
    assert_eq!(
        view.urls["Server0"],
        "http://studt-server0-0.studt-servers.db.svc:5001"
    );
    assert_eq!(
        view.urls["Server9"],
        names::agent_url("studt", "db", "Server9")
    );
    assert_eq!(view.topology.primary("sh1"), Some("Server0"));
    assert_eq!(view.topology.epoch("sh1"), Some(2));
    assert_eq!(view.topology.primary("sh2"), None);
    assert_eq!(view.topology.primary("sh3"), Some("Server9"));
    assert!(
        view.topology.primary("sh4").is_none(),
        "not in the status yet"
    );
    let routes = view
        .routes(crate::hashing::HashMode::Default)
        .expect("usable")
        .expect("configured");
    assert_eq!(routes.layout.shards().len(), 4);

    let mut bad = database();
    bad.spec.replicas_per_shard = 9;
    assert_eq!(fleet_view(&bad).expect_err("unresolvable").status, 500);
}

#[test]
fn add_becomes_a_layout_apply_patch_keeping_the_users_form() {
    let db = database();
    let body = json!({
        "n": 1,
        "new_shards": [{"Stud_id_low": 16384, "Shard_id": "sh5", "Shard_size": 4096}],
        "servers": {"Server6": ["sh5", "sh1"]},
    });
    let change = plan(Admin::Add, &db.spec, &body).expect("valid");
    assert_eq!(
        change.answer,
        json!({"N": 7, "message": "Add Server:6", "status": "successful"})
    );
    assert!(change.removed.is_empty());
    let spec = change.spec.expect("a change");
    let resolved = spec.resolve().expect("resolves");
    assert_eq!(resolved.shards.len(), 5);
    assert_eq!(resolved.placement.len(), 7);
    assert_eq!(
        resolved.placement["Server6"],
        ["sh5", "sh1"],
        "as the request listed them"
    );
    let before = db.spec.resolve().expect("resolves");
    for (server, held) in &before.placement {
        assert_eq!(
            &resolved.placement[server], held,
            "{server} keeps its shards"
        );
    }

    assert_eq!(spec.shards, db.spec.shards, "the user's form is kept");
    assert_eq!(spec.servers, db.spec.servers);
    assert_eq!(spec.replicas_per_shard, db.spec.replicas_per_shard);
    assert_eq!(
        spec.layout_source(),
        walshard_k8s_api::spec::LayoutSource::Router
    );

    let patch = layout_patch("studt", &spec, Some("41"));
    assert_eq!(
        patch["metadata"],
        json!({"name": "studt", "resourceVersion": "41"})
    );
    assert_eq!(patch["apiVersion"], "walshard.io/v1alpha1");
    assert_eq!(patch["kind"], "ShardedDatabase");
    let fields: Vec<&String> = patch["spec"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(fields, ["layout"], "nothing else of the spec is touched");
    let layout = &patch["spec"]["layout"];
    assert_eq!(
        layout["shards"][4],
        json!({"id": "sh5", "low": 16384, "size": 4096})
    );
    assert_eq!(
        layout["servers"][6],
        json!({"name": "Server6", "shards": ["sh5", "sh1"]})
    );
    assert_eq!(
        layout["basis"],
        json!(walshard_k8s_api::spec::layout::basis(&db.spec))
    );
    let params = layout_patch_params();
    assert_eq!(params.field_manager.as_deref(), Some(FIELD_MANAGER));
    assert!(params.force);
}

#[test]
fn a_second_change_builds_on_the_layout_and_keeps_the_basis() {
    let db = database();
    let body = json!({"n": 1, "servers": {"Server6": ["sh1"]}});
    let first = plan(Admin::Add, &db.spec, &body)
        .expect("valid")
        .spec
        .expect("a change");
    let second = plan(Admin::Rm, &first, &json!({"n": 1, "servers": ["Server6"]}))
        .expect("valid")
        .spec
        .expect("a change");
    let layout = second.layout.as_ref().expect("a layout");
    assert_eq!(layout.servers.len(), 6);
    assert_eq!(
        layout.basis.as_deref(),
        Some(walshard_k8s_api::spec::layout::basis(&db.spec).as_str())
    );
    assert_eq!(second.servers, db.spec.servers);

    // A user edit the layout overrides stays reported through later changes.
    let mut edited = first;
    edited.servers = walshard_k8s_api::spec::ServersSpec::count(8);
    let third = plan(
        Admin::Add,
        &edited,
        &json!({"n": 1, "servers": {"Server7": ["sh2"]}}),
    )
    .expect("valid")
    .spec
    .expect("a change");
    assert_eq!(
        third.layout_source(),
        walshard_k8s_api::spec::LayoutSource::Overriding
    );
}

#[test]
fn rm_becomes_a_layout_without_the_servers() {
    let db = database();
    let change = plan(
        Admin::Rm,
        &db.spec,
        &json!({"n": 2, "servers": ["Server1"]}),
    )
    .expect("valid");
    assert_eq!(
        change.answer,
        json!({"message": {"N": 4, "servers": ["Server1", "Server5"]}, "status": "successful"})
    );
    assert_eq!(change.removed, ["Server1", "Server5"]);
    let resolved = change.spec.expect("a change").resolve().expect("resolves");
    let servers: Vec<&str> = resolved.placement.keys().map(String::as_str).collect();
    assert_eq!(servers, ["Server0", "Server2", "Server3", "Server4"]);
}

#[test]
fn init_is_idempotent_and_refuses_another_layout() {
    let db = database();
    let same = db.spec.resolve().expect("resolves").init_body();
    let change = plan(Admin::Init, &db.spec, &same).expect("the same layout");
    assert_eq!(change.spec, None);
    assert_eq!(
        change.answer,
        json!({"message": "Configured Database", "status": "success"})
    );
    let mut other = same.clone();
    other["shards"][0]["Shard_size"] = json!(100);
    let err = plan(Admin::Init, &db.spec, &other).expect_err("another layout");
    assert_eq!(err.status, 409);
    assert!(err.message.contains("/add and /rm"), "{}", err.message);
}

#[test]
fn invalid_requests_get_the_seed_apis_errors() {
    let db = database();
    let cases = [
        (
            Admin::Add,
            json!({"n": 1, "servers": {"Server0": ["sh1"]}}),
            409,
        ),
        (
            Admin::Add,
            json!({"n": 2, "servers": {"Server7": ["sh1"]}}),
            400,
        ),
        (
            Admin::Add,
            json!({"n": 1, "servers": {"Server7": ["sh9"]}}),
            400,
        ),
        (Admin::Rm, json!({"n": 0}), 400),
        (Admin::Rm, json!({"n": 1, "servers": ["Server9"]}), 404),
        (Admin::Rm, json!({"n": 6}), 400),
        (Admin::Init, json!({"N": 1}), 400),
    ];
    for (request, body, status) in cases {
        let err = plan(request, &db.spec, &body).expect_err("invalid");
        assert_eq!(err.status, status, "{request:?} {body}: {}", err.message);
    }
}

#[test]
fn a_change_shows_once_observed_with_primaries_off_the_removed_servers() {
    let shards = |p: Option<&str>| {
        (1..=4)
            .map(|i| summary(&format!("sh{i}"), p, 1))
            .collect::<Vec<_>>()
    };
    let removed = ["Server5".to_owned()];
    assert!(!shows(&database(), 3, &removed), "no status");
    assert!(!shows(
        &with_status(database(), 2, shards(Some("Server0"))),
        3,
        &removed
    ));
    assert!(shows(
        &with_status(database(), 3, shards(Some("Server0"))),
        3,
        &removed
    ));
    assert!(!shows(
        &with_status(database(), 3, shards(None)),
        3,
        &removed
    ));
    assert!(!shows(
        &with_status(database(), 3, shards(Some("Server5"))),
        3,
        &removed
    ));
    let mut missing = shards(Some("Server0"));
    missing.pop();
    assert!(!shows(&with_status(database(), 3, missing), 3, &removed));
}

#[test]
fn views_are_numbered_on_change_and_older_generations_ignored() {
    let views = Views {
        latest: watch::Sender::new(None),
        views: watch::Sender::new(FleetView::default()),
    };
    let db = with_status(database(), 3, vec![summary("sh1", Some("Server0"), 1)]);
    views.accept(db.clone());
    assert_eq!(views.views.borrow().version, 1);
    views.accept(db.clone());
    assert_eq!(views.views.borrow().version, 1, "nothing changed");
    let moved = with_status(database(), 3, vec![summary("sh1", Some("Server1"), 2)]);
    views.accept(moved);
    assert_eq!(views.views.borrow().version, 2);
    assert_eq!(
        views.views.borrow().topology.primary("sh1"),
        Some("Server1")
    );
    let mut older = db;
    older.metadata.generation = Some(2);
    views.accept(older);
    assert_eq!(
        views.views.borrow().version,
        2,
        "an older generation is ignored"
    );
    assert_eq!(
        views.views.borrow().topology.primary("sh1"),
        Some("Server1")
    );
}

// Against a mocked API server (tower-test): each request the router sends, inspected.
type Handle = tower_test::mock::Handle<
    axum::http::Request<kube::client::Body>,
    axum::http::Response<kube::client::Body>,
>;

/// Awaits the next request, answers `answer` (200) and returns the request's parts and body.
async fn answer_next(handle: &mut Handle, answer: &Json) -> (axum::http::request::Parts, Json) {
    let (request, send) = handle.next_request().await.expect("a request");
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.expect("request body");
    let body = if bytes.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON request")
    };
    let response = axum::http::Response::builder()
        .status(200)
        .body(kube::client::Body::from(answer.to_string().into_bytes()))
        .expect("response");
    send.send_response(response);
    (parts, body)
}

#[tokio::test]
async fn add_server_side_applies_only_spec_layout_as_the_router() {
    let (service, mut handle) = tower_test::mock::pair();
    let client = Client::new(service, "db");
    let fleet = KubeFleet {
        api: Api::namespaced(client, "db"),
        name: "studt".to_owned(),
        settle: Duration::ZERO,
        views: Arc::new(Views {
            latest: watch::Sender::new(None),
            views: watch::Sender::new(FleetView::default()),
        }),
        admin: tokio::sync::Mutex::new(()),
    };
    let mut db = database();
    db.metadata.name = Some("studt".to_owned());
    db.metadata.resource_version = Some("41".to_owned());
    let object = serde_json::to_value(&db).expect("serializes");
    let body = json!({"n": 1, "new_shards": [{"Stud_id_low": 16384, "Shard_id": "sh5", "Shard_size": 4096}],
                      "servers": {"Server6": ["sh5", "sh1"]}});
    let api = tokio::spawn(async move {
        let (get, _) = answer_next(&mut handle, &object).await;
        assert_eq!(get.method, "GET");
        assert_eq!(
            get.uri.path(),
            "/apis/walshard.io/v1alpha1/namespaces/db/shardeddatabases/studt"
        );
        let mut applied = object.clone();
        let (patch, sent) = {
            // The answer is the object with the layout the router applies.
            let (request, send) = handle.next_request().await.expect("the patch");
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("body");
            let sent: Json = serde_json::from_slice(&bytes).expect("JSON patch");
            applied["spec"]["layout"] = sent["spec"]["layout"].clone();
            applied["metadata"]["generation"] = json!(4);
            let response = axum::http::Response::builder()
                .status(200)
                .body(kube::client::Body::from(applied.to_string().into_bytes()))
                .expect("response");
            send.send_response(response);
            (parts, sent)
        };
        (patch, sent, applied)
    });
    let answer = fleet.carry_out(Admin::Add, &body).await.expect("added");
    assert_eq!(
        answer,
        json!({"N": 7, "message": "Add Server:6", "status": "successful"})
    );
    let (patch, sent, applied) = api.await.expect("mock API");
    assert_eq!(patch.method, "PATCH");
    assert_eq!(
        patch.uri.path(),
        "/apis/walshard.io/v1alpha1/namespaces/db/shardeddatabases/studt"
    );
    let query = patch.uri.query().unwrap_or_default();
    assert!(query.contains("fieldManager=walshard-router"), "{query}");
    assert!(query.contains("force=true"), "{query}");
    assert_eq!(
        patch
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/apply-patch+yaml")
    );
    let top: Vec<&String> = sent
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(top, ["apiVersion", "kind", "metadata", "spec"], "{sent}");
    let spec: Vec<&String> = sent["spec"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(spec, ["layout"], "only the router's field: {sent}");
    assert_eq!(
        sent["metadata"],
        json!({"name": "studt", "resourceVersion": "41"})
    );
    assert_eq!(sent["spec"]["layout"]["servers"][6]["name"], "Server6");
    // The object the API server returns keeps the user's form and resolves through the layout.
    let after: ShardedDatabase = serde_json::from_value(applied).expect("parses");
    assert_eq!(after.spec.shards, db.spec.shards);
    assert_eq!(after.spec.servers, db.spec.servers);
    assert_eq!(after.spec.resolve().expect("resolves").placement.len(), 7);
}

#[test]
fn the_crd_carries_the_layout_field() {
    // The generated CRD (k8s-api's tests/crd.rs checks crds/ is exactly this).
    let crd = serde_json::to_value(<ShardedDatabase as kube::CustomResourceExt>::crd())
        .expect("serializes");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let layout = &spec["properties"]["layout"];
    assert_eq!(layout["type"], "object", "{layout}");
    assert_eq!(
        layout["properties"]["servers"]["x-kubernetes-list-map-keys"],
        json!(["name"])
    );
    assert_eq!(
        layout["properties"]["shards"]["x-kubernetes-list-map-keys"],
        json!(["id"])
    );
}
