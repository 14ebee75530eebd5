//! The backup controllers against the mocked API server: a `ShardedDatabaseBackup` goes
//! Pending → Running → Succeeded with its status, Events, retention and the database's
//! `status.backup` written; a failed backup ends Failed with Warning Events on the request and on
//! the database; an interrupted one fails; a due schedule creates its request; a database that
//! dropped `spec.backup` loses what the manager wrote. The fleet side is a test double
//! ([`FakeBackups`]) that writes real manifests into a real directory store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{Value as Json, json};
use walshard_backup::take::TakeError;
use walshard_backup::{
    BackupId, BackupStore, Manifest, PartRef, ShardBackup, StoreOptions, now_ms,
};
use walshard_contract::ArchiveReport;
use walshard_k8s_api::backup::{
    ShardedDatabaseBackup, ShardedDatabaseBackupSpec, ShardedDatabaseBackupStatus,
};
use walshard_k8s_api::spec::{
    BackupRetentionSpec, BackupSpec, BackupStatus, ShardedDatabase, ShardedDatabaseStatus,
};
use walshard_operator::k8s::backups::{
    self, BackupContext, BackupError, BackupMetrics, BackupSettings, BaseBackups,
};

use super::api::{ApiServer, Exchange, list, mocked};
use super::{DB_PATH, NAME, NS, database, spec};

const MANAGER: &str = "walshard-operator-backup";
const REQUEST: &str = "before-migration";

/// The fleet side: takes a "backup" by writing a manifest of two shards into the store, or
/// fails as told; sh1's primary reports its archive.
#[derive(Clone, Default)]
struct FakeBackups {
    fail: Arc<Mutex<Option<String>>>,
    taken: Arc<Mutex<Vec<String>>>,
}

fn manifest(started_at_ms: u64) -> Manifest {
    let id = BackupId::at(started_at_ms);
    let part = |shard: &str| PartRef {
        key: id.ops_key(shard),
        bytes: 10,
        crc32c: 0,
    };
    let copy = |shard: &str| ShardBackup {
        epoch: 2,
        lsn: 40,
        source: "Server1".to_owned(),
        rows: 7,
        parts: Vec::new(),
        ops: part(shard),
    };
    let shards = BTreeMap::from([
        ("sh1".to_owned(), copy("sh1")),
        ("sh2".to_owned(), copy("sh2")),
    ]);
    Manifest {
        id,
        started_at_ms,
        finished_at_ms: started_at_ms + 5,
        fleet: json!({}),
        shards,
    }
}

impl BaseBackups for FakeBackups {
    async fn take(
        &self,
        db: &ShardedDatabase,
        store: &BackupStore,
    ) -> Result<Manifest, BackupError> {
        if let Some(shard) = self.fail.lock().unwrap().clone() {
            return Err(TakeError::NoPrimary(shard).into());
        }
        let m = manifest(now_ms());
        store.put_manifest(&m).await?;
        self.taken
            .lock()
            .unwrap()
            .push(db.metadata.name.clone().unwrap_or_default());
        Ok(m)
    }

    fn runs(&self, _: &str, _: &str) -> bool {
        true
    }

    fn archive(&self, _: &str, _: &str) -> Option<BTreeMap<String, ArchiveReport>> {
        Some(BTreeMap::from([(
            "sh1".to_owned(),
            ArchiveReport {
                archived_lsn: Some(40),
                lag_entries: 0,
                lag_seconds: 0,
                error: None,
            },
        )]))
    }
}

struct Harness {
    api: ApiServer,
    backups: FakeBackups,
    ctx: Arc<BackupContext<FakeBackups>>,
    store_dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let (client, api) = mocked(NS);
    let backups = FakeBackups::default();
    let ctx = BackupContext::new(
        client,
        backups.clone(),
        Some("walshard-operator-0".to_owned()),
        BackupMetrics::default(),
        BackupSettings::default(),
    );
    Harness {
        api,
        backups,
        ctx: Arc::new(ctx),
        store_dir: tempfile::tempdir().unwrap(),
    }
}

fn store_url(h: &Harness) -> String {
    format!("file://{}/store", h.store_dir.path().display())
}

