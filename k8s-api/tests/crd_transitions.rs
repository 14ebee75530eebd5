//! The CRD's transition rules (`oldSelf`) on (old, new) pairs: kube's CEL engine, given the old
//! object as the API server gives it on update, and the Rust mirror
//! (`spec::transition::validate_transition`) refuse exactly the same changes, with the same
//! message. A create (no old object) never runs them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::{Value as Json, json};
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

/// The user's manifest, as kept in Git (and in kubectl's last-applied annotation).
const ORIGINAL: &str = "apiVersion: walshard.io/v1alpha1
kind: ShardedDatabase
metadata: {name: t}
spec:
  schema: {columns: [Stud_id, Stud_name], dtypes: [Number, String]}
  shards: {count: 4, size: 100}
  replicasPerShard: 3
  servers: {count: 3}
";

/// The router's `layout` after an `/add` of `sh5` on `Server3`.
fn layout() -> Json {
    serde_json::json!({
        "shards": [
            {"id": "sh1", "low": 0, "size": 100}, {"id": "sh2", "low": 100, "size": 100},
            {"id": "sh3", "low": 200, "size": 100}, {"id": "sh4", "low": 300, "size": 100},
            {"id": "sh5", "low": 400, "size": 100},
        ],
        "servers": [
            {"name": "Server0", "shards": ["sh1", "sh2", "sh3", "sh4"]},
            {"name": "Server1", "shards": ["sh1", "sh2", "sh3", "sh4"]},
            {"name": "Server2", "shards": ["sh1", "sh2", "sh3", "sh4"]},
            {"name": "Server3", "shards": ["sh5", "sh1"]},
        ],
    })
}

/// kubectl's client-side apply of `modified` (for a custom resource, a JSON merge patch from
/// `jsonmergepatch.CreateThreeWayJSONMergePatch`): what `modified` changes against `current`,
/// and null for what `original` (the last-applied annotation) had and `modified` dropped.
/// Fields in neither, such as the router's `layout`, are left out of the patch.
fn three_way(original: &Json, modified: &Json, current: &Json) -> Json {
    let mut patch = serde_json::Map::new();
    if let (Some(m), Some(c)) = (modified.as_object(), current.as_object()) {
        for (key, value) in m {
            match c.get(key) {
                Some(cur) if cur == value => {}
                Some(cur) if value.is_object() && cur.is_object() => {
                    let o = original.get(key).cloned().unwrap_or(Json::Null);
                    let nested = three_way(&o, value, cur);
                    if nested.as_object().is_some_and(|n| !n.is_empty()) {
                        patch.insert(key.clone(), nested);
                    }
                }
                _ => {
                    patch.insert(key.clone(), value.clone());
                }
            }
        }
        for key in original.as_object().into_iter().flat_map(|o| o.keys()) {
            if !m.contains_key(key) && c.contains_key(key) {
                patch.insert(key.clone(), Json::Null);
            }
        }
    }
    Json::Object(patch)
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Json, patch: &Json) {
    let Json::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Json::Object(serde_json::Map::new());
    }
    if let Json::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Json::Null), v);
            }
        }
    }
}

/// CEL (old → new, and new alone) and the Rust mirror and resolution of `new`.
fn refusals(old: &Json, new: &Json) -> Vec<String> {
    let schema = open_api_schema();
    let cel = Validator::new();
    let mut refused: Vec<String> = match cel.validate(&schema, new, Some(old)) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    };
    let text = serde_json::to_string(new).expect("serializes");
    let old_text = serde_json::to_string(old).expect("serializes");
    match (
        ShardedDatabase::from_yaml(&old_text),
        ShardedDatabase::from_yaml(&text),
    ) {
        (Ok(o), Ok(n)) => {
            if let Err(e) = validate_transition(&o.spec, &n.spec) {
                refused.push(format!("rust transition: {e}"));
            }
            if let Err(e) = n.spec.resolve() {
                refused.push(format!("rust: {e}"));
            }
        }
        (_, Err(e)) | (Err(e), _) => refused.push(format!("parse: {e}")),
    }
    refused
}

#[test]
fn the_routers_layout_survives_kubectl_apply_of_the_original() {
    let original: Json = serde_yaml_ng::from_str(ORIGINAL).expect("YAML");
    // The router's server-side apply adds `spec.layout` and nothing else.
    let mut live = original.clone();
    live["spec"]["layout"] = layout();
    assert_eq!(refusals(&original, &live), Vec::<String>::new(), "the /add");
    let db = ShardedDatabase::from_yaml(&live.to_string()).expect("parses");
    assert_eq!(db.spec.resolve().expect("resolves").placement.len(), 4);

    // `kubectl apply -f original.yaml` again: nothing to change, the layout stays.
    let patch = three_way(&original, &original, &live);
    assert_eq!(patch, serde_json::json!({}), "an empty patch");
    let mut reapplied = live.clone();
    merge(&mut reapplied, &patch);
    assert_eq!(refusals(&live, &reapplied), Vec::<String>::new());
    assert_eq!(reapplied["spec"]["layout"], layout(), "not undone");

    // A user edit of another field (the image) applies and keeps the layout.
    let mut edited = original.clone();
    edited["spec"]["engine"] = serde_json::json!({"image": "mysql:8.4.3"});
    let patch = three_way(&original, &edited, &live);
    assert!(patch["spec"].get("layout").is_none(), "{patch}");
    let mut after = live.clone();
    merge(&mut after, &patch);
    assert_eq!(refusals(&live, &after), Vec::<String>::new());
    assert_eq!(after["spec"]["layout"], layout());
    assert_eq!(after["spec"]["shards"], original["spec"]["shards"]);

    // Removing the layout (handing it back to the user's form) is a valid change too.
    let mut handed_back = after.clone();
    if let Some(spec) = handed_back["spec"].as_object_mut() {
        spec.remove("layout");
    }
    assert_eq!(refusals(&after, &handed_back), Vec::<String>::new());
}

