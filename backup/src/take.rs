//! A base backup of a running fleet (docs/backup.md), through its agents (feature `take`): per
//! shard, one caught-up replica (a secondary when one is, so the primary's writes are not slowed)
//! copies the shard straight to the store, consistent at or after the primary's commit point when
//! the backup started; the manifest is written last, once every shard's copy is in. `walshard
//! backup create` (the local fleet) and the operator (Kubernetes) both take backups with
//! [`take_base_backup`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::{BackupId, BackupStore, Manifest, ShardBackup, StoreError, now_ms};

/// How long a chosen replica may take to apply the start point before it copies.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Why a base backup could not be taken; [`TakeError::code`] classifies it.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// The backup store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An agent call failed.
    #[error("server {server}: {reason}")]
    Agent {
        /// The server name.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The shard (its id) has no primary to back up from.
    #[error("shard {0} has no primary right now: retry when it has one")]
    NoPrimary(String),
}

impl TakeError {
    /// A machine-readable code: the store's, or `fleet-unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            TakeError::Store(e) => e.code(),
            TakeError::Agent { .. } | TakeError::NoPrimary(_) => "fleet-unavailable",
        }
    }
}

/// How far a base backup is, for a progress bar or a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeProgress<'a> {
    /// The sources are chosen: this many shards will be copied.
    Planned {
        /// Shards to copy.
        shards: usize,
    },
    /// A shard's copy starts, from this server.
    Copying {
        /// The shard.
        shard: &'a str,
        /// The server it is read from.
        server: &'a str,
    },
    /// A shard's copy is in the store.
    Copied {
        /// The shard.
        shard: &'a str,
    },
}

/// One agent of the fleet.
#[derive(Debug, Clone)]
pub struct AgentRef {
    /// The server name.
    pub server: String,
    /// The agent's base URL.
    pub url: String,
}

/// Takes a base backup through the agents and writes its manifest; `fleet` is the fleet's own
/// description (what a restore rebuilds it from).
pub async fn take_base_backup(
    http: &reqwest::Client,
    token: &str,
    agents: &[AgentRef],
    fleet: Value,
    store: &BackupStore,
    progress: &(dyn Fn(TakeProgress<'_>) + Sync),
) -> Result<Manifest, TakeError> {
    let started_at_ms = now_ms();
    let id = BackupId::at(started_at_ms);
    let statuses = statuses(http, token, agents).await?;
    let sources = choose_sources(&statuses)?;
    progress(TakeProgress::Planned {
        shards: sources.len(),
    });
    let mut shards = BTreeMap::new();
    for (shard, (agent, min_lsn)) in &sources {
        progress(TakeProgress::Copying {
            shard,
            server: &agent.server,
        });
        let url = format!("{}/shards/{shard}/base-backup", agent.url);
        let body = json!({
            "backup_id": id.as_str(),
            "min_lsn": min_lsn,
            "wait_ms": u64::try_from(CATCH_UP.as_millis()).unwrap_or(u64::MAX),
        });
        let answer = http
            .post(&url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .map_err(|e| TakeError::Agent {
                server: agent.server.clone(),
                reason: e.to_string(),
            })?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(TakeError::Agent {
                server: agent.server.clone(),
                reason: format!("shard {shard}: {status}: {text}"),
            });
        }
        let copy: ShardBackup = serde_json::from_str(&text).map_err(|e| TakeError::Agent {
            server: agent.server.clone(),
            reason: format!("shard {shard}: unreadable answer: {e}"),
        })?;
        shards.insert(shard.clone(), copy);
        progress(TakeProgress::Copied { shard });
    }
    let manifest = Manifest {
        id,
        started_at_ms,
        finished_at_ms: now_ms(),
        fleet,
        shards,
    };
    store.put_manifest(&manifest).await?;
    Ok(manifest)
}

async fn statuses(
    http: &reqwest::Client,
    token: &str,
    agents: &[AgentRef],
) -> Result<Vec<(AgentRef, Value)>, TakeError> {
    let mut out = Vec::new();
    for agent in agents {
        let answer = http
            .get(format!("{}/status", agent.url))
            .bearer_auth(token)
            .send()
            .await
            .and_then(|r| r.error_for_status());
        match answer {
            Ok(r) => {
                let v: Value = r.json().await.map_err(|e| TakeError::Agent {
                    server: agent.server.clone(),
                    reason: e.to_string(),
                })?;
                out.push((agent.clone(), v));
            }
            // A server that is down holds no copy we need if another replica is up.
            Err(e) => tracing::warn!(server = %agent.server, error = %e, "agent unreachable"),
        }
    }
    Ok(out)
}

/// Per shard: the replica to copy from and the LSN it must have applied (the primary's commit
/// point now). A secondary that has applied it already is preferred; else the primary.
fn choose_sources(
    statuses: &[(AgentRef, Value)],
) -> Result<BTreeMap<String, (AgentRef, u64)>, TakeError> {
    let mut commit: BTreeMap<String, u64> = BTreeMap::new();
    let mut primary: BTreeMap<String, AgentRef> = BTreeMap::new();
    let mut all_shards: BTreeMap<String, ()> = BTreeMap::new();
    for (agent, status) in statuses {
        for (shard, s) in status["shards"].as_object().into_iter().flatten() {
            all_shards.insert(shard.clone(), ());
            if s["role"] == "primary" {
                commit.insert(shard.clone(), s["commit_lsn"].as_u64().unwrap_or(0));
                primary.insert(shard.clone(), agent.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    for shard in all_shards.keys() {
        let (Some(p), Some(c)) = (primary.get(shard), commit.get(shard)) else {
            return Err(TakeError::NoPrimary(shard.clone()));
        };
        let secondary = statuses.iter().find(|(agent, status)| {
            let s = &status["shards"][shard];
            agent.server != p.server
                && s["role"] == "secondary"
                && s["applied_lsn"].as_u64().is_some_and(|a| a >= *c)
        });
        let source = secondary.map_or_else(|| p.clone(), |(a, _)| a.clone());
        out.insert(shard.clone(), (source, *c));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(n: &str) -> AgentRef {
        AgentRef {
            server: n.into(),
            url: format!("http://{n}"),
        }
    }

    #[test]
    fn a_caught_up_secondary_is_preferred_to_the_primary() {
        let statuses = vec![
            (
                agent("s0"),
                json!({"shards": {"sh1": {"role": "primary", "commit_lsn": 10, "applied_lsn": 10},
                                  "sh2": {"role": "secondary", "applied_lsn": 3}}}),
            ),
            (
                agent("s1"),
                json!({"shards": {"sh1": {"role": "secondary", "applied_lsn": 10},
                                  "sh2": {"role": "primary", "commit_lsn": 7, "applied_lsn": 7}}}),
            ),
        ];
        let chosen = choose_sources(&statuses).unwrap();
        assert_eq!(chosen["sh1"].0.server, "s1", "caught up");
        assert_eq!(chosen["sh1"].1, 10);
        assert_eq!(
            chosen["sh2"].0.server, "s1",
            "the secondary lags: the primary"
        );
        let lone = vec![(
            agent("s0"),
            json!({"shards": {"sh1": {"role": "secondary"}}}),
        )];
        assert!(matches!(
            choose_sources(&lone),
            Err(TakeError::NoPrimary(s)) if s == "sh1"
        ));
    }
}
