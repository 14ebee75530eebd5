use super::*;
use kube::CustomResourceExt;

const SEED_DEFAULT: &str = include_str!("../../../examples/seed-default.yaml");

fn parse(yaml: &str) -> ShardedDatabase {
    ShardedDatabase::from_yaml(yaml).expect("parses")
}

#[test]
fn the_seed_default_example_resolves_to_six_servers_four_shards_three_replicas() {
    let doc = parse(SEED_DEFAULT);
    assert_eq!(doc.metadata.name.as_deref(), Some("studt"));
    let r = doc.spec.resolve().expect("resolves");
    assert_eq!(r.placement.len(), 6);
    assert_eq!(r.shards.len(), 4);
    assert_eq!(r.shards[3].low, 3 * 4096);
    for shard in ["sh1", "sh2", "sh3", "sh4"] {
        let holders = r
            .placement
            .values()
            .filter(|held| held.iter().any(|s| s == shard))
            .count();
        assert_eq!(holders, 3, "{shard}");
    }
    let body = r.init_body();
    assert_eq!(body["N"], 6);
    assert_eq!(body["shards"][0]["Stud_id_low"], 0);
    assert_eq!(body["shards"][3]["Shard_id"], "sh4");
}

#[test]
fn defaults_fill_the_kubernetes_fields() {
    let spec = parse(SEED_DEFAULT).spec;
    assert_eq!(spec.engine.image, DEFAULT_IMAGE);
    assert_eq!(spec.engine.flavor(), EngineFlavor::Mysql);
    assert_eq!(spec.storage.size, "10Gi");
    assert_eq!(spec.storage.retention.when_deleted, Retention::Retain);
    assert_eq!(spec.router.replicas, 2);
    assert_eq!(spec.router.service_type, ServiceType::ClusterIP);
    assert_eq!(spec.durability, Durability::default());
    assert!(!spec.paused);
    assert_eq!(
        spec,
        ShardedDatabaseSpec::new(
            Schema::seed(),
            ShardsSpec::ranges(4, 4096, 0),
            3,
            ServersSpec::count(6)
        )
    );
}

#[test]
fn an_explicit_list_and_placement_are_kept() {
    let yaml = r#"
apiVersion: walshard.io/v1alpha1
kind: ShardedDatabase
metadata: {name: t}
spec:
  schema: {columns: [Stud_id, Stud_name], dtypes: [Number, String]}
  shards: {list: [{id: sh1, low: 0, size: 10}, {id: sh2, low: 10, size: 10}]}
  servers:
    placement:
    - {name: Server0, shards: [sh1, sh2]}
    - {name: Server1, shards: [sh2]}
"#;
    let r = parse(yaml).spec.resolve().expect("resolves");
    assert_eq!(r.placement["Server0"], ["sh1", "sh2"]);
    assert_eq!(r.placement["Server1"], ["sh2"]);
    assert_eq!(r.shards[1].low, 10);
}

#[test]
fn a_low_offsets_the_count_form() {
    let mut spec = parse(SEED_DEFAULT).spec;
    spec.shards = ShardsSpec::ranges(2, 100, -50);
    let r = spec.resolve().expect("resolves");
    assert_eq!(
        r.shards.iter().map(|s| (s.low, s.size)).collect::<Vec<_>>(),
        [(-50, 100), (50, 100)]
    );
}

#[test]
fn the_document_header_is_checked() {
    let body = "metadata: {name: t}\nspec:\n  schema: {columns: [a], dtypes: [Number]}\n  shards: {count: 1, size: 1}\n  servers: {count: 3}\n";
    let cases = [
        (
            "apiVersion: walshard.io/v1alpha1\nkind: Foo",
            "kind must be",
        ),
        (
            "apiVersion: v1\nkind: ShardedDatabase",
            "apiVersion must be",
        ),
        ("kind: ShardedDatabase", "apiVersion must be"),
    ];
    for (header, expected) in cases {
        let err = ShardedDatabase::from_yaml(&format!("{header}\n{body}")).expect_err(header);
        assert!(err.to_string().contains(expected), "{header}: {err}");
    }
    let typo =
        format!("apiVersion: walshard.io/v1alpha1\nkind: ShardedDatabase\n{body}  colour: blue\n");
    let err = ShardedDatabase::from_yaml(&typo).expect_err("unknown field");
    assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    let ok = format!("apiVersion: walshard.io/v1alpha1\nkind: ShardedDatabase\n{body}");
    assert!(ShardedDatabase::from_yaml(&ok).is_ok());
}

#[test]
fn the_engine_flavor_follows_the_image() {
    let flavor = |image: &str| {
        EngineSpec {
            image: image.to_owned(),
            flavor: None,
        }
        .flavor()
    };
    assert_eq!(flavor("mysql:8.4"), EngineFlavor::Mysql);
    assert_eq!(flavor("mariadb:11.4"), EngineFlavor::Mariadb);
    assert_eq!(
        flavor("docker.io/library/mariadb:lts"),
        EngineFlavor::Mariadb
    );
    assert_eq!(
        flavor("localhost:5000/mariadb@sha256:abc"),
        EngineFlavor::Mariadb
    );
    assert_eq!(
        flavor("registry:5000/team/mysql-server:8.4"),
        EngineFlavor::Mysql
    );
    assert_eq!(flavor("percona/percona-server:8.4"), EngineFlavor::Mysql);
    let explicit = EngineSpec {
        image: "registry.example/db:1".to_owned(),
        flavor: Some(EngineFlavor::Mariadb),
    };
    assert_eq!(explicit.flavor(), EngineFlavor::Mariadb);
}

#[test]
fn secret_keys_default_per_use() {
    let r = SecretKeyRef {
        name: "db".to_owned(),
        key: None,
    };
    assert_eq!(r.key_or(MYSQL_PASSWORD_KEY), "password");
    let r = SecretKeyRef {
        key: Some("pw".to_owned()),
        ..r
    };
    assert_eq!(r.key_or(MYSQL_PASSWORD_KEY), "pw");
}

#[test]
fn the_crd_has_the_names_columns_and_status() {
    let crd = ShardedDatabase::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("shardeddatabases.walshard.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["sdb".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, VERSION);
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some())
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Shards", "Servers", "Primaries", "Age"]);
    let yaml = crd_yaml().expect("serializes");
    assert!(yaml.contains("x-kubernetes-validations"));
}
