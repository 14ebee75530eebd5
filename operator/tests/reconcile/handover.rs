//! User switchovers by annotation (`walshard.io/switchover: "sh2=Server2"`): requested from the
//! control plane with an Event, the annotation removed once done or refused.

use super::*;
use kube::ResourceExt;

fn annotated(text: &str) -> ShardedDatabase {
    let mut db = database(spec(3, 2));
    db.annotations_mut()
        .insert("walshard.io/switchover".to_owned(), text.to_owned());
    db
}

async fn expect_annotation_removed(api: &mut ApiServer, db: &ShardedDatabase) {
    let e = api.expect("PATCH", DB_PATH).await;
    assert_eq!(
        e.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        e.body,
        json!({"metadata": {"annotations": {"walshard.io/switchover": null}}})
    );
    e.reply(200, serde_json::to_value(db).expect("serializes"));
}

#[tokio::test]
async fn a_switchover_annotation_is_carried_out_then_removed() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let db = annotated("sh2=Server2");
    let d = desired(&db);
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server0"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    let mut written = Json::Null;
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        apply_everything(api, &d, |_| true).await;
        let (type_, reason, _, note) = api.expect_event().await;
        assert_eq!((type_.as_str(), reason.as_str()), ("Normal", "Switchover"));
        assert!(note.contains("sh2=Server2"), "{note}");
        written = expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    assert_eq!(
        condition(&written, "Progressing"),
        pair("True", "SwitchingOver")
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    assert!(fleet.calls().contains(&Call::Switchover {
        name: NAME.to_owned(),
        shard: "sh2".to_owned(),
        to: "Server2".to_owned()
    }));

    // The control plane switched sh2 over: the annotation goes, with an Event.
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server0"), Phase::Healthy),
        ("sh2", Some("Server2"), Phase::Healthy),
    ])));
    let db2 = after(&db, &written);
    reconciled(&ctx, &db2, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        apply_everything(api, &d, |_| true).await;
        expect_annotation_removed(api, &db2).await;
        let (type_, reason, _, _) = api.expect_event().await;
        assert_eq!(
            (type_.as_str(), reason.as_str()),
            ("Normal", "SwitchedOver")
        );
        let written = expect_status(api, &db2).await;
        assert_eq!(
            condition(&written, "Progressing"),
            pair("False", "Reconciled")
        );
    })
    .await
    .expect("reconciles");
    api.assert_idle();
}

#[tokio::test]
async fn a_malformed_or_impossible_switchover_is_refused_with_a_warning() {
    for (text, says) in [
        ("sh2", "not shard=Server"),
        ("sh9=Server0", "unknown shard"),
    ] {
        let Harness {
            mut api,
            fleet,
            ctx,
        } = harness();
        let db = annotated(text);
        let d = desired(&db);
        fleet.set_topology(Some(healthy_topology(&[
            ("sh1", Some("Server0"), Phase::Healthy),
            ("sh2", Some("Server1"), Phase::Healthy),
        ])));
        reconciled(&ctx, &db, &mut api, async |api| {
            secret_exists(api).await;
            list_sets(api, existing_sets(&d, true)).await;
            apply_everything(api, &d, |_| true).await;
            expect_annotation_removed(api, &db).await;
            let (type_, reason, _, note) = api.expect_event().await;
            assert_eq!(
                (type_.as_str(), reason.as_str()),
                ("Warning", "SwitchoverRefused")
            );
            assert!(note.contains(says), "{note}");
            expect_status(api, &db).await;
        })
        .await
        .expect("reconciles");
        api.assert_idle();
    }
}

fn server_pod(server_index: u32, terminating: bool) -> Pod {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("studt-server{server_index}-0"), "namespace": NS,
            "labels": {
                "app.kubernetes.io/managed-by": "walshard-operator",
                "app.kubernetes.io/component": "server",
                "app.kubernetes.io/instance": NAME,
                "walshard.io/server": format!("Server{server_index}"),
            }
        }
    });
    if terminating {
        let deadline = Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(30);
        pod["metadata"]["deletionTimestamp"] = json!(deadline.to_string());
    }
    serde_json::from_value(pod).expect("a pod")
}

#[tokio::test]
async fn a_terminating_server_pod_hands_its_primaries_over_first() {
    use walshard_operator::k8s::reconcile::terminating::{
        hand_over_terminating, terminating_server,
    };
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server0"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    assert_eq!(terminating_server(&server_pod(0, false)), None);
    let pod = server_pod(0, true);
    assert_eq!(
        terminating_server(&pod),
        Some((NS.to_owned(), NAME.to_owned(), "Server0".to_owned()))
    );

    // A server that leads nothing: done at once, no Event.
    hand_over_terminating(&ctx, &server_pod(2, true)).await;
    api.assert_idle();

    let task = tokio::spawn({
        let ctx = ctx.clone();
        let pod = pod.clone();
        async move { hand_over_terminating(&ctx, &pod).await }
    });
    let (type_, reason, action, note) = api.expect_event().await;
    assert_eq!(
        (type_.as_str(), reason.as_str(), action.as_str()),
        ("Normal", "HandingOver", "HandOver")
    );
    assert!(
        note.contains("studt-server0-0") && note.contains("Server0"),
        "{note}"
    );
    // The watcher sees the pod again (any change): no second task.
    tokio::time::timeout(
        Duration::from_millis(100),
        hand_over_terminating(&ctx, &pod),
    )
    .await
    .expect("a pod already handled returns at once");
    // The control plane moves sh1 away: the handover ends.
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server1"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the handover ends once Server0 leads nothing")
        .expect("no panic");
    let handovers = fleet
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Handover { server, .. } if server == "Server0"))
        .count();
    assert!(handovers >= 2, "stepped until done: {:?}", fleet.calls());
    api.assert_idle();
}
