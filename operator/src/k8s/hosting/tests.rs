use std::collections::BTreeMap;

use serde_json::json;

use super::plan::{self, Desired, Settled};
use super::status;
use super::*;
use walshard_contract::{Phase, ReplicaInfo, ShardInfo};
use walshard_contract::{Quorum, ServerInfo};
use walshard_control_plane::fleet_ops::Handover;

const SEED_DEFAULT: &str = include_str!("../../../../examples/seed-default.yaml");

fn test_url(db: &str, namespace: &str, server: &str) -> String {
    format!("http://{server}.{db}.{namespace}:5001")
}

fn database(yaml: &str) -> ShardedDatabase {
    let mut db = ShardedDatabase::from_yaml(yaml).expect("parses");
    db.metadata.namespace = Some("ns".to_owned());
    db
}

fn two_shards(placement: &[(&str, &[&str])]) -> ShardedDatabase {
    let list: Vec<String> = placement
        .iter()
        .map(|(server, shards)| format!("{{name: {server}, shards: [{}]}}", shards.join(", ")))
        .collect();
    database(&format!(
        "apiVersion: walshard.io/v1alpha1\nkind: ShardedDatabase\nmetadata: {{name: db}}\nspec:\n  \
         schema: {{columns: [Stud_id, Stud_name], dtypes: [Number, String]}}\n  \
         shards: {{list: [{{id: sh1, low: 0, size: 100}}, {{id: sh2, low: 100, size: 100}}]}}\n  \
         servers: {{placement: [{}]}}\n",
        list.join(", ")
    ))
}

