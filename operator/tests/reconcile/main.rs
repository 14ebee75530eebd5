//! The reconciler against a mocked API server (kube-rs' tower-test pattern): each test is a
//! scenario of the exact requests one reconciliation must send, each asserted and answered in
//! turn, with a test double of the control planes ([`fleet::FakeFleet`]). No cluster, no sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

mod api;
mod backup;
mod day2;
mod fleet;
mod handover;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value as Json, json};
use walshard_contract::Schema;
use walshard_contract::Topology;
use walshard_contract::{Phase, ShardInfo};
use walshard_k8s_api::spec::{
    Retention, SecretKeyRef, ServersSpec, ShardedDatabase, ShardedDatabaseSpec,
    ShardedDatabaseStatus, ShardsSpec,
};
use walshard_operator::k8s::objects::{self, Desired, GeneratedSecrets, Images};
use walshard_operator::k8s::reconcile::DatabaseLabels;
use walshard_operator::k8s::reconcile::{
    self, Context, FINALIZER, ReconcileError, ReconcileMetrics, backoff, reconcile,
};

use api::{ApiServer, applies, list, mocked, status};
use fleet::{Call, FakeFleet};

const NS: &str = "shop";
const NAME: &str = "studt";
const UID: &str = "6f1c2a9e-0000-4000-8000-000000000001";
const TOKEN: &str = "existingClusterToken000000000000";
const DB_PATH: &str = "/apis/walshard.io/v1alpha1/namespaces/shop/shardeddatabases/studt";

fn images() -> Images {
    Images {
        agent: "walshard/agent:test".to_owned(),
        router: "walshard/router:test".to_owned(),
        pull_policy: None,
    }
}

/// `servers` servers, `shards` shards of 4096 keys, 3 replicas each.
fn spec(servers: i32, shards: i32) -> ShardedDatabaseSpec {
    ShardedDatabaseSpec::new(
        Schema::seed_default(),
        ShardsSpec::ranges(shards, 4096, 0),
        3,
        ServersSpec::count(servers),
    )
}

/// The database as the API server has it after the finalizer was added.
fn database(spec: ShardedDatabaseSpec) -> ShardedDatabase {
    let mut db = ShardedDatabase::new(NAME, spec);
    db.metadata.namespace = Some(NS.to_owned());
    db.metadata.uid = Some(UID.to_owned());
    db.metadata.generation = Some(1);
    db.metadata.resource_version = Some("100".to_owned());
    db.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    db
}

fn desired(db: &ShardedDatabase) -> Desired {
    let any = GeneratedSecrets {
        cluster_token: "unused".to_owned(),
        mysql_password: "unused".to_owned(),
        router_admin_token: "unused".to_owned(),
        tls: None,
    };
    objects::desired(db, &images(), &any).expect("desired objects")
}

struct Harness {
    api: ApiServer,
    fleet: FakeFleet,
    ctx: Arc<Context<FakeFleet>>,
}

fn harness() -> Harness {
    let (client, api) = mocked(NS);
    let fleet = FakeFleet::default();
    let ctx = Context::new(
        client,
        fleet.clone(),
        images(),
        Some("walshard-operator-0".to_owned()),
        ReconcileMetrics::unregistered(),
    );
    Harness {
        api,
        fleet,
        ctx: Arc::new(ctx),
    }
}

/// Runs one reconciliation of `db` against `scenario`, which must answer every request. Fails
/// on a request the scenario did not expect, and on one it expects that never comes.
async fn reconciled(
    ctx: &Arc<Context<FakeFleet>>,
    db: &ShardedDatabase,
    api: &mut ApiServer,
    scenario: impl AsyncFnOnce(&mut ApiServer),
) -> Result<Action, ReconcileError> {
    let mut reconciling = std::pin::pin!(reconcile(Arc::new(db.clone()), ctx.clone()));
    let mut result = None;
    {
        let mut scenario = std::pin::pin!(tokio::time::timeout(LIMIT, scenario(api)));
        loop {
            tokio::select! {
                r = &mut reconciling, if result.is_none() => result = Some(r),
                done = &mut scenario => {
                    done.expect("the scenario waits for a request the reconciler never sent");
                    break;
                }
            }
        }
    }
    match result {
        Some(result) => result,
        None => tokio::select! {
            result = &mut reconciling => result,
            () = tokio::time::sleep(GRACE) => {
                api.assert_idle();
                panic!("the reconciliation did not finish after its scenario");
            }
        },
    }
}

