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