fn open(url: &str) -> BackupStore {
    BackupStore::open(url, &StoreOptions::default()).unwrap()
}

/// The database with `spec.backup` into `url`.
fn db_with_backup(
    url: &str,
    retention: Option<BackupRetentionSpec>,
    schedule: Option<&str>,
) -> ShardedDatabase {
    let mut s = spec(3, 2);
    s.backup = Some(BackupSpec {
        store: url.to_owned(),
        s3: None,
        schedule: schedule.map(str::to_owned),
        retention,
        archive_interval_ms: None,
    });
    database(s)
}

fn request() -> ShardedDatabaseBackup {
    let mut r = ShardedDatabaseBackup::new(
        REQUEST,
        ShardedDatabaseBackupSpec {
            database: NAME.to_owned(),
        },
    );
    r.metadata.namespace = Some(NS.to_owned());
    r.metadata.uid = Some("b0000000-0000-4000-8000-000000000001".to_owned());
    r.metadata.creation_timestamp = Some(Time(Timestamp::now()));
    r
}

fn request_path() -> String {
    format!("/apis/walshard.io/v1alpha1/namespaces/{NS}/shardeddatabasebackups/{REQUEST}/status")
}

fn events_path() -> String {
    format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
}

/// A server-side apply with the backup manager's field manager, forced.
async fn expect_backup_apply(api: &mut ApiServer, path: &str) -> Exchange {
    let e = api.expect("PATCH", path).await;
    assert_eq!(
        e.content_type.as_deref(),
        Some("application/apply-patch+yaml"),
        "{path}"
    );
    assert_eq!(
        e.query.get("fieldManager").map(String::as_str),
        Some(MANAGER),
        "{path}"
    );
    assert_eq!(
        e.query.get("force").map(String::as_str),
        Some("true"),
        "{path}"
    );
    e
}

/// Answers a status apply with `object` carrying the applied status (what the API server
/// returns, near enough).
fn answer(e: Exchange, object: &Json) {
    let mut body = object.clone();
    body["status"] = e.body["status"].clone();
    e.reply(200, body);
}

fn request_json() -> Json {
    serde_json::to_value(request()).unwrap()
}

/// An Event: (type, reason, kind of the object it is about, note).
async fn expect_event(api: &mut ApiServer) -> (String, String, String, String) {
    let e = api.expect("POST", &events_path()).await;
    let b = e.body.clone();
    e.reply(201, b.clone());
    let s = |v: &Json| v.as_str().unwrap_or_default().to_owned();
    (
        s(&b["type"]),
        s(&b["reason"]),
        s(&b["regarding"]["kind"]),
        s(&b["note"]),
    )
}

/// Runs one reconciliation of `run` against `scenario` (see the main module's `reconciled`).
async fn scripted<F, R>(
    api: &mut ApiServer,
    run: F,
    scenario: impl AsyncFnOnce(&mut ApiServer),
) -> R
where
    F: Future<Output = R>,
{
    let mut running = std::pin::pin!(run);
    let mut result = None;
    {
        let mut scenario =
            std::pin::pin!(tokio::time::timeout(Duration::from_secs(10), scenario(api)));
        loop {
            tokio::select! {
                r = &mut running, if result.is_none() => result = Some(r),
                done = &mut scenario => {
                    done.expect("the scenario waits for a request that never came");
                    break;
                }
            }
        }
    }
    match result {
        Some(r) => r,
        None => tokio::select! {
            r = &mut running => r,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                api.assert_idle();
                panic!("the reconciliation did not finish after its scenario");
            }
        },
    }
}

fn count(
    family: &prometheus_client::metrics::family::Family<
        walshard_operator::k8s::reconcile::DatabaseLabels,
        prometheus_client::metrics::counter::Counter,
    >,
) -> u64 {
    family
        .get_or_create(&walshard_operator::k8s::reconcile::DatabaseLabels {
            namespace: NS.to_owned(),
            name: NAME.to_owned(),
        })
        .get()
}

