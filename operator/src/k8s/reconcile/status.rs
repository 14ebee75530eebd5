//! The reconciler's part of the `ShardedDatabase` status, computed purely from what it observed:
//! `observedGeneration`, the `Ready`/`Progressing`/`Degraded` conditions, `servers`,
//! `serversReady` and `routerReady`. The control plane owns `shards`, `shardCount` and
//! `primaries` (its own field manager).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use walshard_contract::Phase;
use walshard_contract::Topology;
use walshard_k8s_api::spec::{
    CONDITION_DEGRADED, CONDITION_PROGRESSING, CONDITION_READY, ShardedDatabaseStatus,
};

/// Condition reasons, one word each (`kubectl describe` shows them).
pub mod reason {
    /// Ready: every server and the router are ready and every shard has a primary.
    pub const ALL_READY: &str = "AllReady";
    /// Ready: some server pod is not ready.
    pub const SERVERS_NOT_READY: &str = "ServersNotReady";
    /// Ready: no router replica is ready.
    pub const ROUTER_NOT_READY: &str = "RouterNotReady";
    /// Ready: some shard has no elected primary.
    pub const NO_PRIMARY: &str = "NoPrimary";
    /// Progressing: a removed server is being drained before its objects go.
    pub const DRAINING: &str = "Draining";
    /// Progressing: StatefulSets or the router Deployment are not rolled out and ready yet.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// Progressing: some shard is electing its primary.
    pub const ELECTING: &str = "Electing";
    /// Progressing: nothing left to do.
    pub const RECONCILED: &str = "Reconciled";
    /// Progressing: `spec.paused`; nothing is applied.
    pub const PAUSED: &str = "Paused";
    /// Every condition: the spec cannot be applied (see the message and the Event).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Degraded: nothing is wrong.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// Degraded: some shard cannot elect, too few of its replicas answer.
    pub const NO_QUORUM: &str = "NoQuorum";
    /// Degraded: draining a removed server failed (retried).
    pub const DRAIN_FAILED: &str = "DrainFailed";
    /// Degraded: starting or reconfiguring the control plane failed (retried).
    pub const CONTROL_PLANE_ERROR: &str = "ControlPlaneError";
    /// Degraded: the API server refused some desired object (see the message and the Event);
    /// everything else was applied and the fleet is still run.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Progressing: a server's primaries are switched over before it restarts.
    pub const HANDING_OVER: &str = "HandingOver";
    /// Progressing: a user switchover (annotation `walshard.io/switchover`) is under way.
    pub const SWITCHING_OVER: &str = "SwitchingOver";
    /// Progressing: claims are being resized and their StatefulSets recreated.
    pub const EXPANDING_VOLUMES: &str = "ExpandingVolumes";
    /// Degraded: `spec.layout` (the router's, after `/add` or `/rm`) overrides an edit of
    /// `shards`, `servers` or `replicasPerShard` made after it; remove `spec.layout` to apply it.
    pub const LAYOUT_OVERRIDES_SPEC: &str = "LayoutOverridesSpec";
    /// Degraded: a credentials Secret the spec names is missing or lacks its key.
    pub const CREDENTIALS_MISSING: &str = "CredentialsMissing";
}

/// One server's StatefulSet as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    /// The server's name.
    pub server: String,
    /// Its pod is ready (`readyReplicas` 1).
    pub ready: bool,
    /// The StatefulSet controller has caught up with the latest spec (generation and revision).
    pub rolled_out: bool,
}

/// The router Deployment as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterState {
    /// Desired replicas.
    pub replicas: i32,
    /// Ready replicas.
    pub ready: i32,
    /// Every replica runs the latest spec.
    pub rolled_out: bool,
}