fn desired_of(db: &ShardedDatabase) -> Desired {
    plan::desired(db, &test_url).expect("resolves")
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn replica(server: &str, reachable: bool, lsn: u64) -> ReplicaInfo {
    ReplicaInfo {
        server: server.to_owned(),
        reachable,
        suspected: !reachable,
        role: None,
        epoch: Some(2),
        last_epoch: Some(2),
        last_lsn: Some(lsn),
        commit_lsn: None,
        applied_lsn: None,
        halted: false,
        lag: None,
    }
}

/// A healthy shard on `replicas` (all reachable, LSNs by position: later ones further ahead).
fn shard_info(id: &str, primary: Option<&str>, replicas: &[&str]) -> ShardInfo {
    ShardInfo {
        shard: id.to_owned(),
        state: if primary.is_some() {
            Phase::Healthy
        } else {
            Phase::Electing
        },
        reason: None,
        primary: primary.map(str::to_owned),
        epoch: 2,
        quorum_reachable: true,
        replicas: replicas
            .iter()
            .zip(10..)
            .map(|(s, lsn)| replica(s, true, lsn))
            .collect(),
        reconfiguring: false,
    }
}

fn topology(shards: Vec<ShardInfo>) -> Topology {
    let mut t = Topology::default();
    for info in shards {
        for r in &info.replicas {
            t.servers.insert(
                r.server.clone(),
                ServerInfo {
                    url: String::new(),
                    reachable: true,
                    suspected: false,
                    disk_full: false,
                },
            );
        }
        t.shards.insert(info.shard.clone(), info);
    }
    t
}

fn record(sets: &[(&str, &[&str])]) -> Settled {
    sets.iter()
        .map(|(shard, set)| ((*shard).to_owned(), names(set)))
        .collect()
}

#[test]
fn the_desired_spec_addresses_every_server_through_the_url_function() {
    let db = database(SEED_DEFAULT);
    let d = desired_of(&db);
    assert_eq!((d.namespace.as_str(), d.name.as_str()), ("ns", "studt"));
    assert_eq!(d.spec.servers.len(), 6);
    assert_eq!(
        d.spec.servers["Server3"],
        "http://Server3.studt.ns:5001".to_owned()
    );
    assert_eq!(d.spec.shards.len(), 4);
    assert!(d.spec.shards.values().all(|set| set.len() == 3));
    assert_eq!(d.spec.write_quorum, Quorum::Majority);
    // The default is the headless Service's name.
    let real = plan::desired(&db, &walshard_k8s_api::names::agent_url).expect("resolves");
    assert_eq!(
        real.spec.servers["Server0"],
        "http://studt-server0-0.studt-servers.ns.svc:5001"
    );

    let mut no_ns = db.clone();
    no_ns.metadata.namespace = None;
    assert!(matches!(
        plan::desired(&no_ns, &test_url),
        Err(HostingError::NoNamespace)
    ));
    let mut bad = db;
    bad.spec.replicas_per_shard = 9;
    assert!(matches!(
        plan::desired(&bad, &test_url),
        Err(HostingError::Spec(_))
    ));
}

#[test]
fn a_shard_whose_primary_leaves_keeps_its_set_until_the_primary_moved() {
    let before = desired_of(&two_shards(&[
        ("S0", &["sh1", "sh2"]),
        ("S1", &["sh1", "sh2"]),
        ("S2", &["sh1", "sh2"]),
    ]));
    let after = desired_of(&two_shards(&[
        ("S1", &["sh1", "sh2"]),
        ("S2", &["sh1", "sh2"]),
    ]));
    let applied = before.spec.clone();
    let t = topology(vec![
        shard_info("sh1", Some("S0"), &["S0", "S1", "S2"]),
        shard_info("sh2", Some("S1"), &["S0", "S1", "S2"]),
    ]);
    let (next, handovers) = plan::next_spec(&after.spec, &applied, &t);
    assert_eq!(next.shards["sh1"], names(&["S0", "S1", "S2"]), "held");
    assert_eq!(next.shards["sh2"], names(&["S1", "S2"]), "not S0's primary");
    assert_eq!(
        next.servers.get("S0"),
        applied.servers.get("S0"),
        "the leaving server keeps its URL while a set names it"
    );
    assert!(next.validate().is_ok());
    assert_eq!(
        handovers,
        vec![Handover {
            shard: "sh1".to_owned(),
            from: "S0".to_owned(),
            to: Some("S2".to_owned()),
        }],
        "to the most up-to-date staying replica"
    );

    // The primary moved: the change follows and S0 leaves the spec.
    let t = topology(vec![
        shard_info("sh1", Some("S2"), &["S0", "S1", "S2"]),
        shard_info("sh2", Some("S1"), &["S1", "S2"]),
    ]);
    let (next, handovers) = plan::next_spec(&after.spec, &next, &t);
    assert_eq!(next, after.spec);
    assert!(handovers.is_empty());
}

#[test]
fn a_changing_shard_keeps_its_set_and_the_others_change() {
    let applied = desired_of(&two_shards(&[("S0", &["sh1", "sh2"]), ("S1", &["sh1"])])).spec;
    let desired = desired_of(&two_shards(&[
        ("S0", &["sh1", "sh2"]),
        ("S2", &["sh1", "sh2"]),
    ]))
    .spec;
    let mut sh1 = shard_info("sh1", Some("S0"), &["S0", "S1"]);
    sh1.reconfiguring = true;
    let t = topology(vec![sh1, shard_info("sh2", Some("S0"), &["S0"])]);
    let (next, handovers) = plan::next_spec(&desired, &applied, &t);
    assert_eq!(next.shards["sh1"], names(&["S0", "S1"]));
    assert_eq!(next.shards["sh2"], names(&["S0", "S2"]));
    assert!(handovers.is_empty());
    assert!(next.servers.contains_key("S1") && next.validate().is_ok());
}

#[test]
fn without_a_reachable_staying_replica_the_change_is_not_held() {
    // Every replica replaced: the joint election (a bridge) moves the primary instead.
    let applied = desired_of(&two_shards(&[
        ("S0", &["sh1", "sh2"]),
        ("S1", &["sh1", "sh2"]),
    ]))
    .spec;
    let desired = desired_of(&two_shards(&[
        ("S2", &["sh1", "sh2"]),
        ("S3", &["sh1", "sh2"]),
    ]))
    .spec;
    let t = topology(vec![
        shard_info("sh1", Some("S0"), &["S0", "S1"]),
        shard_info("sh2", Some("S1"), &["S0", "S1"]),
    ]);
    let (next, handovers) = plan::next_spec(&desired, &applied, &t);
    assert_eq!(next, desired);
    assert!(handovers.is_empty());
}

#[test]
fn a_server_joins_a_set_only_once_its_agent_holds_the_shard() {
    let applied = desired_of(&two_shards(&[
        ("S0", &["sh1", "sh2"]),
        ("S1", &["sh1", "sh2"]),
    ]))
    .spec;
    let mut grown = two_shards(&[
        ("S0", &["sh1", "sh2"]),
        ("S1", &["sh1", "sh2"]),
        ("S2", &["sh1", "sh3"]),
    ]);
    grown.spec.shards.list = grown.spec.shards.list.map(|mut l| {
        l.push(walshard_contract::ShardSpec {
            id: walshard_contract::Ident::new("sh3").expect("ident"),
            low: 200,
            size: 100,
        });
        l
    });
    let desired = desired_of(&grown).spec;
    let pairs: Vec<(String, String)> = plan::newcomers(&applied, &desired).into_iter().collect();
    assert_eq!(
        pairs,
        [("S2", "sh1"), ("S2", "sh3")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .to_vec()
    );
    let none = plan::gate(&desired, &applied, &desired, |_, _| false);
    assert_eq!(none.shards, applied.shards, "sh1 keeps its set, sh3 waits");
    let some = plan::gate(&desired, &applied, &desired, |_, shard| shard == "sh1");
    assert_eq!(some.shards["sh1"], names(&["S0", "S1", "S2"]));
    assert!(!some.shards.contains_key("sh3"));
    assert_eq!(
        plan::gate(&desired, &applied, &desired, |_, _| true),
        desired
    );
}

#[test]
fn the_record_keeps_the_previous_set_while_a_change_is_under_way() {
    let applied = desired_of(&two_shards(&[
        ("S0", &["sh1", "sh2"]),
        ("S2", &["sh1", "sh2"]),
    ]))
    .spec;
    let previous = record(&[("sh1", &["S0", "S1"]), ("sh2", &["S0", "S1"])]);
    let mut sh1 = shard_info("sh1", Some("S0"), &["S0", "S2"]);
    sh1.reconfiguring = true;
    let t = topology(vec![sh1, shard_info("sh2", Some("S0"), &["S0", "S2"])]);
    assert_eq!(
        plan::settled(&applied, &t, Some(&previous)),
        record(&[("sh1", &["S0", "S1"]), ("sh2", &["S0", "S2"])])
    );
    assert_eq!(
        plan::settled(&applied, &t, None),
        applied.shards,
        "nothing better is known"
    );
}

#[test]
fn a_restart_starts_from_the_record() {
    let d = desired_of(&two_shards(&[
        ("S0", &["sh1", "sh2"]),
        ("S2", &["sh1", "sh2"]),
    ]));
    let rec = record(&[("sh1", &["S0", "S1"]), ("sh9", &["S5"])]);
    let spec = plan::initial_spec(&d, Some(&rec), &test_url);
    assert_eq!(
        spec.shards["sh1"],
        names(&["S0", "S1"]),
        "C_old of a change"
    );
    assert_eq!(spec.shards["sh2"], names(&["S0", "S2"]));
    assert!(
        !spec.shards.contains_key("sh9"),
        "removed shards stay removed"
    );
    assert_eq!(spec.servers["S1"], "http://S1.db.ns:5001");
    assert!(spec.validate().is_ok());
    assert_eq!(plan::initial_spec(&d, None, &test_url), d.spec);

    let parsed = plan::parse_settled(r#"{"sh1": ["S0", "S1"]}"#).expect("parses");
    assert_eq!(parsed, record(&[("sh1", &["S0", "S1"])]));
    assert!(matches!(
        plan::parse_settled("[1]"),
        Err(HostingError::Record(_))
    ));
}

#[test]
fn a_server_is_drained_when_no_set_no_change_and_no_record_names_it() {
    let desired = desired_of(&two_shards(&[
        ("S1", &["sh1", "sh2"]),
        ("S2", &["sh1", "sh2"]),
    ]))
    .spec;
    let gone = record(&[("sh1", &["S1", "S2"]), ("sh2", &["S1", "S2"])]);
    let settled_t = topology(vec![
        shard_info("sh1", Some("S1"), &["S1", "S2"]),
        shard_info("sh2", Some("S2"), &["S1", "S2"]),
    ]);
    assert!(plan::drained("S0", &desired, &settled_t, Some(&gone)));
    assert!(plan::drained("S0", &desired, &settled_t, None));

    let stale = record(&[("sh1", &["S0", "S1", "S2"]), ("sh2", &["S1", "S2"])]);
    assert!(
        !plan::drained("S0", &desired, &settled_t, Some(&stale)),
        "a restart would still need S0"
    );
    let mut changing = settled_t.clone();
    if let Some(i) = changing.shards.get_mut("sh2") {
        i.reconfiguring = true;
    }
    assert!(!plan::drained("S0", &desired, &changing, Some(&gone)));
    let mut held = desired.clone();
    held.shards
        .insert("sh1".to_owned(), names(&["S0", "S1", "S2"]));
    assert!(!plan::drained("S0", &held, &settled_t, Some(&gone)));
    let still = topology(vec![shard_info("sh1", Some("S1"), &["S0", "S1", "S2"])]);
    assert!(!plan::drained("S0", &desired, &still, Some(&gone)));
}

#[test]
fn draining_moves_only_the_servers_primaries() {
    let desired = desired_of(&two_shards(&[
        ("S1", &["sh1", "sh2"]),
        ("S2", &["sh1", "sh2"]),
    ]))
    .spec;
    let mut sh2 = shard_info("sh2", Some("S0"), &["S0", "S1", "S2"]);
    sh2.replicas[2].reachable = false;
    let t = topology(vec![
        shard_info("sh1", Some("S1"), &["S0", "S1", "S2"]),
        sh2,
    ]);
    assert_eq!(
        plan::drain_handovers("S0", &desired, &t),
        vec![Handover {
            shard: "sh2".to_owned(),
            from: "S0".to_owned(),
            to: Some("S1".to_owned()),
        }],
        "S2 is ahead but unreachable"
    );
    assert!(plan::drain_handovers("S2", &desired, &t).is_empty());
}

#[test]
fn unconfigured_servers_answer_but_lack_a_shard() {
    let mut sh1 = shard_info("sh1", Some("S0"), &["S0", "S1", "S2"]);
    sh1.replicas[1].reachable = false;
    sh1.replicas[2].reachable = false;
    let mut t = topology(vec![sh1]);
    if let Some(s) = t.servers.get_mut("S2") {
        s.reachable = false;
    }
    let found: Vec<String> = plan::unconfigured(&t).into_iter().collect();
    assert_eq!(found, names(&["S1"]), "S2 does not answer at all");

    let held = plan::held_by(
        "S1",
        [
            &record(&[("sh1", &["S0", "S1"]), ("sh2", &["S0"])]),
            &record(&[("sh3", &["S1"])]),
        ],
    );
    assert_eq!(held.into_iter().collect::<Vec<_>>(), names(&["sh1", "sh3"]));
}

#[test]
fn the_status_lists_every_shard_in_layout_order() {
    let d = desired_of(&database(SEED_DEFAULT));
    let mut sh2 = shard_info("sh2", Some("Server1"), &["Server1", "Server2", "Server3"]);
    sh2.replicas[2].reachable = false;
    sh2.epoch = 7;
    let t = topology(vec![
        shard_info("sh1", None, &["Server0", "Server1", "Server2"]),
        sh2,
    ]);
    let summaries = status::shard_summaries(&t, &d.layout);
    let ids: Vec<&str> = summaries.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["sh1", "sh2", "sh3", "sh4"]);
    assert_eq!(summaries[0].primary, None);
    assert_eq!(summaries[1].primary.as_deref(), Some("Server1"));
    assert_eq!((summaries[1].epoch, summaries[1].ready_replicas), (7, 2));
    assert_eq!(summaries[1].replicas, 3);
    assert_eq!(
        (
            summaries[3].epoch,
            summaries[3].ready_replicas,
            summaries[3].replicas
        ),
        (0, 0, 3),
        "not reported yet: the desired set's size"
    );

    let patch = status::status_patch(&t, &d.layout);
    assert_eq!(patch["apiVersion"], "walshard.io/v1alpha1");
    assert_eq!(patch["kind"], "ShardedDatabase");
    let fields: Vec<&String> = patch["status"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        fields,
        ["shardCount", "primaries", "shards"],
        "only the control plane's fields"
    );
    assert_eq!(patch["status"]["shardCount"], 4);
    assert_eq!(patch["status"]["primaries"], "1/4");
    assert_eq!(
        patch["status"]["shards"][1],
        json!({"id": "sh2", "primary": "Server1", "epoch": 7, "readyReplicas": 2, "replicas": 3})
    );
    assert_eq!(
        patch["status"]["shards"][0],
        json!({"id": "sh1", "epoch": 2, "readyReplicas": 3, "replicas": 3})
    );
}

#[test]
fn the_settled_annotation_is_read_from_the_object() {
    let mut db = database(SEED_DEFAULT);
    assert!(matches!(settled_annotation(&db), Ok(None)));
    db.metadata.annotations = Some(BTreeMap::from([(
        SETTLED_ANNOTATION.to_owned(),
        r#"{"sh1": ["Server0"]}"#.to_owned(),
    )]));
    assert_eq!(
        settled_annotation(&db).expect("parses"),
        Some(record(&[("sh1", &["Server0"])]))
    );
    db.metadata.annotations = Some(BTreeMap::from([(
        SETTLED_ANNOTATION.to_owned(),
        "nope".to_owned(),
    )]));
    assert!(matches!(
        settled_annotation(&db),
        Err(HostingError::Record(_))
    ));
}
