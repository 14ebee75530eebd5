//! `k8s::control::HostedPlanes` end to end, short of a cluster: simulated agents behind real
//! HTTP (docs/replication.md's endpoints plus `/config`) and a fake Kubernetes API on loopback
//! that records the status and annotation patches. First start (agents configured, primaries
//! elected, status and record written), removing a server that holds a primary (handed over,
//! then drained), two databases in one metrics registry, and removal.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::patch;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use walshard_control_plane::sim::SimCluster;
use walshard_k8s_api::spec::ShardedDatabase;
use walshard_operator::k8s::hosting::{
    FIELD_MANAGER, HostedPlanes, HostedPlanesConfig, HostingError, SETTLED_ANNOTATION,
};
use walshard_operator::k8s::reconcile::AgentAccess;

use walshard_control_plane::sim::http::{Agent, TOKEN, serve, serve_agent};

// ---------------------------------------------------------------------------------------------
// A fake Kubernetes API: the ShardedDatabase objects, their patches recorded
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    query: String,
    content_type: String,
    body: Value,
}

#[derive(Clone, Default)]
struct FakeApi {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    patches: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeApi {
    fn patches(&self) -> Vec<Recorded> {
        self.patches.lock().unwrap().clone()
    }

    fn last(&self, name: &str, suffix: &str) -> Option<Recorded> {
        self.patches().into_iter().rev().find(|p| {
            p.path
                .ends_with(&format!("/shardeddatabases/{name}{suffix}"))
        })
    }
}

async fn apply(
    api: FakeApi,
    name: String,
    status: bool,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = format!(
        "/apis/walshard.io/v1alpha1/namespaces/ns/shardeddatabases/{name}{}",
        if status { "/status" } else { "" }
    );
    api.patches.lock().unwrap().push(Recorded {
        path,
        query: query.unwrap_or_default(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body.clone(),
    });
    let mut objects = api.objects.lock().unwrap();
    let Some(object) = objects.get_mut(&name) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"kind": "Status", "code": 404})),
        );
    };
    if status {
        object["status"] = body["status"].clone();
    } else if let Some(a) = body["metadata"]["annotations"].as_object() {
        for (k, v) in a {
            object["metadata"]["annotations"][k] = v.clone();
        }
    }
    (StatusCode::OK, Json(object.clone()))
}

async fn serve_api(api: FakeApi) -> String {
    let app = Router::new()
        .route(
            "/apis/walshard.io/v1alpha1/namespaces/ns/shardeddatabases/{name}",
            patch(
                |State(api): State<FakeApi>,
                 Path(name): Path<String>,
                 RawQuery(q): RawQuery,
                 headers: HeaderMap,
                 body: Bytes| apply(api, name, false, q, headers, body),
            ),
        )
        .route(
            "/apis/walshard.io/v1alpha1/namespaces/ns/shardeddatabases/{name}/status",
            patch(
                |State(api): State<FakeApi>,
                 Path(name): Path<String>,
                 RawQuery(q): RawQuery,
                 headers: HeaderMap,
                 body: Bytes| apply(api, name, true, q, headers, body),
            ),
        )
        .with_state(api);
    serve(app).await.expect("serves the fake API")
}