/// Everything the status is computed from.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The `metadata.generation` observed.
    pub generation: Option<i64>,
    /// The shard ids of the resolved spec.
    pub shards: Vec<String>,
    /// One entry per desired server.
    pub servers: Vec<ServerState>,
    /// The router Deployment.
    pub router: RouterState,
    /// The control plane's view; `None` until it runs.
    pub topology: Option<Topology>,
    /// Removed servers still being drained.
    pub draining: Vec<String>,
    /// Removed servers whose drain failed, with the error.
    pub drain_failures: Vec<(String, String)>,
    /// The control plane could not be started or reconfigured.
    pub control_error: Option<String>,
    /// `(object, error)` of every apply the API server refused.
    pub apply_failures: Vec<(String, String)>,
    /// Servers whose StatefulSet is being recreated for a new claim template.
    pub recreating: Vec<String>,
    /// Servers whose primaries are being handed over before a restart.
    pub handing_over: Vec<String>,
    /// A user switchover (annotation) is under way.
    pub switching: bool,
    /// `spec.layout` overrides an edit of the user's form made after it.
    pub layout_overrides: bool,
}

/// The status fields the reconciler owns, server-side applied with its field manager.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedStatus {
    /// The `metadata.generation` these fields describe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`.
    pub conditions: Vec<Condition>,
    /// Servers in the spec.
    pub servers: i32,
    /// Servers whose pod is ready.
    pub servers_ready: i32,
    /// Ready router replicas.
    pub router_ready: i32,
}

/// A condition before it gets its transition time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The condition's status (`True` or `False`).
    pub status: bool,
    /// One of [`reason`].
    pub reason: &'static str,
    /// What `kubectl describe` shows.
    pub message: String,
}