/// Longest a scenario may take.
const LIMIT: Duration = Duration::from_secs(10);
/// Longest the reconciliation may go on after its scenario ended (it waits on a request then).
const GRACE: Duration = Duration::from_secs(1);

// --- canned answers --------------------------------------------------------------------------

fn secret_json(token: &str) -> Json {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{NAME}-credentials")),
            namespace: Some(NS.to_owned()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            (
                objects::SECRET_TOKEN_KEY.to_owned(),
                ByteString(token.as_bytes().to_vec()),
            ),
            (
                objects::SECRET_MYSQL_PASSWORD_KEY.to_owned(),
                ByteString(b"pw".to_vec()),
            ),
            (
                objects::SECRET_ROUTER_ADMIN_TOKEN_KEY.to_owned(),
                ByteString(b"admin".to_vec()),
            ),
        ])),
        ..Default::default()
    };
    serde_json::to_value(secret).expect("serializes")
}

/// A StatefulSet or Deployment as the API server returns it: generation 1, a uid, and a
/// status that is rolled out, and ready or not.
fn with_status(mut object: Json, ready: bool) -> Json {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    object["metadata"]["generation"] = json!(1);
    object["metadata"]["uid"] = json!(format!("uid-{name}"));
    let ready_count = i64::from(ready);
    object["status"] = match object["kind"].as_str() {
        Some("StatefulSet") => json!({
            "observedGeneration": 1, "replicas": 1, "readyReplicas": ready_count,
            "updatedReplicas": 1, "currentReplicas": 1,
            "currentRevision": "r1", "updateRevision": "r1"
        }),
        Some("Deployment") => json!({
            "observedGeneration": 1, "replicas": 2, "readyReplicas": 2 * ready_count,
            "updatedReplicas": 2
        }),
        _ => return object,
    };
    object
}

fn healthy_topology(primaries: &[(&str, Option<&str>, Phase)]) -> Topology {
    Topology {
        shards: primaries
            .iter()
            .map(|(id, primary, state)| {
                let info = ShardInfo {
                    shard: (*id).to_owned(),
                    state: *state,
                    reason: None,
                    primary: primary.map(str::to_owned),
                    epoch: 1,
                    quorum_reachable: true,
                    replicas: Vec::new(),
                    reconfiguring: false,
                };
                ((*id).to_owned(), info)
            })
            .collect(),
        servers: BTreeMap::new(),
        archive: BTreeMap::new(),
    }
}

// --- scenario steps ----------------------------------------------------------------------------

/// The generated Secret exists with `TOKEN`.
async fn secret_exists(api: &mut ApiServer) {
    let path = api.path_of::<Secret>(&format!("{NAME}-credentials"));
    api.expect("GET", &path)
        .await
        .reply(200, secret_json(TOKEN));
}

/// The StatefulSets listed by the managed-by selector are `existing`.
async fn list_sets(api: &mut ApiServer, existing: Vec<Json>) {
    let path = api.collection::<StatefulSet>();
    let e = api.expect("GET", &path).await;
    assert_eq!(
        e.query.get("labelSelector").map(String::as_str),
        Some(objects::managed_selector(NAME).as_str())
    );
    e.reply(200, list("StatefulSet", "apps/v1", existing));
}

/// Every desired object is applied exactly as `objects::desired` builds it; StatefulSets
/// answer ready when `ready(name)`. Returns the applied paths.
async fn apply_everything(
    api: &mut ApiServer,
    d: &Desired,
    ready: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut paths = Vec::new();
    for (path, body) in applies(api, d) {
        let e = api.expect_apply(&path).await;
        assert_eq!(
            e.body, body,
            "{path}: the applied object is the desired one"
        );
        let name = body["metadata"]["name"].as_str().unwrap_or_default();
        let answer = with_status(body.clone(), ready(name));
        e.reply(200, answer);
        paths.push(path);
    }
    paths
}

