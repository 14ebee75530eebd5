use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};

use super::observe::{outdated, server_state};
use super::*;

fn set(generation: i64, status: Option<StatefulSetStatus>) -> StatefulSet {
    let mut set = StatefulSet {
        spec: StatefulSetSpec {
            replicas: Some(1),
            ..StatefulSetSpec::default()
        },
        status,
        ..StatefulSet::default()
    };
    set.metadata.generation = Some(generation);
    set
}

fn status(observed: i64, replicas: i32, updated: i32, ready: i32) -> Option<StatefulSetStatus> {
    Some(StatefulSetStatus {
        observed_generation: Some(observed),
        replicas,
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        current_revision: Some("old".into()),
        update_revision: Some("new".into()),
        ..StatefulSetStatus::default()
    })
}

#[test]
fn only_a_pod_the_controller_made_from_an_older_template_is_outdated() {
    assert!(!outdated(&set(1, None)), "no status yet");
    assert!(
        !outdated(&set(2, status(1, 1, 0, 1))),
        "the new spec not seen yet"
    );
    assert!(!outdated(&set(2, status(2, 0, 0, 0))), "no pod made yet");
    assert!(
        !outdated(&set(2, status(2, 1, 1, 1))),
        "at the update revision"
    );
    assert!(outdated(&set(2, status(2, 1, 0, 1))), "an older pod");
}

#[test]
fn under_on_delete_a_differing_current_revision_alone_is_not_a_rollout() {
    // `currentRevision` stays behind under `OnDelete`: the pod count decides.
    let s = server_state(&set(3, status(3, 1, 1, 1)));
    assert!(s.ready && s.rolled_out);
    let s = server_state(&set(3, status(2, 1, 1, 1)));
    assert!(
        s.ready && !s.rolled_out,
        "the controller has not seen generation 3"
    );
}

#[test]
fn backoff_doubles_from_one_second_to_five_minutes() {
    let delays: Vec<u64> = (0..=10).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(delays, [1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
    assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
}
