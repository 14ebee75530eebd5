//! The desired objects of a `ShardedDatabase` (`k8s::objects::desired`): golden files for the
//! examples (`tests/golden/<example>/<kind>-<name>.yaml`; `WALSHARD_BLESS=1` rewrites them), and
//! focused checks of what the reconciler, the control plane and the router rely on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kube::Resource;
use serde::Serialize;
use serde_json::{Value as Json, json};
use walshard_contract::Ident;
use walshard_k8s_api::names;
use walshard_k8s_api::spec::{
    Retention, SecretKeyRef, ServerPlacement, ServersSpec, ShardedDatabase, WalFsync,
};
use walshard_operator::k8s::objects::{
    self, Desired, GeneratedSecrets, Images, ObjectsError, desired,
};

const NAMESPACE: &str = "walshard";
const UID: &str = "5d0c3f5e-9a51-4e1b-8c1e-000000000001";
const BLESS: &str = "WALSHARD_BLESS=1 cargo test -p walshard-operator --test objects";

fn images() -> Images {
    Images {
        agent: "walshard/agent:golden".to_owned(),
        router: "walshard/router:golden".to_owned(),
        pull_policy: Some("IfNotPresent".to_owned()),
    }
}

fn generated() -> GeneratedSecrets {
    GeneratedSecrets {
        cluster_token: "goldenClusterToken0".to_owned(),
        mysql_password: "goldenMysqlPassword0".to_owned(),
        router_admin_token: "goldenRouterAdminToken0".to_owned(),
        tls: None,
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `examples/<name>.yaml` as read from the API server: with a namespace and a uid.
fn example(name: &str) -> ShardedDatabase {
    let path = workspace().join("examples").join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).expect("reads the example");
    let mut db = ShardedDatabase::from_yaml(&text).expect("parses the example");
    db.metadata.namespace = Some(NAMESPACE.to_owned());
    db.metadata.uid = Some(UID.to_owned());
    db
}

fn render(db: &ShardedDatabase) -> Desired {
    desired(db, &images(), &generated()).expect("desired objects")
}

/// Every object as (kind, JSON), in `Desired`'s order.
fn objects(d: &Desired) -> Vec<(String, Json)> {
    fn push<K: Resource<DynamicType = ()> + Serialize>(out: &mut Vec<(String, Json)>, o: &K) {
        let json = serde_json::to_value(o).expect("serializes");
        out.push((K::kind(&()).into_owned(), json));
    }
    let mut out = Vec::new();
    push(&mut out, &d.secret);
    d.config_maps.iter().for_each(|o| push(&mut out, o));
    d.services.iter().for_each(|o| push(&mut out, o));
    d.stateful_sets.iter().for_each(|o| push(&mut out, o));
    d.deployments.iter().for_each(|o| push(&mut out, o));
    d.pdbs.iter().for_each(|o| push(&mut out, o));
    d.service_accounts.iter().for_each(|o| push(&mut out, o));
    d.roles.iter().for_each(|o| push(&mut out, o));
    d.role_bindings.iter().for_each(|o| push(&mut out, o));
    out
}

/// Golden file name → contents.
fn golden_files(example: &str, d: &Desired) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for (kind, json) in objects(d) {
        let name = json["metadata"]["name"].as_str().expect("named");
        let file = format!("{}-{name}.yaml", kind.to_lowercase());
        let body = serde_yaml_ng::to_string(&json).expect("serializes to YAML");
        let text = format!(
            "# desired() of examples/{example}.yaml (operator/tests/objects.rs); rewrite: {BLESS}\n{body}"
        );
        assert!(files.insert(file.clone(), text).is_none(), "two {file}");
    }
    files
}