/// The status apply of `db`: returns the owned fields it wrote.
async fn expect_status(api: &mut ApiServer, db: &ShardedDatabase) -> Json {
    let e = api.expect_apply(&format!("{DB_PATH}/status")).await;
    assert_eq!(e.body["apiVersion"], "walshard.io/v1alpha1");
    assert_eq!(e.body["kind"], "ShardedDatabase");
    let written = e.body["status"].clone();
    let mut answer = serde_json::to_value(db).expect("serializes");
    answer["status"] = written.clone();
    e.reply(200, answer);
    written
}

fn condition(status: &Json, type_: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("condition {type_} in {status}"));
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_owned(), reason.to_owned())
}

/// `db` with the status a previous reconciliation wrote (as the watch would deliver it).
fn after(db: &ShardedDatabase, written: &Json) -> ShardedDatabase {
    let mut db = db.clone();
    db.status =
        Some(serde_json::from_value::<ShardedDatabaseStatus>(written.clone()).expect("a status"));
    db
}

fn existing_sets(d: &Desired, ready: bool) -> Vec<Json> {
    d.stateful_sets
        .iter()
        .map(|s| with_status(serde_json::to_value(s).expect("serializes"), ready))
        .collect()
}

fn ready_gauge(ctx: &Context<FakeFleet>) -> i64 {
    let labels = DatabaseLabels {
        namespace: NS.to_owned(),
        name: NAME.to_owned(),
    };
    ctx.metrics().ready.get_or_create(&labels).get()
}

// --- scenarios ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_database_gets_the_finalizer_before_anything_else() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let mut db = database(spec(3, 2));
    db.metadata.finalizers = None;
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        let e = api.expect("PATCH", DB_PATH).await;
        assert_eq!(
            e.content_type.as_deref(),
            Some("application/json-patch+json")
        );
        assert_eq!(
            e.body,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
            ])
        );
        e.reply(
            200,
            serde_json::to_value(database(spec(3, 2))).expect("serializes"),
        );
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::await_change());
    assert!(
        fleet.calls().is_empty(),
        "nothing started before the finalizer"
    );
    api.assert_idle();
}

#[tokio::test]
async fn create_generates_the_secret_applies_every_object_starts_the_control_plane_and_writes_status()
 {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let db = database(spec(3, 2));
    let d = desired(&db);
    let mut token = String::new();
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        let secret_path = api.path_of::<Secret>(&format!("{NAME}-credentials"));
        api.expect("GET", &secret_path).await.not_found();
        let e = api.expect("POST", &api.collection::<Secret>()).await;
        assert_eq!(
            e.query.get("fieldManager").map(String::as_str),
            Some("walshard-operator")
        );
        let data = e.body["data"].clone();
        e.echo();
        for key in [
            objects::SECRET_TOKEN_KEY,
            objects::SECRET_MYSQL_PASSWORD_KEY,
        ] {
            let value = data[key].as_str().unwrap_or_default();
            let bytes = decode_base64(value);
            assert_eq!(bytes.len(), 32, "{key}: 32 generated characters");
            assert!(
                bytes.iter().all(u8::is_ascii_alphanumeric),
                "{key}: [A-Za-z0-9]"
            );
            if key == objects::SECRET_TOKEN_KEY {
                token = String::from_utf8(bytes).expect("ascii");
            }
        }
        let (type_, reason, action, _) = api.expect_event().await;
        assert_eq!(
            (type_.as_str(), reason.as_str(), action.as_str()),
            ("Normal", "Created", "CreateCredentials")
        );

        list_sets(api, Vec::new()).await;
        let paths = apply_everything(api, &d, |_| false).await;
        assert!(
            paths
                .iter()
                .any(|p| p.ends_with("/statefulsets/studt-server2"))
        );
        assert!(
            paths
                .iter()
                .any(|p| p.ends_with("/deployments/studt-router"))
        );

        let (_, reason, _, note) = api.expect_event().await;
        assert_eq!(reason, "Created");
        assert_eq!(
            note,
            "created the StatefulSets of servers Server0, Server1, Server2"
        );

        let written = expect_status(api, &db).await;
        assert_eq!(written["observedGeneration"], 1);
        assert_eq!(written["servers"], 3);
        assert_eq!(written["serversReady"], 0);
        assert_eq!(written["routerReady"], 0);
        assert_eq!(
            condition(&written, "Ready"),
            pair("False", "ServersNotReady")
        );
        assert_eq!(
            condition(&written, "Progressing"),
            pair("True", "RollingOut")
        );
        assert_eq!(condition(&written, "Degraded"), pair("False", "AsExpected"));
        for field in ["shards", "shardCount", "primaries"] {
            assert!(
                written.get(field).is_none(),
                "{field} is the control plane's"
            );
        }
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    assert_eq!(
        fleet.calls(),
        [Call::Ensure {
            name: NAME.to_owned(),
            token,
            servers: vec!["Server0".into(), "Server1".into(), "Server2".into()],
            shards: 2,
        }]
    );
    assert_eq!(ready_gauge(&ctx), 0);
    api.assert_idle();
}