#[tokio::test]
async fn a_backup_request_runs_succeeds_applies_retention_and_updates_the_database() {
    let mut h = harness();
    let url = store_url(&h);
    // An older backup, from a scheduled request, which keepCount 1 will remove.
    let old = manifest(now_ms() - 86_400_000);
    open(&url).put_manifest(&old).await.unwrap();
    let db = db_with_backup(
        &url,
        Some(BackupRetentionSpec {
            keep_count: Some(1),
            keep_days: None,
        }),
        None,
    );
    let ctx = h.ctx.clone();
    let req = request();
    let db_json = serde_json::to_value(&db).unwrap();
    let db_answer = db_json.clone();
    let old_id = old.id.to_string();
    let action = scripted(
        &mut h.api,
        backups::request::reconcile(Arc::new(req.clone()), ctx),
        async |api| {
            api.expect("GET", DB_PATH).await.reply(200, db_json.clone());

            let e = expect_backup_apply(api, &request_path()).await;
            assert_eq!(e.body["kind"], "ShardedDatabaseBackup");
            assert_eq!(e.body["status"]["phase"], "Running");
            assert_eq!(e.body["status"]["store"], json!(url));
            assert!(e.body["status"]["startedAt"].is_string());
            answer(e, &request_json());
            let (type_, reason, kind, _) = expect_event(api).await;
            assert_eq!(
                (type_.as_str(), reason.as_str(), kind.as_str()),
                ("Normal", "BackupStarted", "ShardedDatabaseBackup")
            );

            let e = expect_backup_apply(api, &request_path()).await;
            let status = e.body["status"].clone();
            answer(e, &request_json());
            assert_eq!(status["phase"], "Succeeded");
            assert_eq!(status["shards"], 2);
            assert_eq!(status["rows"], 14);
            assert!(status["completedAt"].is_string());
            let id = status["backupId"].as_str().unwrap().to_owned();
            assert_ne!(id, old_id);
            assert_eq!(status["conditions"][0]["type"], "Complete");
            assert_eq!(status["conditions"][0]["status"], "True");
            let (_, reason, _, note) = expect_event(api).await;
            assert_eq!(reason, "BackupSucceeded");
            assert!(note.contains(&id), "{note}");

            // Retention: the older backup goes, and the scheduled request that made it.
            let (_, reason, kind, note) = expect_event(api).await;
            assert_eq!(
                (reason.as_str(), kind.as_str()),
                ("RetentionApplied", "ShardedDatabase")
            );
            assert!(note.contains(&old_id), "{note}");
            let collection =
                format!("/apis/walshard.io/v1alpha1/namespaces/{NS}/shardeddatabasebackups");
            let e = api.expect("GET", &collection).await;
            assert_eq!(
                e.query.get("labelSelector").map(String::as_str),
                Some("walshard.io/database=studt,walshard.io/scheduled=true")
            );
            let scheduled = |name: &str, backup: &str| {
                json!({"apiVersion": "walshard.io/v1alpha1", "kind": "ShardedDatabaseBackup",
                       "metadata": {"name": name, "namespace": NS},
                       "spec": {"database": NAME},
                       "status": {"phase": "Succeeded", "backupId": backup}})
            };
            e.reply(
                200,
                list(
                    "ShardedDatabaseBackup",
                    "walshard.io/v1alpha1",
                    vec![
                        scheduled("studt-20261201030000", &old_id),
                        scheduled("studt-20261202030000", &id),
                    ],
                ),
            );
            let e = api
                .expect("DELETE", &format!("{collection}/studt-20261201030000"))
                .await;
            e.reply(200, super::api::status(200, "Success"));

            // The database's status.backup: the new backup, the range, the archive, the condition.
            let e = expect_backup_apply(api, &format!("{DB_PATH}/status")).await;
            let status = e.body["status"].clone();
            answer(e, &db_answer);
            assert_eq!(status["backup"]["lastBackupId"], json!(id));
            assert!(status["backup"]["lastBackupTime"].is_string());
            assert!(status["backup"]["restorableFrom"].is_string(), "{status}");
            assert_eq!(status["backup"]["archive"][0]["shard"], "sh1");
            assert_eq!(status["backup"]["archive"][0]["archivedLsn"], 40);
            let conditions = status["conditions"].as_array().unwrap();
            assert_eq!(
                conditions.len(),
                1,
                "only the manager's own condition: {status}"
            );
            assert_eq!(conditions[0]["type"], "ArchiveLagging");
            assert_eq!(conditions[0]["status"], "False");
        },
    )
    .await
    .expect("reconciles");
    assert_eq!(action, Action::await_change());
    h.api.assert_idle();
    assert_eq!(h.backups.taken.lock().unwrap().as_slice(), [NAME]);
    let left = open(&url).manifests().await.unwrap();
    assert_eq!(left.len(), 1, "keepCount 1");
    assert_ne!(left[0].id, old.id);
    assert_eq!(count(&h.ctx.metrics().backups), 1);
    assert_eq!(count(&h.ctx.metrics().failed), 0);
    let labels = walshard_operator::k8s::reconcile::DatabaseLabels {
        namespace: NS.to_owned(),
        name: NAME.to_owned(),
    };
    assert!(h.ctx.metrics().last_success.get_or_create(&labels).get() > 1_700_000_000);
}

