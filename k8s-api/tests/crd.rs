//! The generated `ShardedDatabase` CRD against its three validation layers: the OpenAPI schema
//! (checked with a JSON-schema validator, unknown fields refused as `kubectl --validate=strict`
//! does), the CEL rules (evaluated client-side by kube's CEL engine, schema defaults applied
//! first, as the API server does) and the Rust validation local mode runs. The file in `crds/`
//! is up to date, every example passes all three, and on a corpus of bad specs the layers agree.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use kube::core::cel::{ScopeContext, Validator, WarningKind, analyze_rule, apply_defaults};
use serde_json::{Value as Json, json};
use walshard_k8s_api::backup::ShardedDatabaseBackup;
use walshard_k8s_api::spec::rules::CEL_RULES;
use walshard_k8s_api::spec::transition::TRANSITION_RULES;
use walshard_k8s_api::spec::{ShardedDatabase, crd_yaml};

const CRD_FILE: &str = "crds/shardeddatabases.walshard.io.yaml";
const REFRESH: &str = "cargo run -p walshard-cli -- crd > crds/shardeddatabases.walshard.io.yaml";
const BACKUP_CRD_FILE: &str = "crds/shardeddatabasebackups.walshard.io.yaml";
const BACKUP_REFRESH: &str = "cargo run -p walshard-cli -- crd ShardedDatabaseBackup > crds/shardeddatabasebackups.walshard.io.yaml";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The CRD's `openAPIV3Schema`.
fn open_api_schema() -> Json {
    let crd = ShardedDatabase::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has an openAPIV3Schema");
    serde_json::to_value(schema).expect("serializes")
}

/// The schema as the API server applies it with strict field validation: objects with
/// `properties` refuse other fields. `x-kubernetes-*` and `nullable` are left for the validator
/// to ignore.
fn strict(schema: &Json) -> Json {
    match schema {
        Json::Object(map) => {
            let mut out: serde_json::Map<String, Json> = map
                .iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "properties" => Json::Object(
                            v.as_object()
                                .into_iter()
                                .flatten()
                                .map(|(name, s)| (name.clone(), strict(s)))
                                .collect(),
                        ),
                        "items" | "additionalProperties" => strict(v),
                        _ => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            if out.contains_key("properties") && !out.contains_key("additionalProperties") {
                out.insert("additionalProperties".to_owned(), Json::Bool(false));
            }
            Json::Object(out)
        }
        other => other.clone(),
    }
}

/// What each layer says about one document.
#[derive(Debug)]
struct Verdicts {
    schema: Vec<String>,
    cel: Vec<String>,
    rust: Result<(), String>,
}

struct Layers {
    open_api: Json,
    strict: jsonschema::Validator,
    cel: Validator,
}

impl Layers {
    fn new() -> Self {
        let open_api = open_api_schema();
        let mut root = strict(&open_api);
        // The root object also holds apiVersion, kind and metadata (not in the CRD's schema).
        if let Some(props) = root.get_mut("properties").and_then(Json::as_object_mut) {
            for name in ["apiVersion", "kind", "metadata"] {
                props.insert(name.to_owned(), json!({}));
            }
        }
        let strict = jsonschema::draft4::new(&root).expect("the schema compiles");
        Self {
            open_api,
            strict,
            cel: Validator::new(),
        }
    }

    fn check(&self, yaml: &str) -> Verdicts {
        let doc: Json = serde_yaml_ng::from_str(yaml).expect("YAML");
        let defaulted = apply_defaults(&self.open_api, &doc);
        let schema = self
            .strict
            .iter_errors(&defaulted)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        let cel = match self.cel.validate(&self.open_api, &doc, None) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        };
        let rust = ShardedDatabase::from_yaml(yaml)
            .and_then(|db| db.spec.resolve().map(|_| ()))
            .map_err(|e| e.to_string());
        Verdicts { schema, cel, rust }
    }
}

#[test]
fn the_crd_file_is_up_to_date() {
    let expected = crd_yaml().expect("the CRD serializes");
    let path = workspace().join(CRD_FILE);
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{CRD_FILE} is missing or stale; refresh it with:\n    {REFRESH}"
    );
}