#[tokio::test]
async fn an_existing_secret_is_never_written_and_a_ready_fleet_is_ready() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let db = database(spec(3, 2));
    let d = desired(&db);
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server0"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        let paths = apply_everything(api, &d, |_| true).await;
        assert!(
            !paths.iter().any(|p| p.contains("/secrets/")),
            "the Secret is never applied"
        );
        let written = expect_status(api, &db).await;
        assert_eq!(condition(&written, "Ready"), pair("True", "AllReady"));
        assert_eq!(
            condition(&written, "Progressing"),
            pair("False", "Reconciled")
        );
        assert_eq!(written["serversReady"], 3);
        assert_eq!(written["routerReady"], 2);
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(120)));
    assert!(matches!(&fleet.calls()[..], [Call::Ensure { token, .. }] if token == TOKEN));
    assert_eq!(ready_gauge(&ctx), 1);
    api.assert_idle();
}

#[tokio::test]
async fn scale_up_applies_the_added_servers_statefulset_and_reconfigures_for_the_added_shard() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let before = database(spec(3, 2));
    let mut db = database(spec(4, 3));
    db.metadata.generation = Some(2);
    let d = desired(&db);
    assert_eq!(d.stateful_sets.len(), 4);
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&desired(&before), true)).await;
        let paths = apply_everything(api, &d, |name| name != "studt-server3").await;
        assert!(
            paths
                .iter()
                .any(|p| p.ends_with("/statefulsets/studt-server3"))
        );
        let (_, reason, action, note) = api.expect_event().await;
        assert_eq!(
            (reason.as_str(), action.as_str()),
            ("Created", "CreateServers")
        );
        assert_eq!(note, "created the StatefulSets of servers Server3");
        let written = expect_status(api, &db).await;
        assert_eq!(written["observedGeneration"], 2);
        assert_eq!(written["servers"], 4);
        assert_eq!(written["serversReady"], 3);
        assert_eq!(
            condition(&written, "Progressing"),
            pair("True", "RollingOut")
        );
    })
    .await
    .expect("reconciles");
    assert!(matches!(
        &fleet.calls()[..],
        [Call::Ensure { servers, shards: 3, .. }] if servers.len() == 4
    ));
    api.assert_idle();
}

/// A 4-server database scaled to 3: `Server3`'s StatefulSet is the orphan.
fn removal_setup(when_removed: Retention) -> (ShardedDatabase, Desired, Vec<Json>) {
    let mut four = spec(4, 2);
    four.storage.retention.when_removed = when_removed;
    let before = database(four);
    let mut three = spec(3, 2);
    three.storage.retention.when_removed = when_removed;
    let mut db = database(three);
    db.metadata.generation = Some(2);
    let d = desired(&db);
    (db, d, existing_sets(&desired(&before), true))
}

