//! The CRD's transition rules (`oldSelf`) on (old, new) pairs: kube's CEL engine, given the old
//! object as the API server gives it on update, and the Rust mirror
//! (`spec::transition::validate_transition`) refuse exactly the same changes, with the same
//! message. A create (no old object) never runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::Value as Json;
use walshard_k8s_api::spec::ShardedDatabase;
use walshard_k8s_api::spec::transition::{
    FLAVOR_FIXED, SCHEMA_FIXED, STORAGE_CLASS_FIXED, STORAGE_GROWS, validate_transition,
};

fn open_api_schema() -> Json {
    let crd = ShardedDatabase::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has an openAPIV3Schema");
    serde_json::to_value(schema).expect("serializes")
}

/// A document whose spec has `storage`, `engine` and `schema` as given.
fn doc(storage: &str, engine: &str, columns: &str) -> String {
    format!(
        "apiVersion: walshard.io/v1alpha1\nkind: ShardedDatabase\nmetadata: {{name: t}}\nspec:
  engine: {engine}
  schema: {{columns: [{columns}], dtypes: [Number, String]}}
  shards: {{count: 4, size: 100}}
  servers: {{count: 3}}
  storage: {storage}
"
    )
}

#[test]
fn cel_and_rust_agree_on_old_new_pairs() {
    let plain = "{image: 'mysql:8.4'}";
    let cols = "Stud_id, Stud_name";
    let ten = "{size: 10Gi}";
    let cases: Vec<(String, String, Option<&str>)> = vec![
        (doc(ten, plain, cols), doc(ten, plain, cols), None),
        // storage.size only grows (quantities compare by value, not by text)
        (
            doc(ten, plain, cols),
            doc("{size: 20Gi}", plain, cols),
            None,
        ),
        (
            doc(ten, plain, cols),
            doc("{size: 10240Mi}", plain, cols),
            None,
        ),
        (doc(ten, plain, cols), doc("{size: 11G}", plain, cols), None),
        (
            doc(ten, plain, cols),
            doc("{size: 9Gi}", plain, cols),
            Some(STORAGE_GROWS.message),
        ),
        (
            doc(ten, plain, cols),
            doc("{size: 10G}", plain, cols),
            Some(STORAGE_GROWS.message),
        ),
        // storageClassName: may be set once, then fixed
        (
            doc(ten, plain, cols),
            doc("{size: 10Gi, storageClassName: fast}", plain, cols),
            None,
        ),
        (
            doc("{size: 10Gi, storageClassName: fast}", plain, cols),
            doc("{size: 20Gi, storageClassName: fast}", plain, cols),
            None,
        ),
        (
            doc("{size: 10Gi, storageClassName: fast}", plain, cols),
            doc("{size: 10Gi, storageClassName: slow}", plain, cols),
            Some(STORAGE_CLASS_FIXED.message),
        ),
        (
            doc("{size: 10Gi, storageClassName: fast}", plain, cols),
            doc(ten, plain, cols),
            Some(STORAGE_CLASS_FIXED.message),
        ),
        // engine.flavor: may be set once, then fixed; the image may change
        (
            doc(ten, plain, cols),
            doc(ten, "{image: 'mysql:8.4', flavor: mysql}", cols),
            None,
        ),
        (
            doc(ten, "{image: 'mysql:8.4', flavor: mysql}", cols),
            doc(ten, "{image: 'mysql:8.4.3', flavor: mysql}", cols),
            None,
        ),
        (
            doc(ten, "{image: 'mysql:8.4', flavor: mysql}", cols),
            doc(ten, "{image: 'mariadb:11.4', flavor: mariadb}", cols),
            Some(FLAVOR_FIXED.message),
        ),
        (
            doc(ten, "{image: 'mysql:8.4', flavor: mysql}", cols),
            doc(ten, "{image: 'mysql:8.4'}", cols),
            Some(FLAVOR_FIXED.message),
        ),
        // schema: fixed
        (
            doc(ten, plain, cols),
            doc(ten, plain, "Stud_id, Name"),
            Some(SCHEMA_FIXED.message),
        ),
    ];
    let schema = open_api_schema();
    let cel = Validator::new();
    for (old, new, refused) in cases {
        let old_doc: Json = serde_yaml_ng::from_str(&old).expect("YAML");
        let new_doc: Json = serde_yaml_ng::from_str(&new).expect("YAML");
        let case = format!("{} -> {}", old_doc["spec"], new_doc["spec"]);
        // On create, transition rules do not run.
        assert!(cel.validate(&schema, &new_doc, None).is_ok(), "{case}");
        let cel_errors: Vec<String> = match cel.validate(&schema, &new_doc, Some(&old_doc)) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        };
        let old_spec = ShardedDatabase::from_yaml(&old).expect("old parses").spec;
        let new_spec = ShardedDatabase::from_yaml(&new).expect("new parses").spec;
        let rust = validate_transition(&old_spec, &new_spec);
        match refused {
            None => {
                assert!(cel_errors.is_empty(), "{case}: CEL refuses: {cel_errors:?}");
                assert!(rust.is_ok(), "{case}: Rust refuses: {rust:?}");
            }
            Some(message) => {
                assert!(
                    cel_errors.iter().any(|e| e.contains(message)),
                    "{case}: CEL should say {message:?}: {cel_errors:?}"
                );
                let rust = rust.expect_err(&case).to_string();
                assert!(rust.contains(message), "{case}: Rust says {rust}");
            }
        }
    }
}