impl Verdict {
    fn new(status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// What Degraded `LayoutOverridesSpec` (and its Warning Event) says.
pub const LAYOUT_OVERRIDES_MESSAGE: &str = "spec.layout (written by the router's /add or /rm) overrides the later edit of spec.shards, spec.servers or spec.replicasPerShard, which is not applied; remove spec.layout to apply it (servers and shards not in it are then drained)";

/// The three verdicts, in the order `Ready`, `Progressing`, `Degraded`.
pub type Verdicts = [Verdict; 3];

/// Ready, Progressing and Degraded from an observation.
pub fn verdicts(o: &Observation) -> Verdicts {
    let ready_servers = o.servers.iter().filter(|s| s.ready).count();
    let not_ready: Vec<&str> = o
        .servers
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.server.as_str())
        .collect();
    let shard_phase = |id: &str| o.topology.as_ref().and_then(|t| t.shards.get(id));
    let without_primary: Vec<&str> = o
        .shards
        .iter()
        .map(String::as_str)
        .filter(|id| shard_phase(id).and_then(|s| s.primary.as_ref()).is_none())
        .collect();
    let no_quorum: Vec<&str> = o
        .shards
        .iter()
        .map(String::as_str)
        .filter(|id| shard_phase(id).is_some_and(|s| s.state == Phase::NoQuorum))
        .collect();

    let ready = if !not_ready.is_empty() || o.servers.is_empty() {
        Verdict::new(
            false,
            reason::SERVERS_NOT_READY,
            format!(
                "{ready_servers}/{} servers ready; waiting for {}",
                o.servers.len(),
                list(&not_ready)
            ),
        )
    } else if o.router.ready < 1 {
        Verdict::new(
            false,
            reason::ROUTER_NOT_READY,
            "no router replica is ready",
        )
    } else if !without_primary.is_empty() {
        Verdict::new(
            false,
            reason::NO_PRIMARY,
            format!("shards without a primary: {}", list(&without_primary)),
        )
    } else {
        Verdict::new(
            true,
            reason::ALL_READY,
            format!(
                "{} servers, {}/{} router replicas and {} shard primaries ready",
                o.servers.len(),
                o.router.ready,
                o.router.replicas,
                o.shards.len()
            ),
        )
    };

    let rolling: Vec<&str> = o
        .servers
        .iter()
        .filter(|s| !s.ready || !s.rolled_out)
        .map(|s| s.server.as_str())
        .collect();
    let router_rolling = !o.router.rolled_out || o.router.ready < o.router.replicas;
    let electing: Vec<&str> = without_primary
        .iter()
        .copied()
        .filter(|id| !no_quorum.contains(id))
        .collect();
    let progressing = if !o.draining.is_empty() {
        Verdict::new(
            true,
            reason::DRAINING,
            format!(
                "draining removed servers before deleting them: {}",
                list_owned(&o.draining)
            ),
        )
    } else if !o.handing_over.is_empty() {
        Verdict::new(
            true,
            reason::HANDING_OVER,
            format!(
                "switching the primaries of {} over before restarting",
                list_owned(&o.handing_over)
            ),
        )
    } else if o.switching {
        Verdict::new(
            true,
            reason::SWITCHING_OVER,
            "a switchover requested by annotation is under way",
        )
    } else if !o.recreating.is_empty() {
        Verdict::new(
            true,
            reason::EXPANDING_VOLUMES,
            format!(
                "recreating the StatefulSets of {} with their new claim template (pods kept)",
                list_owned(&o.recreating)
            ),
        )
    } else if !rolling.is_empty() || router_rolling {
        let mut parts = Vec::new();
        if !rolling.is_empty() {
            parts.push(format!("servers {}", list(&rolling)));
        }
        if router_rolling {
            parts.push(format!(
                "router {}/{} ready",
                o.router.ready, o.router.replicas
            ));
        }
        Verdict::new(
            true,
            reason::ROLLING_OUT,
            format!("rolling out: {}", parts.join("; ")),
        )
    } else if !electing.is_empty() {
        Verdict::new(
            true,
            reason::ELECTING,
            format!("electing primaries of {}", list(&electing)),
        )
    } else {
        Verdict::new(false, reason::RECONCILED, "the fleet matches the spec")
    };

    let degraded = if !o.apply_failures.is_empty() {
        let failures: Vec<String> = o
            .apply_failures
            .iter()
            .map(|(object, error)| format!("{object}: {error}"))
            .collect();
        Verdict::new(
            true,
            reason::APPLY_FAILED,
            format!(
                "refused by the API server (retrying): {}",
                failures.join("; ")
            ),
        )
    } else if !o.drain_failures.is_empty() {
        let failures: Vec<String> = o
            .drain_failures
            .iter()
            .map(|(server, error)| format!("{server}: {error}"))
            .collect();
        Verdict::new(
            true,
            reason::DRAIN_FAILED,
            format!("draining failed (retrying): {}", failures.join("; ")),
        )
    } else if let Some(error) = &o.control_error {
        Verdict::new(
            true,
            reason::CONTROL_PLANE_ERROR,
            format!("control plane (retrying): {error}"),
        )
    } else if !no_quorum.is_empty() {
        Verdict::new(
            true,
            reason::NO_QUORUM,
            format!(
                "too few replicas answer to elect a primary of {}",
                list(&no_quorum)
            ),
        )
    } else if o.layout_overrides {
        Verdict::new(
            true,
            reason::LAYOUT_OVERRIDES_SPEC,
            LAYOUT_OVERRIDES_MESSAGE,
        )
    } else {
        Verdict::new(false, reason::AS_EXPECTED, "")
    };
    [ready, progressing, degraded]
}

/// The owned status of a reconciled database.
pub fn observed(
    o: &Observation,
    current: Option<&ShardedDatabaseStatus>,
    now: Timestamp,
) -> OwnedStatus {
    let servers_ready = o.servers.iter().filter(|s| s.ready).count();
    OwnedStatus {
        observed_generation: o.generation,
        conditions: conditions(&verdicts(o), o.generation, current, now),
        servers: count(o.servers.len()),
        servers_ready: count(servers_ready),
        router_ready: o.router.ready,
    }
}

/// `spec.paused`: Progressing False/Paused; Ready, Degraded and the counters stay as they were.
pub fn paused(
    generation: Option<i64>,
    current: Option<&ShardedDatabaseStatus>,
    now: Timestamp,
) -> OwnedStatus {
    let [ready, _, degraded] = kept_verdicts(current);
    let progressing = Verdict::new(
        false,
        reason::PAUSED,
        "spec.paused is set: nothing is applied, the running fleet is left as it is",
    );
    kept(generation, current, [ready, progressing, degraded], now)
}

/// A spec that cannot be applied: every condition says why; the counters stay as they were.
pub fn blocked(
    generation: Option<i64>,
    current: Option<&ShardedDatabaseStatus>,
    reason: &'static str,
    message: &str,
    now: Timestamp,
) -> OwnedStatus {
    let verdicts = [
        Verdict::new(false, reason, message),
        Verdict::new(false, reason, message),
        Verdict::new(true, reason, message),
    ];
    kept(generation, current, verdicts, now)
}

fn kept(
    generation: Option<i64>,
    current: Option<&ShardedDatabaseStatus>,
    verdicts: Verdicts,
    now: Timestamp,
) -> OwnedStatus {
    let c = current.cloned().unwrap_or_default();
    OwnedStatus {
        observed_generation: generation,
        conditions: conditions(&verdicts, generation, current, now),
        servers: c.servers,
        servers_ready: c.servers_ready,
        router_ready: c.router_ready,
    }
}

/// The current Ready and Degraded conditions (for a paused database), defaults when absent.
fn kept_verdicts(current: Option<&ShardedDatabaseStatus>) -> Verdicts {
    let find = |type_: &str, default: Verdict| {
        current
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .map(|c| Verdict {
                status: c.status == "True",
                reason: known_reason(&c.reason),
                message: c.message.clone(),
            })
            .unwrap_or(default)
    };
    [
        find(
            CONDITION_READY,
            Verdict::new(
                false,
                reason::PAUSED,
                "paused before the first reconciliation",
            ),
        ),
        Verdict::new(false, reason::PAUSED, ""),
        find(
            CONDITION_DEGRADED,
            Verdict::new(false, reason::AS_EXPECTED, ""),
        ),
    ]
}

/// Maps a reason read back from the API onto the static set (unknown ones become `Paused`).
fn known_reason(reason: &str) -> &'static str {
    use reason::*;
    [
        ALL_READY,
        SERVERS_NOT_READY,
        ROUTER_NOT_READY,
        NO_PRIMARY,
        DRAINING,
        ROLLING_OUT,
        ELECTING,
        RECONCILED,
        PAUSED,
        INVALID_SPEC,
        AS_EXPECTED,
        NO_QUORUM,
        DRAIN_FAILED,
        CONTROL_PLANE_ERROR,
        CREDENTIALS_MISSING,
        LAYOUT_OVERRIDES_SPEC,
    ]
    .into_iter()
    .find(|known| *known == reason)
    .unwrap_or(PAUSED)
}