#[tokio::test]
async fn a_removed_server_is_drained_before_its_statefulset_is_deleted_and_its_claim_kept() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let (db, d, existing) = removal_setup(Retention::Retain);
    fleet.answer_drains([Ok(false)]);
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server0"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));

    // Round 1: the drain is under way: nothing is deleted.
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing.clone()).await;
        apply_everything(api, &d, |_| true).await;
        let (_, reason, action, note) = api.expect_event().await;
        assert_eq!(
            (reason.as_str(), action.as_str()),
            ("Draining", "DrainServer")
        );
        assert!(note.starts_with("draining server Server3"), "{note}");
        let written = expect_status(api, &db).await;
        assert_eq!(condition(&written, "Progressing"), pair("True", "Draining"));
        assert_eq!(written["servers"], 3);
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));

    // Round 2: drained: the StatefulSet goes (pod by garbage collection), the claim stays.
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing.clone()).await;
        apply_everything(api, &d, |_| true).await;
        let claim = objects::data_claim(NAME, "Server3");
        let claim_path = api.path_of::<PersistentVolumeClaim>(&claim);
        api.expect("GET", &claim_path).await.reply(
            200,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": claim, "namespace": NS}}),
        );
        let set_path = api.path_of::<StatefulSet>("studt-server3");
        let e = api.expect("DELETE", &set_path).await;
        assert_eq!(
            e.body,
            json!({"propagationPolicy": "Background", "preconditions": {"uid": "uid-studt-server3"}})
        );
        e.reply(200, status(200, ""));
        let (_, reason, _, note) = api.expect_event().await;
        assert_eq!(reason, "Removed");
        assert!(note.contains("is kept"), "{note}");
        let written = expect_status(api, &db).await;
        assert_eq!(condition(&written, "Progressing"), pair("False", "Reconciled"));
    })
    .await
    .expect("reconciles");
    let drains: Vec<Call> = fleet
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Drain { .. }))
        .collect();
    let drain = Call::Drain {
        name: NAME.to_owned(),
        server: "Server3".to_owned(),
    };
    assert_eq!(drains, [drain.clone(), drain]);
    api.assert_idle();
}

#[tokio::test]
async fn a_removed_servers_claim_is_deleted_when_retention_says_so() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let (db, d, existing) = removal_setup(Retention::Delete);
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing).await;
        apply_everything(api, &d, |_| true).await;
        let set_path = api.path_of::<StatefulSet>("studt-server3");
        api.expect("DELETE", &set_path)
            .await
            .reply(200, status(200, ""));
        let claim_path =
            api.path_of::<PersistentVolumeClaim>(&objects::data_claim(NAME, "Server3"));
        // Already gone is fine.
        api.expect("DELETE", &claim_path).await.not_found();
        let (_, reason, _, note) = api.expect_event().await;
        assert_eq!(reason, "Removed");
        assert!(note.contains("is deleted"), "{note}");
        expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert!(fleet.calls().contains(&Call::Drain {
        name: NAME.to_owned(),
        server: "Server3".to_owned()
    }));
    api.assert_idle();
}

#[tokio::test]
async fn a_claim_its_statefulset_owns_is_released_before_the_statefulset_goes() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let (mut db, _, _) = removal_setup(Retention::Retain);
    // whenDeleted: Delete: the StatefulSet controller made the set an owner of the claim.
    db.spec.storage.retention.when_deleted = Retention::Delete;
    let d = desired(&db);
    let mut before = spec(4, 2);
    before.storage.retention.when_deleted = Retention::Delete;
    let mut existing = existing_sets(&desired(&database(before)), true);
    let set_path = api.path_of::<StatefulSet>("studt-server3");
    let claim = objects::data_claim(NAME, "Server3");
    let claim_path = api.path_of::<PersistentVolumeClaim>(&claim);
    let claim_json = |owned: bool| {
        let owners = if owned {
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "studt-server3",
                    "uid": "uid-studt-server3"}])
        } else {
            json!([])
        };
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": claim, "namespace": NS, "ownerReferences": owners}})
    };

    // Round 1: drained, but deleting the set now would take the claim: switch it to Retain.
    let mut written = Json::Null;
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing.clone()).await;
        apply_everything(api, &d, |_| true).await;
        let e = api.expect("PATCH", &set_path).await;
        assert_eq!(
            e.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert_eq!(
            e.body,
            json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain"}}})
        );
        let orphan = existing[3].clone();
        e.reply(200, orphan);
        written = expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    assert_eq!(condition(&written, "Progressing"), pair("True", "Draining"));
    db = after(&db, &written);

    // Round 2: the set shows Retain, but the claim still names it as owner: wait.
    existing[3]["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] = json!("Retain");
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing.clone()).await;
        apply_everything(api, &d, |_| true).await;
        api.expect("GET", &claim_path)
            .await
            .reply(200, claim_json(true));
    })
    .await
    .expect("reconciles");

    // Round 3: the claim is free: the set goes, the claim stays.
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing.clone()).await;
        apply_everything(api, &d, |_| true).await;
        api.expect("GET", &claim_path)
            .await
            .reply(200, claim_json(false));
        api.expect("DELETE", &set_path)
            .await
            .reply(200, status(200, ""));
        let (_, reason, _, _) = api.expect_event().await;
        assert_eq!(reason, "Removed");
        expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert_eq!(
        fleet
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Drain { .. }))
            .count(),
        3
    );
    api.assert_idle();
}