#[test]
fn the_old_rewrite_of_the_users_form_was_refused_on_reapply() {
    // What the router did before `spec.layout`: the user's form rewritten into list/placement.
    let original: Json = serde_yaml_ng::from_str(ORIGINAL).expect("YAML");
    let mut live = original.clone();
    live["spec"]["shards"] = serde_json::json!({"list": layout()["shards"]});
    live["spec"]["servers"] = serde_json::json!({"placement": layout()["servers"]});
    let patch = three_way(&original, &original, &live);
    let mut reapplied = live.clone();
    merge(&mut reapplied, &patch);
    let refused = refusals(&live, &reapplied);
    assert!(
        refused
            .iter()
            .any(|e| e.contains(walshard_k8s_api::spec::rules::SHARDS_FORM.message)),
        "{refused:?}"
    );
}

/// A document with `restore` (a YAML flow mapping) when given.
fn with_restore(restore: Option<&str>) -> Json {
    let restore = restore.map_or_else(String::new, |r| format!("  restore: {r}\n"));
    let text = format!(
        "apiVersion: walshard.io/v1alpha1\nkind: ShardedDatabase\nmetadata: {{name: t}}\nspec:
  schema: {{columns: [Stud_id, Stud_name], dtypes: [Number, String]}}
  shards: {{count: 4, size: 100}}
  servers: {{count: 3}}
  backup: {{store: 's3://backups/new'}}
{restore}"
    );
    serde_yaml_ng::from_str(&text).expect("YAML")
}

#[test]
fn restore_is_set_at_creation_or_never() {
    use walshard_k8s_api::spec::backup::RESTORE_FIXED;
    let latest = "{store: 's3://backups/old'}";
    let at_ten = "{store: 's3://backups/old', toTime: '2026-12-07T10:00:00Z'}";
    let cases: Vec<(Option<&str>, Option<&str>, bool)> = vec![
        (None, None, true),
        (Some(latest), Some(latest), true),
        // Removing it once restored is allowed (the init containers go).
        (Some(at_ten), None, true),
        // Adding it to a running database, or changing it, is not.
        (None, Some(latest), false),
        (Some(latest), Some(at_ten), false),
        (
            Some(at_ten),
            Some("{store: 's3://backups/other', toTime: '2026-12-07T10:00:00Z'}"),
            false,
        ),
    ];
    for (old, new, allowed) in cases {
        let (old_doc, new_doc) = (with_restore(old), with_restore(new));
        let case = format!("{old:?} -> {new:?}");
        // On create, the rule does not run: a database may be created with any restore.
        assert_eq!(refusals_on_create(&new_doc), 0, "{case}: refused on create");
        let refused = refusals(&old_doc, &new_doc);
        if allowed {
            assert!(refused.is_empty(), "{case}: {refused:?}");
        } else {
            assert!(
                refused
                    .iter()
                    .filter(|e| e.contains(RESTORE_FIXED.message))
                    .count()
                    == 2,
                "{case}: CEL and Rust should both say {:?}: {refused:?}",
                RESTORE_FIXED.message
            );
        }
    }
}

/// What a create of `doc` is refused for (CEL without an old object, and Rust's resolve).
fn refusals_on_create(doc: &Json) -> usize {
    let cel = Validator::new()
        .validate(&open_api_schema(), doc, None)
        .err()
        .map_or(0, |e| e.len());
    let rust = ShardedDatabase::from_yaml(&doc.to_string())
        .map_or(1, |db| usize::from(db.spec.resolve().is_err()));
    cel + rust
}

#[test]
fn a_backup_requests_spec_is_immutable() {
    use walshard_k8s_api::backup::{SPEC_FIXED, ShardedDatabaseBackup};
    let crd = ShardedDatabaseBackup::crd();
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("a schema"),
    )
    .expect("serializes");
    let doc = |db: &str| {
        json!({"apiVersion": "walshard.io/v1alpha1", "kind": "ShardedDatabaseBackup",
               "metadata": {"name": "b"}, "spec": {"database": db}})
    };
    let cel = Validator::new();
    assert!(cel.validate(&schema, &doc("studt"), None).is_ok());
    assert!(
        cel.validate(&schema, &doc("studt"), Some(&doc("studt")))
            .is_ok()
    );
    let errors = cel
        .validate(&schema, &doc("other"), Some(&doc("studt")))
        .expect_err("the database cannot change");
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains(SPEC_FIXED.message)),
        "{errors:?}"
    );
}