/// Conditions from verdicts; `lastTransitionTime` moves only when a condition's status changes.
fn conditions(
    verdicts: &Verdicts,
    generation: Option<i64>,
    current: Option<&ShardedDatabaseStatus>,
    now: Timestamp,
) -> Vec<Condition> {
    let types = [CONDITION_READY, CONDITION_PROGRESSING, CONDITION_DEGRADED];
    types
        .into_iter()
        .zip(verdicts)
        .map(|(type_, v)| {
            let status = if v.status { "True" } else { "False" };
            let since = current
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
                .filter(|c| c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: v.reason.to_owned(),
                message: v.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

impl OwnedStatus {
    /// Whether `current` already shows exactly this (so no write is needed).
    pub fn is_shown_by(&self, current: Option<&ShardedDatabaseStatus>) -> bool {
        let Some(c) = current else {
            return false;
        };
        let same_conditions = self.conditions.len()
            == c.conditions
                .iter()
                .filter(|c| {
                    [CONDITION_READY, CONDITION_PROGRESSING, CONDITION_DEGRADED]
                        .contains(&c.type_.as_str())
                })
                .count()
            && self
                .conditions
                .iter()
                .all(|mine| c.conditions.iter().any(|theirs| theirs == mine));
        same_conditions
            && self.observed_generation == c.observed_generation
            && self.servers == c.servers
            && self.servers_ready == c.servers_ready
            && self.router_ready == c.router_ready
    }

    /// The condition of `type_`.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Ready is True.
    pub fn is_ready(&self) -> bool {
        self.condition(CONDITION_READY)
            .is_some_and(|c| c.status == "True")
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn list(items: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut text = items
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        text.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    text
}

fn list_owned(items: &[String]) -> String {
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    list(&refs)
}

#[cfg(test)]
mod tests;