#[tokio::test]
async fn a_failing_drain_degrades_and_deletes_nothing() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let (db, d, existing) = removal_setup(Retention::Retain);
    fleet.answer_drains([Err("shard sh2 is busy reconfiguring".to_owned())]);
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing).await;
        apply_everything(api, &d, |_| true).await;
        let written = expect_status(api, &db).await;
        assert_eq!(condition(&written, "Degraded"), pair("True", "DrainFailed"));
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    api.assert_idle();
}

#[tokio::test]
async fn a_failover_in_the_control_planes_topology_shows_in_the_status() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let mut db = database(spec(3, 2));
    let d = desired(&db);
    // 1: sh1 led by Server0: Ready.
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server0"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    let mut written = Json::Null;
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        apply_everything(api, &d, |_| true).await;
        written = expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert_eq!(condition(&written, "Ready"), pair("True", "AllReady"));
    db = after(&db, &written);

    // 2: nothing changed: no status write at all.
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        apply_everything(api, &d, |_| true).await;
    })
    .await
    .expect("reconciles");
    api.assert_idle();

    // 3: Server0 died, sh1 is electing: not Ready, Progressing/Electing.
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", None, Phase::Electing),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        apply_everything(api, &d, |name| name != "studt-server0").await;
        written = expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert_eq!(
        condition(&written, "Ready"),
        pair("False", "ServersNotReady")
    );
    assert_eq!(
        condition(&written, "Progressing"),
        pair("True", "RollingOut")
    );
    db = after(&db, &written);

    // 4: Server2 promoted for sh1 while Server0 is still down: the shard has its primary.
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server2"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        apply_everything(api, &d, |_| true).await;
        written = expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert_eq!(condition(&written, "Ready"), pair("True", "AllReady"));
    assert_eq!(ready_gauge(&ctx), 1);

    // 5: the shard loses its quorum: Degraded/NoQuorum.
    db = after(&db, &written);
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", None, Phase::NoQuorum),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        apply_everything(api, &d, |_| true).await;
        written = expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert_eq!(condition(&written, "Ready"), pair("False", "NoPrimary"));
    assert_eq!(condition(&written, "Degraded"), pair("True", "NoQuorum"));
    assert_eq!(ready_gauge(&ctx), 0);
    api.assert_idle();
}

/// The set's pod still runs the previous template (`OnDelete`: nothing restarts it by itself).
fn outdated(mut set: Json) -> Json {
    set["status"]["updatedReplicas"] = json!(0);
    set["status"]["updateRevision"] = json!("r2");
    set
}

