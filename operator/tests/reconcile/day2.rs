//! Day-2 spec changes: an apply the API server refuses degrades the database with a Warning
//! Event while everything else still runs; a larger `storage.size` resizes the claims and
//! recreates the StatefulSets with orphan propagation (pods kept); a refused expansion degrades
//! and deletes nothing.

use super::*;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

fn refusal(code: u16, reason: &str, message: &str) -> Json {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "reason": reason, "code": code, "message": message})
}

fn ready_topology(fleet: &FakeFleet) {
    fleet.set_topology(Some(healthy_topology(&[
        ("sh1", Some("Server0"), Phase::Healthy),
        ("sh2", Some("Server1"), Phase::Healthy),
    ])));
}

#[tokio::test]
async fn a_refused_apply_degrades_with_an_event_while_the_rest_still_runs() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let db = database(spec(3, 2));
    let d = desired(&db);
    ready_topology(&fleet);
    let refused = d.stateful_sets[1].name_any();
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&d, true)).await;
        for (path, body) in applies(api, &d) {
            let e = api.expect_apply(&path).await;
            if path.ends_with(&format!("/statefulsets/{refused}")) {
                e.reply(
                    422,
                    refusal(
                        422,
                        "Invalid",
                        "StatefulSet.apps is invalid: spec: Forbidden",
                    ),
                );
            } else {
                e.reply(200, with_status(body.clone(), true));
            }
        }
        let (type_, reason, _, note) = api.expect_event().await;
        assert_eq!(
            (type_.as_str(), reason.as_str()),
            ("Warning", "ApplyFailed")
        );
        assert!(
            note.contains(&refused) && note.contains("Forbidden"),
            "{note}"
        );
        let written = expect_status(api, &db).await;
        assert_eq!(condition(&written, "Degraded"), pair("True", "ApplyFailed"));
        // The refused server is still observed through its live StatefulSet.
        assert_eq!(condition(&written, "Ready"), pair("True", "AllReady"));
        assert_eq!(written["serversReady"], 3);
        assert_eq!(written["servers"], 3);
    })
    .await
    .expect("a refused apply is not a reconcile error");
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    assert!(
        matches!(&fleet.calls()[..], [Call::Ensure { .. }]),
        "the control plane is still ensured: {:?}",
        fleet.calls()
    );
    api.assert_idle();
}

fn with_storage(size: &str) -> ShardedDatabase {
    let mut s = spec(3, 2);
    s.storage.size = size.to_owned();
    database(s)
}

#[tokio::test]
async fn a_larger_storage_size_resizes_the_claims_and_recreates_the_statefulsets() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let old = desired(&with_storage("10Gi"));
    let db = with_storage("20Gi");
    let d = desired(&db);
    ready_topology(&fleet);
    let action = reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&old, true)).await;
        for (path, body) in applies(api, &d) {
            if let Some(set) = path.split("/statefulsets/").nth(1) {
                let claim = format!("data-{set}-0");
                let e = api
                    .expect("PATCH", &api.path_of::<PersistentVolumeClaim>(&claim))
                    .await;
                assert_eq!(
                    e.content_type.as_deref(),
                    Some("application/merge-patch+json")
                );
                assert_eq!(e.body["spec"]["resources"]["requests"]["storage"], "20Gi");
                e.reply(
                    200,
                    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                     "metadata": {"name": claim}}),
                );
                let e = api.expect("DELETE", &path).await;
                assert_eq!(
                    e.body["propagationPolicy"], "Orphan",
                    "pods and claims stay"
                );
                assert_eq!(e.body["preconditions"]["uid"], format!("uid-{set}"));
                e.reply(200, status(200, "Success"));
                continue;
            }
            let e = api.expect_apply(&path).await;
            e.reply(200, with_status(body.clone(), true));
        }
        let (type_, reason, _, note) = api.expect_event().await;
        assert_eq!(
            (type_.as_str(), reason.as_str()),
            ("Normal", "ExpandingVolumes")
        );
        assert!(note.contains("10Gi -> 20Gi"), "{note}");
        let written = expect_status(api, &db).await;
        assert_eq!(
            condition(&written, "Progressing"),
            pair("True", "ExpandingVolumes")
        );
        assert_eq!(condition(&written, "Degraded"), pair("False", "AsExpected"));
    })
    .await
    .expect("reconciles");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));

    // Next pass: the StatefulSets are still being deleted (orphan finalizer): nothing is
    // patched or applied for them, nothing restarted.
    let terminating: Vec<Json> = existing_sets(&old, true)
        .into_iter()
        .map(|mut s| {
            s["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            s
        })
        .collect();
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, terminating).await;
        for (path, body) in applies(api, &d) {
            if !path.contains("/statefulsets/") {
                api.expect_apply(&path)
                    .await
                    .reply(200, with_status(body.clone(), true));
            }
        }
        let written = expect_status(api, &db).await;
        assert_eq!(
            condition(&written, "Progressing"),
            pair("True", "ExpandingVolumes")
        );
    })
    .await
    .expect("reconciles");

    // Then they are gone: applied again with the new claim template (they adopt the pods).
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, Vec::new()).await;
        let paths = apply_everything(api, &d, |_| true).await;
        assert_eq!(
            paths
                .iter()
                .filter(|p| p.contains("/statefulsets/"))
                .count(),
            3
        );
        let (_, reason, _, _) = api.expect_event().await;
        assert_eq!(reason, "Created");
        let written = expect_status(api, &db).await;
        assert_eq!(
            condition(&written, "Progressing"),
            pair("False", "Reconciled")
        );
    })
    .await
    .expect("reconciles");
    let claim = d.stateful_sets[0]
        .spec
        .volume_claim_templates
        .as_ref()
        .map(|t| serde_json::to_value(&t[0]).expect("serializes"));
    assert_eq!(
        claim.expect("a claim template")["spec"]["resources"]["requests"]["storage"],
        "20Gi"
    );
    api.assert_idle();
}