/// Compares the rendered objects of `example` with `tests/golden/<example>/`, or rewrites them
/// when `WALSHARD_BLESS=1`.
fn check_golden(example_name: &str) {
    let files = golden_files(example_name, &render(&example(example_name)));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(example_name);
    if std::env::var("WALSHARD_BLESS").is_ok_and(|v| v == "1") {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("removes the old golden files");
        }
        std::fs::create_dir_all(&dir).expect("creates the golden directory");
        for (file, text) in &files {
            std::fs::write(dir.join(file), text).expect("writes a golden file");
        }
        return;
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".yaml"))
                .collect()
        })
        .unwrap_or_default();
    let mut problems = Vec::new();
    for stale in on_disk.iter().filter(|f| !files.contains_key(*f)) {
        problems.push(format!("{stale}: no longer rendered"));
    }
    for (file, text) in &files {
        match std::fs::read_to_string(dir.join(file)) {
            Err(_) => problems.push(format!("{file}: missing")),
            Ok(old) if old != *text => {
                let line = old
                    .lines()
                    .zip(text.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| old.lines().count().min(text.lines().count()));
                problems.push(format!(
                    "{file}: differs from line {}: golden {:?}, rendered {:?}",
                    line + 1,
                    old.lines().nth(line).unwrap_or("<end>"),
                    text.lines().nth(line).unwrap_or("<end>")
                ));
            }
            Ok(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "golden files of examples/{example_name}.yaml in {} are stale:\n  {}\nIf the change is \
         intended, rewrite them with `{BLESS}` and review the diff.",
        dir.display(),
        problems.join("\n  ")
    );
}

#[test]
fn golden_seed_default() {
    check_golden("seed-default");
}

#[test]
fn golden_mariadb() {
    check_golden("mariadb");
}

#[test]
fn golden_explicit_placement() {
    check_golden("explicit-placement");
}

/// `spec.backup`: the agents' archiving environment (tests/backup_objects.rs checks it).
#[test]
fn golden_backup_archiving() {
    check_golden("backup/archiving");
}

/// `spec.restore`: MySQL as a sidecar, the restore init container, the layout ConfigMap.
#[test]
fn golden_backup_restored() {
    check_golden("backup/restored");
}

/// The JSON of a container of a pod template.
fn container<'a>(template_spec: &'a Json, name: &str) -> &'a Json {
    template_spec["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("container {name}"))
}

/// A container's env as name → value or `valueFrom`.
fn env_of(container: &Json) -> BTreeMap<String, Json> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env name").to_owned();
            let value = if e["value"].is_null() {
                e["valueFrom"].clone()
            } else {
                e["value"].clone()
            };
            (name, value)
        })
        .collect()
}

/// A valid label value: at most 63 characters, alphanumerics, `-`, `_`, `.` inside.
fn is_label_value(v: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    v.len() <= 63
        && (v.is_empty()
            || (alnum(v.chars().next())
                && alnum(v.chars().last())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))))
}

fn secret_ref(name: &str, key: &str) -> Json {
    json!({"secretKeyRef": {"name": name, "key": key}})
}

fn sts_pod(sts: &Json) -> &Json {
    &sts["spec"]["template"]["spec"]
}

#[test]
fn every_object_is_owned_labelled_and_namespaced() {
    for example_name in ["seed-default", "mariadb", "explicit-placement"] {
        let db = example(example_name);
        let db_name = db.metadata.name.clone().expect("named");
        let owned_secret = db.spec.storage.retention.when_deleted == Retention::Delete;
        for (kind, o) in objects(&render(&db)) {
            let what = format!("{example_name}: {kind} {}", o["metadata"]["name"]);
            assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{what}");
            let labels = &o["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/name"], "walshard", "{what}");
            assert_eq!(labels["app.kubernetes.io/instance"], db_name, "{what}");
            assert_eq!(
                labels["app.kubernetes.io/managed-by"], "walshard-operator",
                "{what}"
            );
            for (key, value) in labels.as_object().expect("labels") {
                let value = value.as_str().expect("a string");
                assert!(is_label_value(value), "{what}: label {key}={value:?}");
            }
            let component = labels["app.kubernetes.io/component"].as_str();
            assert!(
                matches!(component, Some("server" | "router")),
                "{what}: {component:?}"
            );
            let owners = &o["metadata"]["ownerReferences"];
            if kind == "Secret" && !owned_secret {
                assert!(owners.is_null(), "{what}: kept with the retained claims");
                continue;
            }
            assert_eq!(
                owners,
                &json!([{
                    "apiVersion": "walshard.io/v1alpha1",
                    "kind": "ShardedDatabase",
                    "name": db_name,
                    "uid": UID,
                    "controller": true,
                    "blockOwnerDeletion": true,
                }]),
                "{what}"
            );
        }
    }
}

