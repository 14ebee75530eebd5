//! User switchovers on Kubernetes: the annotation `walshard.io/switchover: "sh1=Server2"` (several
//! comma-separated) on a `ShardedDatabase` asks its control plane for a planned switchover of each
//! shard to the named replica. The reconciler requests it (Event `Switchover`), removes the
//! annotation once every named replica is primary (Event `SwitchedOver`), and removes it with a
//! Warning Event `SwitchoverRefused` when it cannot be done (malformed, unknown shard, not a
//! replica).

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::{Context, Fleet, ReconcileError, lock, publish};
use crate::spec::ShardedDatabase;

/// The annotation a user sets to request a switchover.
pub const SWITCHOVER_ANNOTATION: &str = "walshard.io/switchover";

/// `"sh1=Server2, sh3=Server0"` → `[("sh1", "Server2"), ("sh3", "Server0")]`.
pub fn parse_switchover(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (shard, to) = part
            .split_once('=')
            .map(|(a, b)| (a.trim(), b.trim()))
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| format!("{part:?} is not shard=Server"))?;
        if out.iter().any(|(s, _)| s == shard) {
            return Err(format!("shard {shard:?} is named twice"));
        }
        out.push((shard.to_owned(), to.to_owned()));
    }
    if out.is_empty() {
        return Err("empty: expected shard=Server, e.g. sh1=Server2".to_owned());
    }
    Ok(out)
}

/// Handles the annotation; `true` while a switchover is under way.
pub(super) async fn requested<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
) -> Result<bool, ReconcileError> {
    let Some(text) = db.annotations().get(SWITCHOVER_ANNOTATION).cloned() else {
        return Ok(false);
    };
    let namespace = db.namespace().unwrap_or_default();
    let name = db.name_any();
    let key = (
        (namespace.clone(), name.clone()),
        format!("switchover {text}"),
    );
    let mut outcome: Result<bool, String> = parse_switchover(&text).map(|_| true);
    if let Ok(pairs) = parse_switchover(&text) {
        for (shard, to) in &pairs {
            match ctx.fleet.switchover(&namespace, &name, shard, to).await {
                Ok(done) => {
                    if let Ok(all) = &mut outcome {
                        *all &= done;
                    }
                }
                Err(e) => {
                    outcome = Err(format!("{shard}={to}: {e}"));
                    break;
                }
            }
        }
    }
    match outcome {
        Ok(false) => {
            if lock(&ctx.handovers).insert(key) {
                info!(%text, "switchover requested");
                publish(
                    ctx,
                    db,
                    None,
                    EventType::Normal,
                    "Switchover",
                    "Switchover",
                    format!("switching over {text} (annotation {SWITCHOVER_ANNOTATION})"),
                )
                .await;
            }
            Ok(true)
        }
        Ok(true) => {
            lock(&ctx.handovers).remove(&key);
            remove_annotation(ctx, db).await?;
            publish(
                ctx,
                db,
                None,
                EventType::Normal,
                "SwitchedOver",
                "Switchover",
                format!("switched over: {text}"),
            )
            .await;
            Ok(false)
        }
        Err(reason) => {
            lock(&ctx.handovers).remove(&key);
            warn!(%text, %reason, "switchover refused");
            remove_annotation(ctx, db).await?;
            publish(
                ctx,
                db,
                None,
                EventType::Warning,
                "SwitchoverRefused",
                "Switchover",
                format!("{SWITCHOVER_ANNOTATION}: {text:?} refused: {reason}"),
            )
            .await;
            Ok(false)
        }
    }
}

/// Removes the annotation (JSON merge patch; it is the user's field, not applied by us).
async fn remove_annotation<F: Fleet>(
    ctx: &Context<F>,
    db: &ShardedDatabase,
) -> Result<(), ReconcileError> {
    let namespace = db.namespace().unwrap_or_default();
    let api: Api<ShardedDatabase> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {SWITCHOVER_ANNOTATION: null}}});
    api.patch(
        &db.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| ReconcileError::api("patch", &ShardedDatabase::kind(&()), &db.name_any(), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs() {
        let p = parse_switchover(" sh1=Server2, sh3 = Server0 ").unwrap();
        assert_eq!(
            p,
            vec![
                ("sh1".to_owned(), "Server2".to_owned()),
                ("sh3".to_owned(), "Server0".to_owned())
            ]
        );
        assert!(parse_switchover("sh1").is_err());
        assert!(parse_switchover("sh1=").is_err());
        assert!(parse_switchover("").is_err());
        assert!(parse_switchover("sh1=A,sh1=B").is_err());
    }
}