#[tokio::test]
async fn an_updated_template_restarts_one_settled_server_at_a_time_followers_first() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let db = database(spec(3, 2));
    let d = desired(&db);
    // Server0 leads both shards; Server0 and Server1 run the old template.
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server0"), Phase::Healthy),
        ("sh2", Some("Server0"), Phase::Healthy),
    ])));
    let answer = |name: &str, body: Json, ready: bool| {
        let set = with_status(body, ready);
        if name == "studt-server0" || name == "studt-server1" {
            outdated(set)
        } else {
            set
        }
    };
    let mut written = Json::Null;
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        for (path, body) in applies(api, &d) {
            let e = api.expect_apply(&path).await;
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            e.reply(200, answer(&name, body, true));
        }
        let pod = api.path_of::<Pod>("studt-server1-0");
        api.expect("DELETE", &pod).await.reply(200, status(200, ""));
        let (_, reason, action, note) = api.expect_event().await;
        assert_eq!(
            (reason.as_str(), action.as_str()),
            ("Restarting", "RestartServer")
        );
        assert!(note.starts_with("restarting server Server1"), "{note}");
        written = expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    assert_eq!(
        condition(&written, "Progressing"),
        pair("True", "RollingOut")
    );
    assert_eq!(
        written["serversReady"], 2,
        "the restarted server counts as not ready"
    );
    let db = after(&db, &written);

    // Server1's new pod is not ready yet: Server0 waits (and the status is unchanged).
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        for (path, body) in applies(api, &d) {
            let e = api.expect_apply(&path).await;
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let set = if name == "studt-server1" {
                with_status(body, false)
            } else {
                answer(&name, body, true)
            };
            e.reply(200, set);
        }
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));

    // Server1 is back on the new template: now the leader's turn, but a planned restart is not
    // a failover: Server0's primaries are switched over first, and its pod is not deleted yet.
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        for (path, body) in applies(api, &d) {
            let e = api.expect_apply(&path).await;
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let set = if name == "studt-server0" {
                outdated(with_status(body, true))
            } else {
                with_status(body, true)
            };
            e.reply(200, set);
        }
        let (_, reason, action, note) = api.expect_event().await;
        assert_eq!(
            (reason.as_str(), action.as_str()),
            ("HandingOver", "HandOver")
        );
        assert!(note.contains("Server0"), "{note}");
        let written = expect_status(api, &db).await;
        assert_eq!(
            condition(&written, "Progressing"),
            pair("True", "HandingOver")
        );
        assert_eq!(condition(&written, "Ready"), pair("True", "AllReady"));
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    assert!(
        fleet
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Handover { server, .. } if server == "Server0")),
        "{:?}",
        fleet.calls()
    );

    // The control plane moved both primaries to Server1: now Server0's pod is deleted.
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server1"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        for (path, body) in applies(api, &d) {
            let e = api.expect_apply(&path).await;
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let set = if name == "studt-server0" {
                outdated(with_status(body, true))
            } else {
                with_status(body, true)
            };
            e.reply(200, set);
        }
        let pod = api.path_of::<Pod>("studt-server0-0");
        api.expect("DELETE", &pod).await.reply(200, status(200, ""));
        let (_, reason, _, note) = api.expect_event().await;
        assert_eq!(reason, "Restarting");
        assert!(note.starts_with("restarting server Server0"), "{note}");
        let written = expect_status(api, &db).await;
        assert_eq!(
            condition(&written, "Ready"),
            pair("False", "ServersNotReady")
        );
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    api.assert_idle();
}

#[tokio::test]
async fn an_outdated_server_that_is_not_ready_is_restarted_without_waiting() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let db = database(spec(3, 2));
    let d = desired(&db);
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server0"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        for (path, body) in applies(api, &d) {
            let e = api.expect_apply(&path).await;
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            // Server2 crash-loops on the old template; Server0 is outdated but ready.
            let set = match name.as_str() {
                "studt-server2" => outdated(with_status(body, false)),
                "studt-server0" => outdated(with_status(body, true)),
                _ => with_status(body, true),
            };
            e.reply(200, set);
        }
        let pod = api.path_of::<Pod>("studt-server2-0");
        api.expect("DELETE", &pod).await.reply(200, status(200, ""));
        api.expect_event().await;
        expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    api.assert_idle();
}

#[tokio::test]
async fn a_paused_database_gets_only_its_status_written() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let mut s = spec(3, 2);
    s.paused = true;
    let db = database(s);
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        let written = expect_status(api, &db).await;
        assert_eq!(condition(&written, "Progressing"), pair("False", "Paused"));
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::await_change());
    assert!(
        fleet.calls().is_empty(),
        "the control plane is left as it is"
    );
    api.assert_idle();
}