#[test]
fn the_backup_crd_file_is_up_to_date() {
    let expected = walshard_k8s_api::backup::crd_yaml().expect("the CRD serializes");
    let path = workspace().join(BACKUP_CRD_FILE);
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{BACKUP_CRD_FILE} is missing or stale; refresh it with:\n    {BACKUP_REFRESH}"
    );
}

/// The backup examples (`examples/backup/`): databases with `spec.backup` or `spec.restore`
/// pass the three layers, and the `ShardedDatabaseBackup` passes its CRD's schema and CEL.
#[test]
fn the_backup_examples_are_valid_in_every_layer() {
    let layers = Layers::new();
    let dir = workspace().join("examples/backup");
    let mut databases = 0;
    let mut backups = 0;
    let backup_schema = backup_open_api_schema();
    let backup_strict =
        jsonschema::draft4::new(&with_object_meta(strict(&backup_schema))).expect("compiles");
    for entry in std::fs::read_dir(&dir).expect("examples/backup/") {
        let path = entry.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let doc: Json = serde_yaml_ng::from_str(&text).expect("YAML");
        match doc["kind"].as_str() {
            Some("ShardedDatabase") => {
                let v = layers.check(&text);
                assert!(
                    v.schema.is_empty() && v.cel.is_empty() && v.rust.is_ok(),
                    "{}: {v:?}",
                    path.display()
                );
                databases += 1;
            }
            Some("ShardedDatabaseBackup") => {
                let defaulted = apply_defaults(&backup_schema, &doc);
                let errors: Vec<String> = backup_strict
                    .iter_errors(&defaulted)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{}: {errors:?}", path.display());
                assert!(
                    Validator::new()
                        .validate(&backup_schema, &doc, None)
                        .is_ok(),
                    "{}",
                    path.display()
                );
                let parsed: ShardedDatabaseBackup = serde_json::from_value(doc).expect("parses");
                assert!(!parsed.spec.database.is_empty());
                backups += 1;
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
    assert!(
        databases >= 2 && backups >= 1,
        "{databases} databases, {backups} backups"
    );
}

/// The `ShardedDatabaseBackup` CRD's `openAPIV3Schema`.
fn backup_open_api_schema() -> Json {
    let crd = ShardedDatabaseBackup::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has an openAPIV3Schema");
    serde_json::to_value(schema).expect("serializes")
}

/// A root schema that also admits apiVersion, kind and metadata (not in a CRD's schema).
fn with_object_meta(mut root: Json) -> Json {
    if let Some(props) = root.get_mut("properties").and_then(Json::as_object_mut) {
        for name in ["apiVersion", "kind", "metadata"] {
            props.insert(name.to_owned(), json!({}));
        }
    }
    root
}

#[test]
fn the_backup_crd_is_structural_and_its_rule_compiles() {
    let schema = backup_open_api_schema();
    let mut problems = Vec::new();
    check_structural(&schema, "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    let mut found = Vec::new();
    collect_rules(&schema, "", &mut found);
    let rule = walshard_k8s_api::backup::SPEC_FIXED;
    assert_eq!(
        found
            .iter()
            .map(|(at, r, _)| (at.as_str(), r.as_str()))
            .collect::<Vec<_>>(),
        [(".spec", rule.rule)]
    );
    assert!(!kube::core::cel::compile_schema(&found[0].2).has_errors());
}

#[test]
fn every_example_is_valid_in_every_layer() {
    let layers = Layers::new();
    let mut seen = 0;
    let dir = workspace().join("examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("readable");
        let v = layers.check(&text);
        assert!(
            v.schema.is_empty(),
            "{}: schema: {:?}",
            path.display(),
            v.schema
        );
        assert!(v.cel.is_empty(), "{}: CEL: {:?}", path.display(), v.cel);
        assert!(v.rust.is_ok(), "{}: Rust: {:?}", path.display(), v.rust);
        seen += 1;
    }
    assert!(seen >= 3, "expected the examples, found {seen}");
}

/// Which layer refuses a bad document on Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refused {
    /// The OpenAPI schema.
    Schema,
    /// A CEL rule with this message; Rust says the same (most rules) or the second text (the
    /// table's rules, which `walshard_contract::Schema` enforces with its own words).
    Cel(&'static str, &'static str),
    /// Only the Rust validation (the reconciler reports it).
    RustOnly,
}

const GOOD_SPEC: &str = r#"
  schema: {columns: [Stud_id, Stud_name], dtypes: [Number, String]}
  shards: {count: 4, size: 100}
  replicasPerShard: 3
  servers: {count: 4}
"#;

fn doc(spec: &str) -> String {
    format!(
        "apiVersion: walshard.io/v1alpha1\nkind: ShardedDatabase\nmetadata: {{name: t}}\nspec:{spec}"
    )
}

/// `GOOD_SPEC` with one top-level field replaced.
fn with(field: &str, value: &str) -> String {
    let mut out = String::new();
    let mut replaced = false;
    for line in GOOD_SPEC.lines() {
        if line.trim_start().starts_with(&format!("{field}:")) {
            out.push_str(&format!("  {field}: {value}\n"));
            replaced = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&format!("  {field}: {value}\n"));
    }
    doc(&out)
}

#[test]
fn the_layers_agree_on_good_and_bad_specs() {
    use Refused::*;
    use walshard_k8s_api::spec::backup;
    use walshard_k8s_api::spec::rules::*;
    let list = |items: &str| format!("{{list: [{items}]}}");
    let cases: Vec<(String, Option<Refused>)> = vec![
        (doc(GOOD_SPEC), None),
        (with("shards", "{count: 2, size: 100, low: -100}"), None),
        (
            with(
                "shards",
                &list("{id: a, low: 0, size: 10}, {id: b, low: 10, size: 10}"),
            ),
            None,
        ),
        (with("engine", "{image: 'mariadb:11.4'}"), None),
        (with("pod", "{terminationGracePeriodSeconds: 120}"), None),
        (
            with("pod", "{terminationGracePeriodSeconds: 5}"),
            Some(Schema),
        ),
        (
            with(
                "storage",
                "{size: 1.5Ti, storageClassName: fast-ssd, retention: {whenDeleted: Delete}}",
            ),
            None,
        ),
        (
            with("credentials", "{mysqlSecretRef: {name: db-root, key: pw}}"),
            None,
        ),
        (
            with(
                "router",
                "{replicas: 3, serviceType: LoadBalancer, apiTokenSecretRef: {name: api}}",
            ),
            None,
        ),
        (
            with("durability", "{writeQuorum: all, walFsync: never}"),
            None,
        ),
        (
            with(
                "servers",
                "{placement: [{name: A, shards: [sh1, sh2, sh3, sh4]}, {name: b_2, shards: [sh1]}]}",
            ),
            None,
        ),
        // The user's form (count and size, count) with the router's layout beside it.
        (
            with(
                "layout",
                "{shards: [{id: sh1, low: 0, size: 100}, {id: sh5, low: 400, size: 100}], servers: [{name: Server0, shards: [sh1, sh5]}, {name: Server6, shards: [sh5]}], basis: 0123456789abcdef}",
            ),
            None,
        ),
        (
            with(
                "layout",
                "{shards: [{id: a, low: 0, size: 10}], servers: [{name: S0, shards: [a]}], basis: '01234567890123456789012345678901234567890123456789012345678901234'}",
            ),
            Some(Schema),
        ),
        (
            with("layout", "{shards: [], servers: [{name: S0}]}"),
            Some(Schema),
        ),
        (
            with("layout", "{shards: [{id: a, low: 0, size: 10}]}"),
            Some(Schema),
        ),
        (
            with(
                "layout",
                "{shards: [{id: a, low: 9223372036854775800, size: 10}], servers: [{name: S0, shards: [a]}]}",
            ),
            Some(Cel(
                LAYOUT_KEY_SPACE_FITS.message,
                LAYOUT_KEY_SPACE_FITS.message,
            )),
        ),
        (
            with(
                "layout",
                "{shards: [{id: a, low: 0, size: 10}, {id: b, low: 5, size: 10}], servers: [{name: S0, shards: [a, b]}]}",
            ),
            Some(Cel(
                LAYOUT_SHARDS_DISJOINT.message,
                LAYOUT_SHARDS_DISJOINT.message,
            )),
        ),
        (
            with(
                "layout",
                "{shards: [{id: a, low: 0, size: 10}], servers: [{name: S0, shards: [a]}, {name: s0, shards: [a]}]}",
            ),
            Some(Cel(
                LAYOUT_SERVER_NAMES_UNIQUE.message,
                LAYOUT_SERVER_NAMES_UNIQUE.message,
            )),
        ),
        (
            with(
                "layout",
                "{shards: [{id: a, low: 0, size: 10}, {id: a, low: 10, size: 10}], servers: [{name: S0, shards: [a]}]}",
            ),
            Some(Cel(
                LAYOUT_SHARD_IDS_UNIQUE.message,
                LAYOUT_SHARD_IDS_UNIQUE.message,
            )),
        ),
        (
            with(
                "layout",
                "{shards: [{id: a, low: 0, size: 10}], servers: [{name: S0, shards: [b]}]}",
            ),
            Some(RustOnly),
        ),
        // The schema.
        (with("replicasPerShard", "0"), Some(Schema)),
        (with("shards", "{count: 0, size: 10}"), Some(Schema)),
        (with("shards", "{count: 129, size: 10}"), Some(Schema)),
        (with("shards", "{count: 2, size: 0}"), Some(Schema)),
        (
            with("shards", &list("{id: 1a, low: 0, size: 10}")),
            Some(Schema),
        ),
        (
            with("shards", &list("{id: a, low: 0, size: -1}")),
            Some(Schema),
        ),
        (with("shards", "{list: []}"), Some(Schema)),
        (with("servers", "{count: 129}"), Some(Schema)),
        (
            with("servers", "{placement: [{name: 'x y', shards: [sh1]}]}"),
            Some(Schema),
        ),
        (
            with("schema", "{columns: [id, 'x`y'], dtypes: [Number, String]}"),
            Some(Schema),
        ),
        (
            with("schema", "{columns: [id], dtypes: [Blob]}"),
            Some(Schema),
        ),
        (with("schema", "{columns: [], dtypes: []}"), Some(Schema)),
        (with("engine", "{image: ''}"), Some(Schema)),
        (with("engine", "{image: x, flavor: postgres}"), Some(Schema)),
        (with("storage", "{size: 0Gi}"), Some(Schema)),
        (with("storage", "{size: 10GB}"), Some(Schema)),
        (
            with("storage", "{storageClassName: Fast_SSD}"),
            Some(Schema),
        ),
        (
            with("storage", "{retention: {whenDeleted: Keep}}"),
            Some(Schema),
        ),
        (with("router", "{replicas: 0}"), Some(Schema)),
        (with("router", "{serviceType: ExternalName}"), Some(Schema)),
        (
            with("router", "{serviceType: LoadBalancer}"),
            Some(Cel(
                ROUTER_TOKEN_EXPOSED.message,
                ROUTER_TOKEN_EXPOSED.message,
            )),
        ),
        (with("router", "{serviceType: NodePort}"), None),
        // spec.backup and spec.restore.
        (
            with(
                "backup",
                "{store: 's3://backups/shop/studt', s3: {endpoint: 'http://minio.minio:9000', region: us-east-1, credentialsSecretRef: {name: s3}}, schedule: '0 3 * * *', retention: {keepCount: 7, keepDays: 14}, archiveIntervalMs: 500}",
            ),
            None,
        ),
        (
            with(
                "backup",
                "{store: 'file:///var/backups/studt', schedule: '*/30 * * * * *'}",
            ),
            None,
        ),
        (
            with(
                "restore",
                "{store: 's3://backups/shop/old', toTime: '2026-12-07T10:00:00Z'}",
            ),
            None,
        ),
        (
            with(
                "restore",
                "{store: 'file:///var/backups/old', backupId: 20261207T030000123Z}",
            ),
            None,
        ),
        (
            doc(&format!(
                "{GOOD_SPEC}  backup: {{store: 's3://backups/new'}}\n  restore: {{store: 's3://backups/old/'}}\n"
            )),
            None,
        ),
        (with("backup", "{store: 'http://minio/x'}"), Some(Schema)),
        (with("backup", "{store: 's3://Backups/x'}"), Some(Schema)),
        (with("backup", "{store: 'file://relative'}"), Some(Schema)),
        (
            with("backup", "{store: 's3://backups', bucket: x}"),
            Some(Schema),
        ),
        (
            with("backup", "{store: 's3://backups', archiveIntervalMs: 10}"),
            Some(Schema),
        ),
        (
            with(
                "backup",
                "{store: 's3://backups', retention: {keepCount: 0}}",
            ),
            Some(Schema),
        ),
        (
            with(
                "backup",
                "{store: 's3://backups', s3: {endpoint: 'minio:9000'}}",
            ),
            Some(Schema),
        ),
        (
            with(
                "backup",
                "{store: 's3://backups', s3: {credentialsSecretRef: {name: S3_Creds}}}",
            ),
            Some(Schema),
        ),
        (
            with("restore", "{store: 's3://backups', backupId: '../x'}"),
            Some(Schema),
        ),
        (
            with("restore", "{store: 's3://backups', toTime: yesterday}"),
            Some(Schema),
        ),
        (
            with(
                "restore",
                "{store: 's3://backups', toTime: '2026-12-07 10:00:00'}",
            ),
            Some(Schema),
        ),
        (
            with(
                "restore",
                "{store: 's3://backups', backupId: 20261207T030000123Z, toTime: '2026-12-07T10:00:00Z'}",
            ),
            Some(Cel(
                backup::RESTORE_TARGET_FORM.message,
                backup::RESTORE_TARGET_FORM.message,
            )),
        ),
        (
            doc(&format!(
                "{GOOD_SPEC}  backup: {{store: 's3://backups/shop/studt/'}}\n  restore: {{store: 's3://backups/shop/studt'}}\n"
            )),
            Some(Cel(
                backup::BACKUP_STORE_DIFFERS.message,
                backup::BACKUP_STORE_DIFFERS.message,
            )),
        ),
        (
            with("backup", "{store: 's3://backups', schedule: 'at three'}"),
            Some(RustOnly),
        ),
        (
            with("credentials", "{clusterTokenSecretRef: {name: Token}}"),
            Some(Schema),
        ),
        (with("durability", "{writeQuorum: most}"), Some(Schema)),
        (with("colour", "blue"), Some(Schema)),
        (
            with("shards", "{count: 2, size: 10, width: 3}"),
            Some(Schema),
        ),
        // CEL.
        (
            with("replicasPerShard", "5"),
            Some(Cel(REPLICAS_FIT.message, REPLICAS_FIT.message)),
        ),
        (
            with("schema", "{columns: [id, v], dtypes: [Number]}"),
            Some(Cel(
                DTYPES_LENGTH.message,
                "schema has 2 columns but 1 dtypes",
            )),
        ),
        (
            with("schema", "{columns: [name], dtypes: [String]}"),
            Some(Cel(KEY_NUMBER.message, "must have dtype Number")),
        ),
        (
            with("schema", "{columns: [id, Id], dtypes: [Number, String]}"),
            Some(Cel(
                COLUMNS_UNIQUE.message,
                "appears twice (names are case-insensitive)",
            )),
        ),
        (
            with("shards", "{count: 2}"),
            Some(Cel(SHARDS_FORM.message, SHARDS_FORM.message)),
        ),
        (
            with(
                "shards",
                &format!(
                    "{{count: 1, size: 1, {}",
                    &list("{id: a, low: 0, size: 1}")[1..]
                ),
            ),
            Some(Cel(SHARDS_FORM.message, SHARDS_FORM.message)),
        ),
        (
            with("shards", "{count: 2, size: 4611686018427387904}"),
            Some(Cel(KEY_SPACE_FITS.message, KEY_SPACE_FITS.message)),
        ),
        (
            with("shards", "{count: 2, size: 100, low: 9223372036854775608}"),
            Some(Cel(KEY_SPACE_FITS.message, KEY_SPACE_FITS.message)),
        ),
        (
            with(
                "shards",
                &list("{id: a, low: 9223372036854775800, size: 8}"),
            ),
            Some(Cel(KEY_SPACE_FITS.message, KEY_SPACE_FITS.message)),
        ),
        (
            with(
                "shards",
                &list("{id: a, low: 0, size: 10}, {id: a, low: 10, size: 10}"),
            ),
            Some(Cel(SHARD_IDS_UNIQUE.message, SHARD_IDS_UNIQUE.message)),
        ),
        (
            with(
                "shards",
                &list("{id: a, low: 0, size: 11}, {id: b, low: 10, size: 10}"),
            ),
            Some(Cel(SHARDS_DISJOINT.message, SHARDS_DISJOINT.message)),
        ),
        (
            with(
                "shards",
                &list("{id: a, low: 0, size: 100}, {id: b, low: 10, size: 10}"),
            ),
            Some(Cel(SHARDS_DISJOINT.message, SHARDS_DISJOINT.message)),
        ),
        (
            with(
                "servers",
                "{count: 4, placement: [{name: a, shards: [sh1]}]}",
            ),
            Some(Cel(SERVERS_FORM.message, SERVERS_FORM.message)),
        ),
        (
            with("servers", "{}"),
            Some(Cel(SERVERS_FORM.message, SERVERS_FORM.message)),
        ),
        (
            with(
                "servers",
                "{placement: [{name: Server0, shards: [sh1, sh2, sh3, sh4]}, {name: server0, shards: [sh1]}]}",
            ),
            Some(Cel(
                SERVER_NAMES_UNIQUE.message,
                SERVER_NAMES_UNIQUE.message,
            )),
        ),
        (
            with(
                "servers",
                "{placement: [{name: a, shards: [sh1, sh2, sh3, sh4]}, {name: a, shards: [sh1]}]}",
            ),
            Some(Cel(
                SERVER_NAMES_UNIQUE.message,
                "server \"a\" is listed twice",
            )),
        ),
        // Rust only (list-type uniqueness is the API server's; references are the reconciler's).
        (
            with(
                "servers",
                "{placement: [{name: a, shards: [sh1, sh2, sh3, sh4, sh9]}]}",
            ),
            Some(RustOnly),
        ),
        (
            with(
                "servers",
                "{placement: [{name: a, shards: [sh1, sh2, sh3]}]}",
            ),
            Some(RustOnly),
        ),
        (
            with(
                "servers",
                "{placement: [{name: a, shards: [sh1, sh2, sh3, sh4, sh1]}]}",
            ),
            Some(RustOnly),
        ),
    ];
    let layers = Layers::new();
    for (yaml, refused) in cases {
        let v = layers.check(&yaml);
        let case = yaml.lines().skip(4).collect::<Vec<_>>().join(" | ");
        match refused {
            None => {
                assert!(
                    v.schema.is_empty() && v.cel.is_empty() && v.rust.is_ok(),
                    "{case}: {v:?}"
                )
            }
            Some(Schema) => {
                assert!(!v.schema.is_empty(), "{case}: the schema accepts it: {v:?}");
                assert!(v.rust.is_err(), "{case}: Rust accepts it: {v:?}");
            }
            Some(Cel(message, rust_message)) => {
                assert!(v.schema.is_empty(), "{case}: the schema refuses it: {v:?}");
                assert!(
                    v.cel.iter().any(|e| e.contains(message)),
                    "{case}: CEL should say {message:?}: {v:?}"
                );
                let rust = v.rust.as_ref().expect_err(&case);
                assert!(
                    rust.contains(rust_message),
                    "{case}: Rust should say {rust_message:?}: {rust}"
                );
            }
            Some(RustOnly) => {
                assert!(v.schema.is_empty() && v.cel.is_empty(), "{case}: {v:?}");
                assert!(v.rust.is_err(), "{case}: Rust accepts it");
            }
        }
    }
}

#[test]
fn every_cel_rule_is_in_the_crd_compiles_and_is_bounded() {
    let schema = open_api_schema();
    let mut found = Vec::new();
    collect_rules(&schema, "", &mut found);
    for cel in CEL_RULES.iter().chain(&TRANSITION_RULES) {
        let (at, node) = found
            .iter()
            .find(|(_, rule, _)| rule == cel.rule)
            .map(|(at, _, node)| (at.clone(), node.clone()))
            .unwrap_or_else(|| panic!("{:?} is not in the CRD", cel.rule));
        assert_eq!(format!(".{}", cel.at), at, "{}", cel.rule);
        let compiled = kube::core::cel::compile_schema(&node);
        assert!(
            !compiled.has_errors(),
            "{}: {:?}",
            cel.rule,
            compiled.compilation_errors()
        );
        let warnings: Vec<_> = analyze_rule(cel.rule, &compiled, ScopeContext::CrdValidation)
            .into_iter()
            .filter(|w| {
                // Not WrongScope: kube-cel reports comprehension variables as out of scope.
                matches!(
                    w.kind,
                    WarningKind::CostExceeded | WarningKind::MissingBounds
                )
            })
            .collect();
        assert!(warnings.is_empty(), "{}: {warnings:?}", cel.rule);
    }
    assert_eq!(
        found.len(),
        CEL_RULES.len() + TRANSITION_RULES.len(),
        "rules in the CRD: {found:?}"
    );
}

/// `(path, rule, schema node)` of every `x-kubernetes-validations` rule.
fn collect_rules(node: &Json, path: &str, out: &mut Vec<(String, String, Json)>) {
    for rule in node
        .get("x-kubernetes-validations")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let text = rule.get("rule").and_then(Json::as_str).unwrap_or_default();
        out.push((path.to_owned(), text.to_owned(), node.clone()));
    }
    for (name, child) in node
        .get("properties")
        .and_then(Json::as_object)
        .into_iter()
        .flatten()
    {
        collect_rules(child, &format!("{path}.{name}"), out);
    }
    if let Some(items) = node.get("items") {
        collect_rules(items, &format!("{path}[]"), out);
    }
}

#[test]
fn the_schema_is_structural() {
    let mut problems = Vec::new();
    check_structural(&open_api_schema(), "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The structural-schema rules the API server enforces on a CRD, as far as they can be seen
/// locally: a type on every node, no logical junctors or references, no `properties` together
/// with `additionalProperties`, list-map keys required, no `null` among enum values.
fn check_structural(node: &Json, path: &str, problems: &mut Vec<String>) {
    let has = |key: &str| node.get(key).is_some();
    let untyped_ok = node.get("x-kubernetes-int-or-string") == Some(&Json::Bool(true))
        || node.get("x-kubernetes-preserve-unknown-fields") == Some(&Json::Bool(true));
    if !has("type") && !untyped_ok {
        problems.push(format!("{path}: no type"));
    }
    for junctor in ["$ref", "oneOf", "anyOf", "allOf", "not"] {
        if has(junctor) {
            problems.push(format!("{path}: {junctor}"));
        }
    }
    if has("properties") && has("additionalProperties") {
        problems.push(format!("{path}: properties and additionalProperties"));
    }
    if let Some(values) = node.get("enum").and_then(Json::as_array)
        && values.iter().any(Json::is_null)
    {
        problems.push(format!("{path}: null among enum values"));
    }
    if let Some(keys) = node
        .get("x-kubernetes-list-map-keys")
        .and_then(Json::as_array)
    {
        let required = node
            .pointer("/items/required")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default();
        for key in keys {
            if !required.contains(key) {
                problems.push(format!("{path}: list-map key {key} is not required"));
            }
        }
    }
    for (name, child) in node
        .get("properties")
        .and_then(Json::as_object)
        .into_iter()
        .flatten()
    {
        check_structural(child, &format!("{path}.{name}"), problems);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = node.get(key).filter(|c| c.is_object()) {
            check_structural(child, &format!("{path}.{key}"), problems);
        }
    }
}
