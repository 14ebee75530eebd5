//! Replica staleness during the write phase: every [`EVERY`] each agent's `GET /status` is read,
//! and each secondary's applied LSN is compared with its shard primary's commit point in the
//! same round. The lag is in entries (writes), and as the time the shard takes to commit that
//! many at the phase's rate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use walshard_contract::{AgentStatus, Role};

/// How often the agents are asked (about 20 requests/s per agent: a small load next to the
/// phase's).
pub const EVERY: Duration = Duration::from_millis(50);

/// The agents to ask and the token they require.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Each agent's base URL.
    pub agents: Vec<String>,
    /// The cluster token.
    pub token: String,
}

/// How far the secondaries were behind their primaries' commit points.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Staleness {
    /// Secondary observations taken.
    pub samples: usize,
    /// Median entries behind.
    pub p50_entries: u64,
    /// 99th percentile of entries behind.
    pub p99_entries: u64,
    /// Most entries behind.
    pub max_entries: u64,
    /// `p50_entries` as time at the phase's per-shard commit rate.
    pub p50_ms: f64,
    /// `p99_entries` as time.
    pub p99_ms: f64,
}

/// Entries each secondary is behind its shard's primary in one round of statuses.
pub fn lags(statuses: &[AgentStatus]) -> Vec<u64> {
    let mut commit: BTreeMap<&str, u64> = BTreeMap::new();
    for s in statuses {
        for (shard, st) in &s.shards {
            if st.role == Role::Primary {
                commit.insert(shard.as_str(), st.commit_lsn);
            }
        }
    }
    statuses
        .iter()
        .flat_map(|s| &s.shards)
        .filter(|(_, st)| st.role != Role::Primary)
        .filter_map(|(shard, st)| Some(commit.get(shard.as_str())?.saturating_sub(st.applied_lsn)))
        .collect()
}

/// Summarises `lags` observed while the shards committed `per_shard_rate` entries per second.
pub fn summarise(mut lags: Vec<u64>, per_shard_rate: f64) -> Staleness {
    if lags.is_empty() {
        return Staleness::default();
    }
    lags.sort_unstable();
    let at = |p: f64| lags[((lags.len() - 1) as f64 * p).round() as usize];
    let ms = |entries: u64| {
        if per_shard_rate > 0.0 {
            entries as f64 / per_shard_rate * 1000.0
        } else {
            0.0
        }
    };
    Staleness {
        samples: lags.len(),
        p50_entries: at(0.5),
        p99_entries: at(0.99),
        max_entries: lags[lags.len() - 1],
        p50_ms: ms(at(0.5)),
        p99_ms: ms(at(0.99)),
    }
}

/// Asks every agent for its status each [`EVERY`] until `stop` turns true; returns every lag
/// seen. A round with an agent that did not answer is skipped.
pub async fn observe(probe: Probe, mut stop: watch::Receiver<bool>) -> Vec<u64> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    loop {
        let calls = probe.agents.iter().map(|url| {
            let req = http
                .get(format!("{url}/status"))
                .bearer_auth(&probe.token)
                .timeout(Duration::from_secs(1))
                .send();
            async move { req.await.ok()?.json::<AgentStatus>().await.ok() }
        });
        let round: Option<Vec<AgentStatus>> =
            futures::future::join_all(calls).await.into_iter().collect();
        if let Some(round) = round {
            out.extend(lags(&round));
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walshard_contract::ShardStatus;

    fn agent(shards: &[(&str, Role, u64, u64)]) -> AgentStatus {
        let mut s = AgentStatus {
            server: None,
            schema: None,
            shards: BTreeMap::new(),
            disk: None,
            archive: None,
        };
        for &(id, role, commit, applied) in shards {
            let mut st = ShardStatus::fresh();
            st.role = role;
            st.commit_lsn = commit;
            st.applied_lsn = applied;
            s.shards.insert(id.to_owned(), st);
        }
        s
    }

    #[test]
    fn each_secondary_is_measured_against_its_own_primary() {
        let round = [
            agent(&[
                ("sh1", Role::Primary, 100, 99),
                ("sh2", Role::Secondary, 40, 38),
            ]),
            agent(&[
                ("sh1", Role::Secondary, 97, 95),
                ("sh2", Role::Primary, 50, 50),
            ]),
            agent(&[("sh3", Role::Secondary, 5, 5)]),
        ];
        let mut got = lags(&round);
        got.sort_unstable();
        // sh2's secondary 50 - 38, sh1's 100 - 95; sh3 has no primary in the round.
        assert_eq!(got, vec![5, 12]);
        let s = summarise(vec![0, 0, 1, 2, 40], 500.0);
        assert_eq!((s.samples, s.p50_entries, s.max_entries), (5, 1, 40));
        assert_eq!(s.p50_ms, 2.0);
        assert_eq!(summarise(Vec::new(), 1.0), Staleness::default());
    }
}