#[tokio::test]
async fn an_invalid_spec_applies_nothing_and_says_why() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    // 3 replicas per shard on 2 servers.
    let db = database(spec(2, 2));
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        let (type_, reason, _, note) = api.expect_event().await;
        assert_eq!(
            (type_.as_str(), reason.as_str()),
            ("Warning", "InvalidSpec")
        );
        assert!(note.contains("spec."), "{note}");
        let written = expect_status(api, &db).await;
        assert_eq!(condition(&written, "Degraded"), pair("True", "InvalidSpec"));
        assert_eq!(condition(&written, "Ready"), pair("False", "InvalidSpec"));
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::await_change());
    assert!(fleet.calls().is_empty());
    api.assert_idle();
}

#[tokio::test]
async fn a_missing_user_token_secret_blocks_before_anything_is_applied() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let mut s = spec(3, 2);
    s.credentials.cluster_token_secret_ref = Some(SecretKeyRef {
        name: "fleet-token".to_owned(),
        key: None,
    });
    let db = database(s);
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        let path = api.path_of::<Secret>("fleet-token");
        api.expect("GET", &path).await.not_found();
        let written = expect_status(api, &db).await;
        assert_eq!(
            condition(&written, "Degraded"),
            pair("True", "CredentialsMissing")
        );
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    assert!(fleet.calls().is_empty());
    api.assert_idle();
}

fn deleting(mut db: ShardedDatabase) -> ShardedDatabase {
    db.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    db
}

/// The finalizer's removal: a JSON patch that first tests it is still at index 0.
async fn expect_finalizer_removed(api: &mut ApiServer, db: &ShardedDatabase) {
    let e = api.expect("PATCH", DB_PATH).await;
    assert_eq!(
        e.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
    let mut gone = db.clone();
    gone.metadata.finalizers = None;
    e.reply(200, serde_json::to_value(gone).expect("serializes"));
}

#[tokio::test]
async fn deletion_stops_the_control_plane_and_removes_the_finalizer() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let db = deleting(database(spec(3, 2)));
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        expect_finalizer_removed(api, &db).await
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::await_change());
    assert_eq!(
        fleet.calls(),
        [Call::Remove {
            namespace: NS.to_owned(),
            name: NAME.to_owned()
        }]
    );
    api.assert_idle();
}

#[tokio::test]
async fn deletion_with_when_deleted_delete_removes_every_data_claim_first() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let mut s = spec(3, 2);
    s.storage.retention.when_deleted = Retention::Delete;
    let db = deleting(database(s));
    let d = desired(&db);
    reconciled(&ctx, &db, &mut api, async |api| {
        list_sets(api, existing_sets(&d, true)).await;
        for server in ["Server0", "Server1", "Server2"] {
            let path = api.path_of::<PersistentVolumeClaim>(&objects::data_claim(NAME, server));
            api.expect("DELETE", &path)
                .await
                .reply(200, status(200, ""));
        }
        expect_finalizer_removed(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert!(matches!(&fleet.calls()[..], [Call::Remove { .. }]));
    api.assert_idle();
}

#[tokio::test]
async fn errors_back_off_to_five_minutes() {
    let Harness { ctx, .. } = harness();
    let db = database(spec(3, 2));
    let error = ReconcileError::MissingMetadata("namespace");
    assert_eq!(error.metric_label(), "metadata");
    let policy = || reconcile::error_policy(Arc::new(db.clone()), &error, ctx.clone());
    assert_eq!(policy(), Action::requeue(Duration::from_secs(1)));
    assert_eq!(policy(), Action::requeue(Duration::from_secs(2)));
    assert_eq!(policy(), Action::requeue(Duration::from_secs(4)));
    assert_eq!(backoff(1), Duration::from_secs(1));
    assert_eq!(backoff(2), Duration::from_secs(2));
    assert_eq!(backoff(5), Duration::from_secs(16));
    assert_eq!(backoff(9), Duration::from_secs(256));
    assert_eq!(backoff(10), Duration::from_secs(300));
    assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value: ByteString = serde_json::from_value(json!(text)).expect("base64");
    value.0
}
