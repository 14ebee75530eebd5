//! What `spec.backup` and `spec.restore` change in a database's objects (the golden files of
//! `examples/backup/` are in tests/golden/backup/, checked by tests/objects.rs): the agents'
//! archiving environment with the credentials from the Secret, and for a restoring database
//! MySQL as a native sidecar, the restore init container and the layout ConfigMap.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value as Json, json};
use walshard_k8s_api::spec::ShardedDatabase;
use walshard_operator::k8s::objects::{Desired, GeneratedSecrets, Images, backup, desired};

fn example(name: &str) -> ShardedDatabase {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(format!("{name}.yaml"));
    let mut db = ShardedDatabase::from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap();
    db.metadata.namespace = Some("shop".to_owned());
    db.metadata.uid = Some("5d0c3f5e-9a51-4e1b-8c1e-000000000002".to_owned());
    db
}

fn render(db: &ShardedDatabase) -> Desired {
    let images = Images {
        agent: "walshard/agent:test".to_owned(),
        router: "walshard/router:test".to_owned(),
        pull_policy: None,
    };
    let generated = GeneratedSecrets {
        cluster_token: "t".to_owned(),
        mysql_password: "p".to_owned(),
        router_admin_token: "a".to_owned(),
        tls: None,
    };
    desired(db, &images, &generated).unwrap()
}

fn pod_specs(d: &Desired) -> Vec<Json> {
    d.stateful_sets
        .iter()
        .map(|s| serde_json::to_value(s).unwrap()["spec"]["template"]["spec"].clone())
        .collect()
}

fn named<'a>(list: &'a Json, name: &str) -> &'a Json {
    list.as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

fn env_of(container: &Json) -> BTreeMap<String, Json> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = if e["value"].is_null() {
                e["valueFrom"].clone()
            } else {
                e["value"].clone()
            };
            (e["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn from_secret(name: &str, key: &str) -> Json {
    json!({"secretKeyRef": {"name": name, "key": key}})
}

#[test]
fn with_spec_backup_every_agent_archives_to_the_store_with_the_secrets_credentials() {
    let d = render(&example("backup/archiving"));
    for pod in pod_specs(&d) {
        let env = env_of(named(&pod["containers"], "agent"));
        assert_eq!(
            env["WALSHARD_BACKUP_STORE"],
            "s3://walshard-backups/shop/studt"
        );
        assert_eq!(
            env["WALSHARD_BACKUP_S3_ENDPOINT"],
            "http://minio.minio.svc:9000"
        );
        assert_eq!(env["WALSHARD_BACKUP_S3_REGION"], "us-east-1");
        assert_eq!(env["WALSHARD_ARCHIVE_INTERVAL_MS"], "1000");
        assert_eq!(
            env["AWS_ACCESS_KEY_ID"],
            from_secret("s3", "AWS_ACCESS_KEY_ID")
        );
        assert_eq!(
            env["AWS_SECRET_ACCESS_KEY"],
            from_secret("s3", "AWS_SECRET_ACCESS_KEY")
        );
        assert!(
            pod["initContainers"].is_null(),
            "no restore: no init containers"
        );
    }
    assert_eq!(d.config_maps.len(), 1, "no restore ConfigMap");
}

#[test]
fn without_spec_backup_nothing_archives() {
    let d = render(&example("seed-default"));
    for pod in pod_specs(&d) {
        let env = env_of(named(&pod["containers"], "agent"));
        assert!(
            !env.keys()
                .any(|k| k.starts_with("WALSHARD_BACKUP") || k.starts_with("AWS_")),
            "{env:?}"
        );
    }
}

#[test]
fn a_restoring_database_restores_each_server_before_its_agent_starts() {
    let db = example("backup/restored");
    let d = render(&db);
    let layout = db.spec.resolve().unwrap();
    let restore_map = d
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("studt-restored-restore"))
        .expect("the restore ConfigMap");
    let text = &restore_map.data.as_ref().unwrap()[backup::RESTORE_LAYOUT_KEY];
    let parsed: Json = serde_json::from_str(text).unwrap();
    assert_eq!(
        parsed,
        layout.init_body(),
        "the layout is the seed's /init body"
    );

    for (set, pod) in d.stateful_sets.iter().zip(pod_specs(&d)) {
        let server = set.metadata.labels.as_ref().unwrap()["walshard.io/server"].clone();
        let init = pod["initContainers"].as_array().expect("init containers");
        let names: Vec<&str> = init.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["mysql", backup::RESTORE_CONTAINER],
            "MySQL first, as a sidecar"
        );
        assert_eq!(init[0]["restartPolicy"], "Always");
        assert!(
            init[0]["startupProbe"].is_object(),
            "the restore waits for MySQL to start"
        );
        let containers: Vec<&str> = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(containers, ["agent"]);

        let restore = &init[1];
        assert_eq!(restore["image"], "walshard/agent:test");
        assert_eq!(restore["args"], json!(["restore-server"]));
        let env = env_of(restore);
        assert_eq!(env["WALSHARD_SERVER_NAME"], json!(server));
        assert_eq!(env["WALSHARD_DATA_DIR"], "/data/agent");
        assert_eq!(
            env["WALSHARD_BACKUP_STORE"],
            "s3://walshard-backups/shop/studt"
        );
        assert_eq!(env["WALSHARD_RESTORE_TO_TIME"], "2026-12-07T10:00:00Z");
        assert!(!env.contains_key("WALSHARD_RESTORE_BACKUP"));
        assert_eq!(
            env["WALSHARD_RESTORE_LAYOUT"],
            format!(
                "{}/{}",
                backup::RESTORE_LAYOUT_DIR,
                backup::RESTORE_LAYOUT_KEY
            )
        );
        assert_eq!(
            env["AWS_ACCESS_KEY_ID"],
            from_secret("s3", "AWS_ACCESS_KEY_ID")
        );
        assert_eq!(
            env["WALSHARD_MYSQL_PASSWORD"],
            from_secret("studt-restored-credentials", "mysql-password")
        );
        let mounts = restore["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["mountPath"] == "/data/agent" && m["subPath"] == "agent")
        );
        let volume = named(&pod["volumes"], "restore-layout");
        assert_eq!(volume["configMap"]["name"], "studt-restored-restore");

        // The agent archives to the new prefix, not to the store it was restored from.
        let agent = env_of(named(&pod["containers"], "agent"));
        assert_eq!(
            agent["WALSHARD_BACKUP_STORE"],
            "s3://walshard-backups/shop/studt-restored"
        );
    }
}
