use serde_json::Value as Json;
use walshard_contract::{Ident, OnDuplicate, Row};

use super::*;
use crate::layout::tests::{id, seed_layout};
use serde_json::json;

fn student(id: i64) -> Json {
    json!({"Stud_id": id, "Stud_name": "x", "Stud_marks": 1})
}

#[test]
fn init_accepts_the_seed_example_and_checks_n() {
    let body = json!({
        "N": 3,
        "schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]},
        "shards": [
            {"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096},
            {"Stud_id_low": 4096, "Shard_id": "sh2", "Shard_size": 4096},
            {"Stud_id_low": 8192, "Shard_id": "sh3", "Shard_size": 4096}
        ],
        "servers": {"Server0": ["sh1", "sh2"], "Server1": ["sh2", "sh3"], "Server2": ["sh1", "sh3"]}
    });
    let l = parse_init(&body).expect("valid");
    assert_eq!(l.placement.len(), 3);
    let mut wrong_n = body.clone();
    wrong_n["N"] = json!(4);
    assert!(
        matches!(parse_init(&wrong_n), Err(RequestError::Invalid(m)) if m.contains("N is 4 but 3"))
    );
    let mut overlap = body.clone();
    overlap["shards"][1]["Stud_id_low"] = json!(100);
    assert!(parse_init(&overlap).is_err());
    let mut unknown = body;
    unknown["servers"]["Server2"] = json!(["sh9"]);
    assert!(parse_init(&unknown).is_err());
}

#[test]
fn add_checks_n_names_and_shards() {
    let l = seed_layout();
    let body = json!({"n": 2, "new_shards": [{"Stud_id_low": 16384, "Shard_id": "sh5", "Shard_size": 4096}],
                      "servers": {"Server6": ["sh5", "sh1"], "Server7": ["sh5"]}});
    let (next, added) = parse_add(&l, &body).expect("valid");
    assert_eq!(next.placement.len(), 8);
    assert_eq!(next.shard_for(20000).map(|s| s.id.as_str()), Some("sh5"));
    assert_eq!(add_message(&added), "Add Server:6 and Server:7");
    let mut too_many = body.clone();
    too_many["n"] = json!(3);
    assert!(
        matches!(parse_add(&l, &too_many), Err(RequestError::Invalid(m)) if m.contains("only 2"))
    );
    let existing = json!({"n": 1, "servers": {"Server0": ["sh1"]}});
    assert!(matches!(
        parse_add(&l, &existing),
        Err(RequestError::Conflict(_))
    ));
    let unknown = json!({"n": 1, "servers": {"Server9": ["sh7"]}});
    assert!(parse_add(&l, &unknown).is_err());
}

#[test]
fn rm_removes_named_then_chooses_safely() {
    let l = seed_layout();
    let (next, removed) = parse_rm(&l, &json!({"n": 2, "servers": ["Server4"]})).expect("valid");
    assert_eq!(removed[0], id("Server4"));
    assert_eq!(removed.len(), 2);
    assert_eq!(next.placement.len(), 4);
    assert!(matches!(
        parse_rm(&l, &json!({"n": 1, "servers": ["Server4", "Server5"]})),
        Err(RequestError::Invalid(_))
    ));
    assert!(matches!(
        parse_rm(&l, &json!({"n": 1, "servers": ["Server9"]})),
        Err(RequestError::NotFound(_))
    ));
    assert!(parse_rm(&l, &json!({"n": 6})).is_err());
    // Removing every holder of sh1 is refused.
    let r = parse_rm(
        &l,
        &json!({"n": 3, "servers": ["Server0", "Server2", "Server4"]}),
    );
    assert!(matches!(r, Err(RequestError::Invalid(m)) if m.contains("sh1 without a replica")));
}

#[test]
fn writes_are_validated_whole_and_grouped() {
    let l = seed_layout();
    let plan = parse_write(
        &l,
        &json!({"data": [student(1), student(5000), student(2), student(9000)]}),
    )
    .expect("valid");
    let shape: Vec<(&str, Vec<i64>)> = plan
        .groups
        .iter()
        .map(|(s, rows)| (s.as_str(), rows.iter().map(Row::key).collect()))
        .collect();
    assert_eq!(
        shape,
        [
            ("sh1", vec![1, 2]),
            ("sh2", vec![5000]),
            ("sh3", vec![9000])
        ]
    );
    assert_eq!(plan.on_duplicate, OnDuplicate::Skip);
    assert!(
        matches!(parse_write(&l, &json!({"data": [student(1), student(99_999)]})), Err(RequestError::Invalid(m)) if m.contains("99999 outside every shard"))
    );
    assert!(
        matches!(parse_write(&l, &json!({"data": [student(3), student(3)]})), Err(RequestError::Conflict(m)) if m.contains("Stud_id: 3"))
    );
    // The seed's clients: keys as strings, marks as numbers; an empty batch.
    let seedish = parse_write(
        &l,
        &json!({"data": [{"Stud_id": "1", "Stud_name": "x", "Stud_marks": 27}], "on_duplicate": "error"}),
    )
    .expect("coerced");
    assert_eq!(seedish.on_duplicate, OnDuplicate::Error);
    assert!(parse_write(&l, &json!({"data": []})).is_ok_and(|p| p.groups.is_empty()));
    assert!(
        parse_write(
            &l,
            &json!({"data": [{"Stud_id": "1x", "Stud_name": "x", "Stud_marks": 1}]})
        )
        .is_err()
    );
}

#[test]
fn placeholder_server_names_are_generated() {
    let l = seed_layout();
    let body = json!({"n": 3, "new_shards": [],
                      "servers": {"Server$": ["sh1"], "Server[5]": ["sh2"], "Server[20]": ["sh3"]}});
    let (next, added) = parse_add(&l, &body).expect("valid");
    let names: Vec<&str> = added.iter().map(Ident::as_str).collect();
    // Server5 is taken in the seed layout: then one above the highest number in use.
    assert_eq!(names, ["Server20", "Server6", "Server7"]);
    assert_eq!(next.placement.len(), 9);
    let init = json!({
        "N": 2,
        "schema": {"columns": ["Stud_id", "Stud_name", "Stud_marks"], "dtypes": ["Number", "String", "String"]},
        "shards": [{"Stud_id_low": 0, "Shard_id": "sh1", "Shard_size": 4096}],
        "servers": {"Server[0]": ["sh1"], "Server$": ["sh1"]}
    });
    let a = parse_init(&init).expect("valid");
    assert_eq!(parse_init(&init).expect("again"), a, "deterministic");
    let names: Vec<&str> = a.placement.keys().map(Ident::as_str).collect();
    assert_eq!(names, ["Server0", "Server1"]);
    let bad = json!({"n": 1, "servers": {"Bad-Name$": ["sh1"]}});
    assert!(parse_add(&l, &bad).is_err());
}

#[test]
fn reads_updates_and_deletes() {
    let l = seed_layout();
    let (r, c) = parse_read(&l, &json!({"Stud_id": {"low": 1000, "high": 8889}})).expect("valid");
    assert_eq!((r.low, r.high, c), (1000, 8889, Consistency::Session));
    let (_, c) = parse_read(
        &l,
        &json!({"Stud_id": {"low": 1, "high": 2}, "consistency": "strong"}),
    )
    .expect("valid");
    assert_eq!(c, Consistency::Strong);
    let (r, _) =
        parse_read(&l, &json!({"Stud_id": {"low": "2", "high": 1.0}})).expect("empty range");
    assert!(r.is_empty());
    assert!(
        parse_read(
            &l,
            &json!({"Stud_id": {"low": 1, "high": 2}, "consistency": "sometimes"})
        )
        .is_err()
    );
    let (shard, key, _) =
        parse_update(&l, &json!({"Stud_id": 2255, "data": student(2255)})).expect("valid");
    assert_eq!((shard.as_str(), key), ("sh1", 2255));
    assert!(parse_update(&l, &json!({"Stud_id": 2255, "data": student(2256)})).is_err());
    let (_, key, patch) = parse_update(&l, &json!({"Stud_id": "1102", "data": {"Stud_marks": 30}}))
        .expect("the seed's screenshot: a string key, a partial row");
    assert_eq!((key, patch.cells.len()), (1102, 1));
    assert_eq!(
        parse_delete(&l, &json!({"Stud_id": 4096})).map(|(s, k)| (s.to_string(), k)),
        Ok(("sh2".into(), 4096))
    );
    assert_eq!(
        parse_delete(&l, &json!({"Stud_id": "4096"})).map(|(_, k)| k),
        Ok(4096)
    );
    assert!(parse_delete(&l, &json!({"Stud_id": -5})).is_err());
}