#[tokio::test]
async fn a_refused_volume_expansion_degrades_and_deletes_nothing() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let old = desired(&with_storage("10Gi"));
    let db = with_storage("20Gi");
    let d = desired(&db);
    ready_topology(&fleet);
    reconciled(&ctx, &db, &mut api, async |api| {
        secret_exists(api).await;
        list_sets(api, existing_sets(&old, true)).await;
        for (path, body) in applies(api, &d) {
            if let Some(set) = path.split("/statefulsets/").nth(1) {
                let claim = format!("data-{set}-0");
                api.expect("PATCH", &api.path_of::<PersistentVolumeClaim>(&claim))
                    .await
                    .reply(
                        403,
                        refusal(
                            403,
                            "Forbidden",
                            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
                        ),
                    );
                continue;
            }
            api.expect_apply(&path)
                .await
                .reply(200, with_status(body.clone(), true));
        }
        let (type_, reason, _, note) = api.expect_event().await;
        assert_eq!((type_.as_str(), reason.as_str()), ("Warning", "ApplyFailed"));
        assert!(note.contains("must support resize"), "{note}");
        let written = expect_status(api, &db).await;
        assert_eq!(condition(&written, "Degraded"), pair("True", "ApplyFailed"));
        assert_eq!(condition(&written, "Ready"), pair("True", "AllReady"));
    })
    .await
    .expect("reconciles");
    api.assert_idle();
}

#[tokio::test]
async fn a_credentials_secret_from_an_older_operator_gets_only_the_missing_key() {
    let Harness {
        mut api,
        fleet,
        ctx,
    } = harness();
    let db = database(spec(3, 2));
    let d = desired(&db);
    ready_topology(&fleet);
    reconciled(&ctx, &db, &mut api, async |api| {
        let path = api.path_of::<Secret>(&format!("{NAME}-credentials"));
        let mut old = secret_json(TOKEN);
        old["data"]
            .as_object_mut()
            .expect("data")
            .remove(objects::SECRET_ROUTER_ADMIN_TOKEN_KEY);
        api.expect("GET", &path).await.reply(200, old.clone());
        let e = api.expect("PATCH", &path).await;
        assert_eq!(
            e.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        let keys: Vec<&String> = e.body["data"].as_object().expect("data").keys().collect();
        assert_eq!(
            keys,
            ["router-admin-token"],
            "only the missing key, never the others"
        );
        e.reply(200, secret_json(TOKEN));
        list_sets(api, existing_sets(&d, true)).await;
        apply_everything(api, &d, |_| true).await;
        expect_status(api, &db).await;
    })
    .await
    .expect("reconciles");
    api.assert_idle();
}