fn client(url: &str) -> kube::Client {
    let mut config = kube::Config::new(url.parse().unwrap());
    config.default_namespace = "ns".to_owned();
    kube::Client::try_from(config).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------------

fn database(name: &str, placement: &[(&str, &[&str])]) -> ShardedDatabase {
    let list: Vec<String> = placement
        .iter()
        .map(|(server, shards)| format!("{{name: {server}, shards: [{}]}}", shards.join(", ")))
        .collect();
    let mut db = ShardedDatabase::from_yaml(&format!(
        "apiVersion: walshard.io/v1alpha1\nkind: ShardedDatabase\nmetadata: {{name: {name}}}\nspec:\n  \
         schema: {{columns: [Stud_id, Stud_name], dtypes: [Number, String]}}\n  \
         shards: {{list: [{{id: sh1, low: 0, size: 100}}, {{id: sh2, low: 100, size: 100}}]}}\n  \
         servers: {{placement: [{}]}}\n",
        list.join(", ")
    ))
    .unwrap();
    db.metadata.namespace = Some("ns".to_owned());
    db
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_planes_elect_publish_hand_over_and_drain() {
    let sim = Arc::new(Mutex::new(SimCluster::default()));
    let mut urls = BTreeMap::new();
    for name in ["S0", "S1", "S2", "S3"] {
        let url = serve_agent(Agent {
            name: name.into(),
            sim: Arc::clone(&sim),
        })
        .await
        .expect("serves a simulated agent");
        urls.insert(name.to_owned(), url);
    }
    let fake = FakeApi::default();
    let api_url = serve_api(fake.clone()).await;

    let all: &[&str] = &["sh1", "sh2"];
    let db = database("db", &[("S0", all), ("S1", all), ("S2", all)]);
    fake.objects
        .lock()
        .unwrap()
        .insert("db".into(), serde_json::to_value(&db).unwrap());
    let other = database("other", &[("S0", all)]);
    fake.objects
        .lock()
        .unwrap()
        .insert("other".into(), serde_json::to_value(&other).unwrap());

    let agent_urls = urls.clone();
    let cfg = HostedPlanesConfig {
        tick: Duration::from_millis(50),
        status_every: Duration::from_millis(100),
        retry: Duration::from_millis(100),
        agent_url: Arc::new(move |db, _ns, server| match db {
            "db" => agent_urls.get(server).cloned().unwrap_or_default(),
            // Nothing listens there: the other database only shows up in the metrics.
            _ => "http://127.0.0.1:9".to_owned(),
        }),
        ..HostedPlanesConfig::default()
    };
    let restart_cfg = cfg.clone();
    let mut registry = Registry::default();
    let planes =
        HostedPlanes::with_config(client(&api_url), &mut registry, cfg).expect("HTTP client");

    // First start: agents configured, one primary per shard, status and record published.
    planes
        .ensure(&db, &AgentAccess::token(TOKEN))
        .await
        .unwrap();
    planes
        .ensure(&db, &AgentAccess::token(TOKEN))
        .await
        .unwrap();
    planes
        .ensure(&other, &AgentAccess::token(TOKEN))
        .await
        .unwrap();
    wait_for("primaries", Duration::from_secs(20), || {
        planes
            .topology("ns", "db")
            .is_some_and(|t| t.primary("sh1").is_some() && t.primary("sh2").is_some())
    })
    .await;
    wait_for("the status", Duration::from_secs(10), || {
        fake.last("db", "/status")
            .is_some_and(|p| p.body["status"]["primaries"] == "2/2")
    })
    .await;
    let status = fake.last("db", "/status").unwrap();
    assert_eq!(status.content_type, "application/apply-patch+yaml");
    assert!(
        status
            .query
            .contains(&format!("fieldManager={FIELD_MANAGER}"))
            && status.query.contains("force=true"),
        "{}",
        status.query
    );
    assert_eq!(status.body["status"]["shardCount"], 2);
    assert_eq!(status.body["status"]["shards"][0]["id"], "sh1");
    assert_eq!(status.body["status"]["shards"][0]["readyReplicas"], 3);
    let record = fake.last("db", "").expect("the settled record");
    assert_eq!(
        record.body["metadata"]["annotations"][SETTLED_ANNOTATION],
        r#"{"sh1":["S0","S1","S2"],"sh2":["S0","S1","S2"]}"#
    );
    let text = {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    };
    assert!(
        text.contains("walshard_operator_shard_has_primary{database=\"ns/db\",shard=\"sh1\"} 1"),
        "{text}"
    );
    assert!(text.contains("walshard_operator_server_up{database=\"ns/other\",server=\"S0\"} 0"));
    assert_eq!(
        text.matches("# HELP walshard_operator_shard_epoch ")
            .count(),
        1,
        "one family for every database"
    );
    assert!(text.contains("walshard_operator_control_planes 2"));

    // Remove a primary's server; S3 takes its replicas.
    let leaving = planes
        .topology("ns", "db")
        .and_then(|t| t.primary("sh1").map(str::to_owned))
        .unwrap();
    let committed = {
        let mut sim = sim.lock().unwrap();
        assert_eq!(sim.write("sh1", &leaving, None), Some(true));
        sim.committed("sh1")
    };
    let staying: Vec<(&str, &[&str])> = ["S0", "S1", "S2", "S3"]
        .into_iter()
        .filter(|s| *s != leaving)
        .map(|s| (s, all))
        .collect();
    let smaller = database("db", &staying);
    let err = planes.drain("ns", "db", &leaving).await.unwrap_err();
    assert!(matches!(err, HostingError::NotRemoved { .. }), "{err}");
    planes
        .ensure(&smaller, &AgentAccess::token(TOKEN))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !planes.drain("ns", "db", &leaving).await.unwrap() {
        assert!(Instant::now() < deadline, "{leaving} not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = planes.topology("ns", "db").unwrap();
    for shard in ["sh1", "sh2"] {
        let info = &t.shards[shard];
        let mut set: Vec<&str> = info.replicas.iter().map(|r| r.server.as_str()).collect();
        set.sort_unstable();
        let mut want: Vec<&str> = staying.iter().map(|(s, _)| *s).collect();
        want.sort_unstable();
        assert_eq!(set, want, "{shard}");
        assert!(!info.reconfiguring);
        assert_ne!(info.primary.as_deref(), Some(leaving.as_str()));
    }
    {
        let sim = sim.lock().unwrap();
        assert!(sim.violations().is_empty(), "{:?}", sim.violations());
        assert!(
            sim.calls()
                .iter()
                .any(|c| c.starts_with(&format!("step-down {leaving} sh1"))),
            "a planned switchover: {:?}",
            sim.calls()
        );
        let now = sim.committed("sh1");
        assert!(
            committed.iter().all(|e| now.contains(e)),
            "nothing committed is lost: {committed:?} vs {now:?}"
        );
    }
    let record = fake.last("db", "").unwrap();
    let text = record.body["metadata"]["annotations"][SETTLED_ANNOTATION]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!text.contains(&leaving), "{text}");
    assert!(text.contains("S3"), "{text}");
    wait_for(
        "the status after the change",
        Duration::from_secs(10),
        || {
            fake.last("db", "/status").is_some_and(|p| {
                p.body["status"]["primaries"] == "2/2"
                    && p.body["status"]["shards"][0]["readyReplicas"] == 3
            })
        },
    )
    .await;

    // Removal stops the control plane and drops its series.
    planes.remove("ns", "other").await;
    assert!(planes.topology("ns", "other").is_none());
    assert!(matches!(
        planes.drain("ns", "other", "S0").await,
        Err(HostingError::NotRunning { .. })
    ));
    let text = {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    };
    assert!(!text.contains("ns/other"), "{text}");
    assert!(text.contains("walshard_operator_control_planes 1"));
    let before = planes.topology("ns", "db").unwrap();
    planes.shutdown().await;
    assert!(planes.topology("ns", "db").is_none());

    // A restarted operator starts from the object's record and adopts the primaries it finds.
    let stored: ShardedDatabase = {
        let mut objects = fake.objects.lock().unwrap();
        let object = objects.get_mut("db").unwrap();
        object["spec"] = serde_json::to_value(&smaller.spec).unwrap();
        serde_json::from_value(object.clone()).unwrap()
    };
    assert!(
        stored
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(SETTLED_ANNOTATION))
    );
    let mut registry = Registry::default();
    let again = HostedPlanes::with_config(client(&api_url), &mut registry, restart_cfg)
        .expect("HTTP client");
    again
        .ensure(&stored, &AgentAccess::token(TOKEN))
        .await
        .unwrap();
    wait_for("adopted primaries", Duration::from_secs(20), || {
        again.topology("ns", "db").is_some_and(|t| {
            ["sh1", "sh2"]
                .iter()
                .all(|s| t.primary(s).is_some() && t.primary(s) == before.primary(s))
        })
    })
    .await;
    // A few more ticks: still no election.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = again.topology("ns", "db").unwrap();
    for shard in ["sh1", "sh2"] {
        assert_eq!(
            t.epoch(shard),
            before.epoch(shard),
            "no new election of {shard}"
        );
        assert!(!t.shards[shard].reconfiguring);
    }
    again.shutdown().await;
}

/// With `spec.tls` the control plane reaches its agents over HTTPS, trusting only the
/// database's authority: agents that serve only HTTPS are configured and elect primaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_database_is_run_over_https_under_its_authority() {
    use walshard_contract::http_client::TrustedCa;
    use walshard_contract::tls::ServedCertificate;
    use walshard_contract::tls::authority::Authority;

    let ca = Authority::generate("db CA").unwrap();
    let served = ca.issue("agents", &["127.0.0.1".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &served.cert).unwrap();
    std::fs::write(&key, &served.key).unwrap();
    let certificate = ServedCertificate::load(&cert, &key).await.unwrap();

    let sim = Arc::new(Mutex::new(SimCluster::default()));
    let mut urls = BTreeMap::new();
    for name in ["S0", "S1", "S2"] {
        let app = walshard_control_plane::sim::http::agent_router(Agent {
            name: name.into(),
            sim: Arc::clone(&sim),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = Some(certificate.clone());
        tokio::spawn(walshard_contract::tls::serve(
            listener,
            app,
            tls,
            std::future::pending(),
        ));
        // The plain URL the configuration gives; the control plane turns it into https://.
        urls.insert(name.to_owned(), format!("http://127.0.0.1:{port}"));
    }
    let fake = FakeApi::default();
    let api_url = serve_api(fake.clone()).await;
    let all: &[&str] = &["sh1", "sh2"];
    let mut db = database("db", &[("S0", all), ("S1", all), ("S2", all)]);
    db.spec.tls = Some(walshard_k8s_api::spec::TlsSpec::default());
    fake.objects
        .lock()
        .unwrap()
        .insert("db".into(), serde_json::to_value(&db).unwrap());
    let cfg = HostedPlanesConfig {
        tick: Duration::from_millis(50),
        status_every: Duration::from_millis(100),
        retry: Duration::from_millis(100),
        agent_url: Arc::new(move |_db, _ns, server| urls.get(server).cloned().unwrap_or_default()),
        ..HostedPlanesConfig::default()
    };
    let planes =
        HostedPlanes::with_config(client(&api_url), &mut Registry::default(), cfg).unwrap();
    let access = AgentAccess {
        token: TOKEN.to_owned(),
        trust: Some(TrustedCa::from_pem(ca.pem().cert.as_bytes()).unwrap()),
    };
    planes.ensure(&db, &access).await.unwrap();
    wait_for("primaries over HTTPS", Duration::from_secs(20), || {
        planes
            .topology("ns", "db")
            .is_some_and(|t| t.primary("sh1").is_some() && t.primary("sh2").is_some())
    })
    .await;
    planes.shutdown().await;
}