#[tokio::test]
async fn a_failed_backup_ends_failed_with_warning_events_on_the_request_and_the_database() {
    let mut h = harness();
    *h.backups.fail.lock().unwrap() = Some("sh2".to_owned());
    let url = store_url(&h);
    let db = db_with_backup(&url, None, None);
    let db_json = serde_json::to_value(&db).unwrap();
    let ctx = h.ctx.clone();
    let action = scripted(
        &mut h.api,
        backups::request::reconcile(Arc::new(request()), ctx),
        async |api| {
            api.expect("GET", DB_PATH).await.reply(200, db_json.clone());
            let e = expect_backup_apply(api, &request_path()).await;
            assert_eq!(e.body["status"]["phase"], "Running");
            answer(e, &request_json());
            let (_, reason, _, _) = expect_event(api).await;
            assert_eq!(reason, "BackupStarted");

            let e = expect_backup_apply(api, &request_path()).await;
            let status = e.body["status"].clone();
            answer(e, &request_json());
            assert_eq!(status["phase"], "Failed");
            let message = status["message"].as_str().unwrap();
            assert!(
                message.contains("shard sh2 has no primary")
                    && message.contains("[fleet-unavailable]"),
                "{message}"
            );
            assert_eq!(status["conditions"][0]["status"], "False");
            assert_eq!(status["conditions"][0]["reason"], "BackupFailed");
            assert!(status.get("backupId").is_none());

            let (type_, reason, kind, note) = expect_event(api).await;
            assert_eq!(
                (type_.as_str(), reason.as_str(), kind.as_str()),
                ("Warning", "BackupFailed", "ShardedDatabaseBackup")
            );
            assert!(note.contains("sh2"));
            let (type_, reason, kind, note) = expect_event(api).await;
            assert_eq!(
                (type_.as_str(), reason.as_str(), kind.as_str()),
                ("Warning", "BackupFailed", "ShardedDatabase")
            );
            assert!(note.contains(REQUEST), "{note}");
        },
    )
    .await
    .expect("reconciles");
    assert_eq!(action, Action::await_change());
    h.api.assert_idle();
    assert!(open(&url).manifests().await.unwrap().is_empty());
    assert_eq!(count(&h.ctx.metrics().failed), 1);
    assert_eq!(count(&h.ctx.metrics().backups), 1);
}

