//! The status publisher: the control plane's status fields, on change, at most every so often.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::Value as Json;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::database::Shared;
use super::{FIELD_MANAGER, status};

/// Publishes the control plane's status fields when they change, at most every `every`.
pub(super) async fn publish(
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
    every: Duration,
) {
    let mut topology = shared.handle.watch();
    let mut desired = shared.desired.subscribe();
    let mut last: Option<Json> = None;
    let mut not_before = tokio::time::Instant::now();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(not_before) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let patch = {
            let t = topology.borrow_and_update();
            let d = desired.borrow_and_update();
            status::status_patch(&t, &d.layout)
        };
        if last.as_ref() != Some(&patch) {
            not_before = tokio::time::Instant::now() + every;
            match shared
                .api
                .patch_status(&shared.name, &params, &Patch::Apply(&patch))
                .await
            {
                Ok(_) => {
                    debug!(database = %shared.key(), "status published");
                    last = Some(patch);
                }
                // Retried at the next change (the topology changes every tick).
                Err(e) => warn!(database = %shared.key(), error = %e, "status not published"),
            }
        }
        tokio::select! {
            r = topology.changed() => if r.is_err() { return },
            r = desired.changed() => if r.is_err() { return },
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}