#[test]
fn one_stateful_set_per_server_with_its_name_in_env() {
    let db = example("seed-default");
    let d = render(&db);
    let servers: Vec<String> = (0..6).map(|i| format!("Server{i}")).collect();
    assert_eq!(d.stateful_sets.len(), servers.len());
    for (sts, server) in d.stateful_sets.iter().zip(&servers) {
        let sts = serde_json::to_value(sts).expect("serializes");
        assert_eq!(
            sts["metadata"]["name"],
            names::server_set("studt", server),
            "in server-name order"
        );
        assert_eq!(sts["metadata"]["labels"]["walshard.io/server"], *server);
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["spec"]["serviceName"], "studt-servers");
        assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
        assert_eq!(sts["spec"]["updateStrategy"]["type"], "OnDelete");
        let env = env_of(container(sts_pod(&sts), "agent"));
        assert_eq!(env["WALSHARD_SERVER_NAME"], *server);
        assert_eq!(env["WALSHARD_CONTROLLED"], "true");
        assert_eq!(env["WALSHARD_LISTEN"], "0.0.0.0:5001");
        assert_eq!(env["WALSHARD_DATA_DIR"], "/data/agent");
        assert_eq!(env["WALSHARD_MYSQL_HOST"], "127.0.0.1");
        assert_eq!(env["WALSHARD_MYSQL_PORT"], "3306");
        assert_eq!(env["WALSHARD_MYSQL_USER"], "root");
        assert_eq!(
            env["WALSHARD_MYSQL_PASSWORD"],
            secret_ref("studt-credentials", "mysql-password")
        );
        assert!(
            !env.contains_key("WALSHARD_MYSQL_URL"),
            "no password in a URL"
        );
        assert_eq!(
            env["WALSHARD_TOKEN"],
            secret_ref("studt-credentials", "token")
        );
    }
}

#[test]
fn selectors_match_the_pods_they_select() {
    let d = render(&example("seed-default"));
    let subset = |selector: &Json, labels: &Json| {
        selector
            .as_object()
            .expect("selector")
            .iter()
            .all(|(k, v)| labels[k] == *v)
    };
    let server_pods: Vec<Json> = d
        .stateful_sets
        .iter()
        .map(|s| serde_json::to_value(s).expect("serializes"))
        .collect();
    for sts in &server_pods {
        let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
        assert!(subset(&sts["spec"]["selector"]["matchLabels"], pod_labels));
        let others = server_pods.iter().filter(|o| o != &sts);
        for other in others {
            assert!(
                !subset(
                    &sts["spec"]["selector"]["matchLabels"],
                    &other["spec"]["template"]["metadata"]["labels"]
                ),
                "a server's StatefulSet selects only its own pod"
            );
        }
    }
    let headless = serde_json::to_value(&d.services[0]).expect("serializes");
    let server_pdb = serde_json::to_value(&d.pdbs[0]).expect("serializes");
    for sts in &server_pods {
        let pod = &sts["spec"]["template"];
        assert!(subset(
            &headless["spec"]["selector"],
            &pod["metadata"]["labels"]
        ));
        assert!(subset(
            &server_pdb["spec"]["selector"]["matchLabels"],
            &pod["metadata"]["labels"]
        ));
        let term = &pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"];
        assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
        assert!(subset(
            &term["labelSelector"]["matchLabels"],
            &pod["metadata"]["labels"]
        ));
    }
    let router = serde_json::to_value(&d.deployments[0]).expect("serializes");
    let router_labels = &router["spec"]["template"]["metadata"]["labels"];
    assert!(subset(
        &router["spec"]["selector"]["matchLabels"],
        router_labels
    ));
    let router_service = serde_json::to_value(&d.services[1]).expect("serializes");
    assert!(subset(&router_service["spec"]["selector"], router_labels));
    assert!(!subset(
        &router_service["spec"]["selector"],
        &server_pods[0]["spec"]["template"]["metadata"]["labels"]
    ));
    let router_pdb = serde_json::to_value(&d.pdbs[1]).expect("serializes");
    assert!(subset(
        &router_pdb["spec"]["selector"]["matchLabels"],
        router_labels
    ));
}