#[tokio::test]
async fn a_request_for_a_database_without_spec_backup_fails_without_a_backup() {
    let mut h = harness();
    let db_json = serde_json::to_value(database(spec(3, 2))).unwrap();
    let ctx = h.ctx.clone();
    scripted(
        &mut h.api,
        backups::request::reconcile(Arc::new(request()), ctx),
        async |api| {
            api.expect("GET", DB_PATH).await.reply(200, db_json.clone());
            let e = expect_backup_apply(api, &request_path()).await;
            assert_eq!(e.body["status"]["phase"], "Failed");
            assert!(
                e.body["status"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("has no spec.backup")
            );
            answer(e, &request_json());
            let (type_, _, kind, _) = expect_event(api).await;
            assert_eq!(
                (type_.as_str(), kind.as_str()),
                ("Warning", "ShardedDatabaseBackup")
            );
            let (_, _, kind, _) = expect_event(api).await;
            assert_eq!(kind, "ShardedDatabase");
        },
    )
    .await
    .expect("reconciles");
    h.api.assert_idle();
    assert!(h.backups.taken.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_request_found_running_was_interrupted_and_a_finished_one_is_left_alone() {
    let mut h = harness();
    let mut running = request();
    running.status = Some(ShardedDatabaseBackupStatus {
        phase: Some(walshard_k8s_api::backup::BackupPhase::Running),
        ..Default::default()
    });
    let ctx = h.ctx.clone();
    scripted(
        &mut h.api,
        backups::request::reconcile(Arc::new(running.clone()), ctx),
        async |api| {
            let e = expect_backup_apply(api, &request_path()).await;
            assert_eq!(e.body["status"]["phase"], "Failed");
            assert!(
                e.body["status"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("interrupted")
            );
            answer(e, &request_json());
            let (type_, reason, _, _) = expect_event(api).await;
            assert_eq!(
                (type_.as_str(), reason.as_str()),
                ("Warning", "BackupFailed")
            );
        },
    )
    .await
    .expect("reconciles");

    let mut done = request();
    done.status = Some(ShardedDatabaseBackupStatus {
        phase: Some(walshard_k8s_api::backup::BackupPhase::Succeeded),
        ..Default::default()
    });
    let action = backups::request::reconcile(Arc::new(done), h.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    h.api.assert_idle();
}

#[tokio::test]
async fn a_due_schedule_creates_its_request_once_and_records_the_occurrence() {
    let mut h = harness();
    let url = store_url(&h);
    // Yearly (Jan 1, 00:00 UTC), the database two years old: one occurrence is due, and no
    // other comes between the two reconciliations below (unless they straddle a new year).
    let mut db = db_with_backup(&url, None, Some("0 0 1 1 *"));
    let created = Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2 * 366 * 24);
    db.metadata.creation_timestamp = Some(Time(created));
    let db_answer = serde_json::to_value(&db).unwrap();
    let ctx = h.ctx.clone();
    let action = scripted(
        &mut h.api,
        backups::database::reconcile(Arc::new(db.clone()), ctx),
        async |api| {
            let collection =
                format!("/apis/walshard.io/v1alpha1/namespaces/{NS}/shardeddatabasebackups");
            let e = api.expect("POST", &collection).await;
            let name = e.body["metadata"]["name"].as_str().unwrap().to_owned();
            assert!(
                name.starts_with("studt-") && name.ends_with("0101000000"),
                "the year's occurrence: {name}"
            );
            assert_eq!(e.body["spec"]["database"], NAME);
            assert_eq!(
                e.body["metadata"]["labels"]["walshard.io/scheduled"],
                "true"
            );
            assert_eq!(
                e.body["metadata"]["ownerReferences"][0]["kind"],
                "ShardedDatabase"
            );
            assert_eq!(
                e.query.get("fieldManager").map(String::as_str),
                Some(MANAGER)
            );
            e.echo();
            let (_, reason, kind, _) = expect_event(api).await;
            assert_eq!(
                (reason.as_str(), kind.as_str()),
                ("BackupScheduled", "ShardedDatabase")
            );

            let e = expect_backup_apply(api, &format!("{DB_PATH}/status")).await;
            let status = e.body["status"].clone();
            answer(e, &db_answer);
            let at = status["backup"]["lastScheduleTime"]
                .as_str()
                .unwrap()
                .to_owned();
            assert!(at.ends_with("-01-01T00:00:00Z"), "{at}");
            assert!(
                status["backup"].get("lastBackupId").is_none(),
                "the store is empty"
            );
        },
    )
    .await
    .expect("reconciles");
    assert!(
        format!("{action:?}").contains("requeue_after: Some("),
        "{action:?}"
    );
    h.api.assert_idle();

    // The same occurrence, recorded: nothing is created again; the status shows it already.
    let mut recorded = db.clone();
    let archive = BTreeMap::new();
    let last = walshard_operator::k8s::backups::schedule::due(
        &walshard_k8s_api::spec::backup::parse_schedule("0 0 1 1 *").unwrap(),
        created,
        Timestamp::now(),
    )
    .map(Time);
    let backup = walshard_operator::k8s::backups::status::backup_status(
        None,
        Some(&open(&url).catalog().await.unwrap()),
        &h.backups.archive(NS, NAME).unwrap_or(archive),
        last,
    );
    let condition = walshard_operator::k8s::backups::status::archive_condition(
        &h.backups.archive(NS, NAME).unwrap_or_default(),
        Duration::from_secs(300),
        db.metadata.generation,
        None,
        Timestamp::now(),
    );
    recorded.status = Some(ShardedDatabaseStatus {
        backup: Some(backup),
        conditions: vec![condition],
        ..Default::default()
    });
    backups::database::reconcile(Arc::new(recorded), h.ctx.clone())
        .await
        .unwrap();
    h.api.assert_idle();
}

#[tokio::test]
async fn a_database_without_spec_backup_loses_what_the_manager_wrote() {
    let mut h = harness();
    let mut db = database(spec(3, 2));
    db.status = Some(ShardedDatabaseStatus {
        backup: Some(BackupStatus {
            last_backup_id: Some("20261207T030000000Z".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let db_answer = serde_json::to_value(&db).unwrap();
    let ctx = h.ctx.clone();
    scripted(
        &mut h.api,
        backups::database::reconcile(Arc::new(db), ctx),
        async |api| {
            let e = expect_backup_apply(api, &format!("{DB_PATH}/status")).await;
            assert_eq!(
                e.body["status"],
                json!({}),
                "an empty apply removes the manager's fields"
            );
            answer(e, &db_answer);
        },
    )
    .await
    .expect("reconciles");
    h.api.assert_idle();
    // Nothing written before: nothing to remove.
    backups::database::reconcile(Arc::new(database(spec(3, 2))), h.ctx.clone())
        .await
        .unwrap();
    h.api.assert_idle();
}

#[tokio::test]
async fn a_succeeded_backup_whose_status_write_failed_is_written_next_time_not_called_interrupted()
{
    let mut h = harness();
    let url = store_url(&h);
    let db_json = serde_json::to_value(db_with_backup(&url, None, None)).unwrap();
    let ctx = h.ctx.clone();
    let result = scripted(
        &mut h.api,
        backups::request::reconcile(Arc::new(request()), ctx),
        async |api| {
            api.expect("GET", DB_PATH).await.reply(200, db_json.clone());
            let e = expect_backup_apply(api, &request_path()).await;
            answer(e, &request_json());
            expect_event(api).await;
            let e = expect_backup_apply(api, &request_path()).await;
            assert_eq!(e.body["status"]["phase"], "Succeeded");
            e.reply(500, super::api::status(500, "InternalError"));
        },
    )
    .await;
    assert!(
        result.is_err(),
        "the failed write is the reconciliation's error"
    );
    assert_eq!(
        count(&h.ctx.metrics().backups),
        1,
        "counted once, at the end of the backup"
    );

    // The watch delivers it as Running: the next reconciliation writes the kept status.
    let mut running = request();
    running.status = Some(ShardedDatabaseBackupStatus {
        phase: Some(walshard_k8s_api::backup::BackupPhase::Running),
        ..Default::default()
    });
    let ctx = h.ctx.clone();
    scripted(
        &mut h.api,
        backups::request::reconcile(Arc::new(running), ctx),
        async |api| {
            let e = expect_backup_apply(api, &request_path()).await;
            assert_eq!(e.body["status"]["phase"], "Succeeded", "not interrupted");
            assert!(e.body["status"]["backupId"].is_string());
            answer(e, &request_json());
        },
    )
    .await
    .expect("reconciles");
    h.api.assert_idle();
    assert_eq!(count(&h.ctx.metrics().backups), 1);
    assert_eq!(
        open(&url).manifests().await.unwrap().len(),
        1,
        "one backup, taken once"
    );
}