#[test]
fn the_headless_service_publishes_not_ready_agents() {
    let d = render(&example("seed-default"));
    let s = serde_json::to_value(&d.services[0]).expect("serializes");
    assert_eq!(s["metadata"]["name"], names::servers_service("studt"));
    assert_eq!(s["spec"]["clusterIP"], "None");
    assert_eq!(s["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(s["spec"]["ports"][0]["port"], 5001);
}

#[test]
fn the_secret_holds_the_generated_values() {
    let d = render(&example("seed-default"));
    assert_eq!(d.secret.metadata.name.as_deref(), Some("studt-credentials"));
    assert_eq!(d.secret.type_.as_deref(), Some("Opaque"));
    let data = d.secret.data.as_ref().expect("data");
    assert_eq!(data["token"].0, b"goldenClusterToken0");
    assert_eq!(data["mysql-password"].0, b"goldenMysqlPassword0");
    assert_eq!(data["router-admin-token"].0, b"goldenRouterAdminToken0");
    assert_eq!(data.len(), 3);
    // The router's admin endpoints need it; reads and writes stay open (no API token).
    let router = serde_json::to_value(&d.deployments[0]).expect("serializes");
    let env = env_of(container(&router["spec"]["template"]["spec"], "router"));
    assert_eq!(
        env["WALSHARD_ADMIN_TOKEN"],
        secret_ref("studt-credentials", "router-admin-token")
    );
    assert!(!env.contains_key("WALSHARD_API_TOKEN"));
    assert!(
        !format!("{:?}", generated()).contains("golden"),
        "Debug hides the generated values"
    );
}

#[test]
fn other_objects_do_not_depend_on_the_generated_values() {
    let db = example("mariadb");
    let a = render(&db);
    let other = GeneratedSecrets {
        cluster_token: "another".to_owned(),
        mysql_password: "another".to_owned(),
        router_admin_token: "another".to_owned(),
        tls: None,
    };
    let b = desired(&db, &images(), &other).expect("desired objects");
    assert_ne!(a.secret, b.secret);
    assert_eq!(
        Desired {
            secret: a.secret.clone(),
            ..b
        },
        a,
        "only the create-only Secret carries them"
    );
}

#[test]
fn the_secret_is_kept_with_retained_claims_and_owned_with_deleted_ones() {
    let mut db = example("seed-default");
    db.spec.storage.retention.when_deleted = Retention::Retain;
    assert_eq!(render(&db).secret.metadata.owner_references, None);
    db.spec.storage.retention.when_deleted = Retention::Delete;
    let owners = render(&db).secret.metadata.owner_references;
    assert_eq!(owners.map(|o| o.len()), Some(1));
}

#[test]
fn credentials_refs_replace_the_generated_keys() {
    let mut db = example("seed-default");
    db.spec.credentials.mysql_secret_ref = Some(SecretKeyRef {
        name: "db-root".to_owned(),
        key: None,
    });
    let d = render(&db);
    let data = d.secret.data.as_ref().expect("data");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["router-admin-token", "token"],
        "the password comes from db-root"
    );
    let sts = serde_json::to_value(&d.stateful_sets[0]).expect("serializes");
    let mysql = env_of(container(sts_pod(&sts), "mysql"));
    assert_eq!(
        mysql["MYSQL_ROOT_PASSWORD"],
        secret_ref("db-root", "password")
    );
    let agent = env_of(container(sts_pod(&sts), "agent"));
    assert_eq!(
        agent["WALSHARD_MYSQL_PASSWORD"],
        secret_ref("db-root", "password")
    );
    assert_eq!(
        agent["WALSHARD_TOKEN"],
        secret_ref("studt-credentials", "token")
    );

    db.spec.credentials.cluster_token_secret_ref = Some(SecretKeyRef {
        name: "db-token".to_owned(),
        key: Some("t".to_owned()),
    });
    db.spec.router.api_token_secret_ref = Some(SecretKeyRef {
        name: "api".to_owned(),
        key: None,
    });
    let d = render(&db);
    assert_eq!(
        d.secret
            .data
            .as_ref()
            .map(|d| d.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["router-admin-token".to_owned()]),
        "only the router's admin token is generated"
    );
    let sts = serde_json::to_value(&d.stateful_sets[0]).expect("serializes");
    let agent = env_of(container(sts_pod(&sts), "agent"));
    assert_eq!(agent["WALSHARD_TOKEN"], secret_ref("db-token", "t"));
    let router = serde_json::to_value(&d.deployments[0]).expect("serializes");
    let env = env_of(container(&router["spec"]["template"]["spec"], "router"));
    assert_eq!(env["WALSHARD_TOKEN"], secret_ref("db-token", "t"));
    assert_eq!(env["WALSHARD_API_TOKEN"], secret_ref("api", "token"));
    assert_eq!(
        objects::cluster_token_ref("studt", &db.spec.credentials).name,
        "db-token"
    );
}

fn placement(names: &[&str]) -> ServersSpec {
    ServersSpec::placement(
        names
            .iter()
            .map(|n| ServerPlacement {
                name: Ident::new(n).expect("identifier"),
                shards: ["sh1", "sh2", "sh3", "sh4"]
                    .iter()
                    .map(|s| Ident::new(s).expect("identifier"))
                    .collect(),
            })
            .collect(),
    )
}

#[test]
fn a_server_name_with_underscore_and_uppercase_maps_to_a_dns_label() {
    let mut db = example("seed-default");
    db.spec.servers = placement(&["Server_4", "DB_East_1", "x9"]);
    let d = render(&db);
    let got: Vec<(Json, Json, Json)> = d
        .stateful_sets
        .iter()
        .map(|s| {
            let s = serde_json::to_value(s).expect("serializes");
            let env = env_of(container(sts_pod(&s), "agent"));
            (
                s["metadata"]["name"].clone(),
                s["metadata"]["labels"]["walshard.io/server"].clone(),
                env["WALSHARD_SERVER_NAME"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                json!("studt-db-east-1"),
                json!("DB_East_1"),
                json!("DB_East_1")
            ),
            (
                json!("studt-server-4"),
                json!("Server_4"),
                json!("Server_4")
            ),
            (json!("studt-x9"), json!("x9"), json!("x9")),
        ]
    );
    assert_eq!(
        objects::data_claim("studt", "Server_4"),
        "data-studt-server-4-0"
    );
}

#[test]
fn too_long_names_are_refused() {
    let mut db = example("seed-default");
    // "<db>-server0": 44 + 8 = 52 fits, 45 + 8 = 53 does not.
    db.metadata.name = Some("a".repeat(44));
    assert!(desired(&db, &images(), &generated()).is_ok());
    db.metadata.name = Some("a".repeat(45));
    let err = desired(&db, &images(), &generated()).expect_err("53 characters");
    assert!(
        matches!(
            err,
            ObjectsError::NameTooLong {
                len: 53,
                max: 52,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("at most 52"), "{message}");
    assert!(message.contains("server StatefulSet"), "{message}");

    let mut db = example("seed-default");
    db.spec.servers = placement(&[&"S".repeat(48)]);
    let err = desired(&db, &images(), &generated()).expect_err("a long server name");
    assert!(matches!(err, ObjectsError::NameTooLong { .. }), "{err:?}");

    let mut db = example("seed-default");
    db.metadata.name = Some("a".repeat(56));
    let err = desired(&db, &images(), &generated()).expect_err("a long Service name");
    assert!(
        matches!(
            err,
            ObjectsError::NameTooLong {
                object: "Service",
                len: 64,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn names_that_are_not_dns_labels_are_refused() {
    let mut db = example("seed-default");
    db.metadata.name = Some("my.db".to_owned());
    let err = desired(&db, &images(), &generated()).expect_err("a dot");
    assert!(
        matches!(
            err,
            ObjectsError::NotDnsLabel {
                object: "Service",
                ..
            }
        ),
        "{err:?}"
    );
    db.metadata.name = Some("1db".to_owned());
    assert!(
        desired(&db, &images(), &generated()).is_err(),
        "a digit first"
    );

    for server in ["_Server", "Server_"] {
        let mut db = example("seed-default");
        db.spec.servers = placement(&[server]);
        let err = desired(&db, &images(), &generated()).expect_err(server);
        assert_eq!(err, ObjectsError::ServerName(server.to_owned()));
    }
}

#[test]
fn mariadb_flavor_switches_env_names_and_probes() {
    let flavored = |example_name: &str| {
        let d = render(&example(example_name));
        let sts = serde_json::to_value(&d.stateful_sets[0]).expect("serializes");
        let mysql = container(sts_pod(&sts), "mysql").clone();
        let cnf = d.config_maps[0]
            .data
            .as_ref()
            .and_then(|m| m.get("walshard.cnf"))
            .cloned()
            .expect("walshard.cnf");
        (mysql, cnf)
    };
    let (mysql, cnf) = flavored("seed-default");
    assert_eq!(mysql["image"], "mysql:8.4");
    let env = env_of(&mysql);
    assert_eq!(
        env.keys().collect::<Vec<_>>(),
        ["MYSQL_DATABASE", "MYSQL_ROOT_PASSWORD"]
    );
    assert_eq!(env["MYSQL_DATABASE"], "walshard");
    assert_eq!(
        mysql["livenessProbe"]["exec"]["command"],
        json!(["mysqladmin", "ping", "--silent"])
    );
    assert!(
        cnf.contains("innodb_flush_log_at_trx_commit = 2\n"),
        "{cnf}"
    );
    assert!(cnf.contains("\ndisable-log-bin\n"), "{cnf}");

    let (mysql, cnf) = flavored("mariadb");
    assert_eq!(mysql["image"], "mariadb:11.4");
    let env = env_of(&mysql);
    assert_eq!(env["MARIADB_DATABASE"], "walshard");
    assert_eq!(
        env["MARIADB_ROOT_PASSWORD"],
        secret_ref("orders-credentials", "mysql-password")
    );
    assert!(env.keys().all(|k| k.starts_with("MARIADB_")), "{env:?}");
    for probe in ["startupProbe", "livenessProbe"] {
        assert_eq!(
            mysql[probe]["exec"]["command"],
            json!(["mariadb-admin", "ping", "--silent"])
        );
    }
    assert!(
        cnf.contains("innodb_flush_log_at_trx_commit = 2\n"),
        "{cnf}"
    );
    assert!(cnf.contains("\nskip-log-bin\n"), "{cnf}");
    assert!(!cnf.contains("mysqlx"), "MariaDB has no X plugin: {cnf}");
}

#[test]
fn fsync_reaches_the_agent_env_and_quorum_stays_with_the_control_plane() {
    let mut db = example("mariadb");
    let fsync = |db: &ShardedDatabase| {
        let d = render(db);
        let sts = serde_json::to_value(&d.stateful_sets[0]).expect("serializes");
        env_of(container(sts_pod(&sts), "agent"))["WALSHARD_WAL_FSYNC"].clone()
    };
    assert_eq!(fsync(&db), "always");
    db.spec.durability.wal_fsync = WalFsync::Never;
    assert_eq!(fsync(&db), "never");
    // The write quorum travels in the control plane's promote requests, not in any pod.
    let majority = {
        let mut db = db.clone();
        db.spec.durability.write_quorum = walshard_contract::Quorum::Majority;
        render(&db)
    };
    let all = render(&db);
    assert_eq!(majority, all);
}

#[test]
fn security_contexts_are_non_root_and_restricted() {
    let d = render(&example("seed-default"));
    let sts = serde_json::to_value(&d.stateful_sets[0]).expect("serializes");
    let pod = sts_pod(&sts);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["fsGroup"], 999);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(
        pod["terminationGracePeriodSeconds"], 60,
        "spec.pod's default"
    );
    let mysql = container(pod, "mysql");
    assert_eq!(
        mysql["resources"]["requests"],
        json!({"cpu": "250m", "memory": "512Mi"}),
        "default requests: never BestEffort"
    );
    assert_eq!(
        container(pod, "agent")["resources"]["requests"]["memory"],
        "128Mi"
    );
    let pre_stop = mysql["lifecycle"]["preStop"]["exec"]["command"][2]
        .as_str()
        .expect("MySQL has a preStop hook");
    assert!(
        pre_stop.contains("/dev/tcp/127.0.0.1/5001"),
        "MySQL waits for the agent to stop: {pre_stop}"
    );
    assert_eq!(
        env_of(container(pod, "agent"))["WALSHARD_SHUTDOWN_HANDOVER_SECONDS"],
        "30",
        "the agent waits at most half the grace period for its handover"
    );
    let router = serde_json::to_value(&d.deployments[0]).expect("serializes");
    let router_pod = &router["spec"]["template"]["spec"];
    assert_eq!(router_pod["serviceAccountName"], "studt-router");
    for (c, uid, read_only) in [
        (container(pod, "mysql"), 999, false),
        (container(pod, "agent"), 65532, true),
        (container(router_pod, "router"), 65532, true),
    ] {
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsUser"], uid, "{}", c["name"]);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["readOnlyRootFilesystem"], read_only, "{}", c["name"]);
    }
}

#[test]
fn storage_and_claim_retention_follow_the_spec() {
    let d = render(&example("mariadb"));
    let sts = serde_json::to_value(&d.stateful_sets[0]).expect("serializes");
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "5Gi");
    // mariadb.yaml: whenDeleted Retain, whenRemoved Delete.
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    let removal = objects::removal_claim_retention(&example("mariadb").spec);
    assert_eq!(removal.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(removal.when_scaled.as_deref(), Some("Retain"));

    let mut db = example("seed-default");
    db.spec.storage.storage_class_name = Some("fast".to_owned());
    let d = render(&db);
    let sts = serde_json::to_value(&d.stateful_sets[0]).expect("serializes");
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["spec"]["storageClassName"], "fast");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "10Gi");
}

#[test]
fn router_pdb_follows_the_replicas() {
    let mut db = example("seed-default");
    let pdb = |db: &ShardedDatabase| serde_json::to_value(&render(db).pdbs[1]).expect("json");
    let two = pdb(&db);
    assert_eq!(two["metadata"]["name"], "studt-router");
    assert_eq!(two["spec"]["minAvailable"], 1);
    assert!(two["spec"]["maxUnavailable"].is_null());
    db.spec.router.replicas = 1;
    let one = pdb(&db);
    assert_eq!(one["spec"]["maxUnavailable"], 1);
    assert!(one["spec"]["minAvailable"].is_null());
    let servers = serde_json::to_value(&render(&db).pdbs[0]).expect("json");
    assert_eq!(servers["metadata"]["name"], names::servers_pdb("studt"));
    assert_eq!(servers["spec"]["maxUnavailable"], 1);
}

#[test]
fn the_router_runs_in_kubernetes_mode_with_access_to_its_database_only() {
    let d = render(&example("seed-default"));
    let router = serde_json::to_value(&d.deployments[0]).expect("serializes");
    assert_eq!(router["spec"]["replicas"], 2);
    let c = container(&router["spec"]["template"]["spec"], "router");
    assert_eq!(c["image"], "walshard/router:golden");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    let env = env_of(c);
    assert_eq!(env["WALSHARD_KUBE_DATABASE"], "studt");
    assert_eq!(env["WALSHARD_LISTEN"], "0.0.0.0:5000");
    assert_eq!(
        env["POD_NAMESPACE"],
        json!({"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}})
    );
    assert!(!env.contains_key("WALSHARD_API_TOKEN"));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/metrics");
    let role = serde_json::to_value(&d.roles[0]).expect("serializes");
    assert_eq!(
        role["rules"],
        json!([{
            "apiGroups": ["walshard.io"],
            "resources": ["shardeddatabases"],
            "resourceNames": ["studt"],
            "verbs": ["get", "list", "watch", "patch"],
        }])
    );
    let binding = serde_json::to_value(&d.role_bindings[0]).expect("serializes");
    assert_eq!(binding["roleRef"]["name"], "studt-router");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "studt-router", "namespace": NAMESPACE}])
    );
    assert_eq!(
        d.service_accounts[0].metadata.name.as_deref(),
        Some("studt-router")
    );
    let service = serde_json::to_value(&d.services[1]).expect("serializes");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(service["spec"]["ports"][0]["port"], 5000);
}

#[test]
fn a_spec_that_does_not_resolve_is_refused() {
    let mut db = example("seed-default");
    db.spec.replicas_per_shard = 7;
    let err = desired(&db, &images(), &generated()).expect_err("7 replicas on 6 servers");
    assert!(matches!(err, ObjectsError::Spec(_)), "{err:?}");
}

#[test]
fn missing_metadata_and_bad_images_are_refused() {
    let mut db = example("seed-default");
    db.metadata.uid = None;
    assert_eq!(
        desired(&db, &images(), &generated()),
        Err(ObjectsError::MissingMetadata("uid"))
    );
    let mut db = example("seed-default");
    db.metadata.namespace = None;
    assert_eq!(
        desired(&db, &images(), &generated()),
        Err(ObjectsError::MissingMetadata("namespace"))
    );
    let db = example("seed-default");
    let bad = Images {
        agent: String::new(),
        ..images()
    };
    assert_eq!(
        desired(&db, &bad, &generated()),
        Err(ObjectsError::EmptyImage("agent"))
    );
    let bad = Images {
        pull_policy: Some("Sometimes".to_owned()),
        ..images()
    };
    assert!(matches!(
        desired(&db, &bad, &generated()),
        Err(ObjectsError::PullPolicy(_))
    ));
}

#[test]
fn spec_pod_schedules_and_identifies_the_server_pods() {
    let mut db = example("seed-default");
    let d = render(&db);
    let sts = serde_json::to_value(&d.stateful_sets[0]).expect("serializes");
    let pod = sts_pod(&sts);
    // Defaults: a soft zone spread and the per-node anti-affinity; no selector, no tolerations.
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "ScheduleAnyway"
    );
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    assert!(pod["nodeSelector"].is_null() && pod["tolerations"].is_null());

    db.spec.pod = serde_json::from_value(json!({
        "nodeSelector": {"pool": "db"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}],
        "priorityClassName": "walshard-critical",
        "labels": {"team": "a", "app.kubernetes.io/component": "ignored"},
        "annotations": {"note": "x"},
        "runAsUser": 27,
        "fsGroup": 27
    }))
    .expect("spec.pod");
    let d = render(&db);
    let sts = serde_json::to_value(&d.stateful_sets[0]).expect("serializes");
    let template = &sts["spec"]["template"];
    let pod = &template["spec"];
    assert_eq!(pod["nodeSelector"], json!({"pool": "db"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["affinity"], json!({"nodeAffinity": {}}));
    assert_eq!(pod["topologySpreadConstraints"][0]["maxSkew"], 2);
    assert_eq!(pod["priorityClassName"], "walshard-critical");
    assert_eq!(pod["securityContext"]["fsGroup"], 27);
    assert_eq!(container(pod, "mysql")["securityContext"]["runAsUser"], 27);
    let labels = &template["metadata"]["labels"];
    assert_eq!(labels["team"], "a");
    assert_eq!(
        labels["app.kubernetes.io/component"], "server",
        "the operator's labels win (selectors depend on them)"
    );
    assert_eq!(template["metadata"]["annotations"]["note"], "x");
}
