//! The primary's side of replication (docs/replication.md): one streaming task per secondary and
//! the quorum commit point.
//!
//! Each task sends the secondary every WAL entry after the LSN it is known to hold, as WAL frames
//! in one request per batch (whatever is ready, up to [`MAX_BATCH_BYTES`]), with the primary's
//! commit point; one batch is in flight per secondary, so batches grow with load. When caught up
//! it sends an empty append as soon as the commit point advances (so secondaries apply, and can
//! serve reads, about one round trip after the primary) and at least every [`HEARTBEAT`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use walshard_contract::{Backoff, Ident, Quorum, ReplicaRef};
use walshard_replica::back_up;
pub use walshard_replica::quorum_commit;

use crate::metrics::Metrics;
use crate::store::{Snapshot, StoreError};
use crate::wal::codec::{decode_frame, encode_frame};
use crate::wal::{Entry, Epoch, Lsn, Wal, WalError};

/// Largest append request body (bytes of WAL frames).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Entries read from the WAL per batch at most.
const MAX_BATCH_ENTRIES: usize = 4096;
/// An idle primary sends an empty append this often (carries the commit point, proves liveness).
pub const HEARTBEAT: Duration = Duration::from_millis(100);
/// Timeout of one append request.
const APPEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of a snapshot install.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);
/// Pauses between failed sends to a peer.
const RETRY: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));

/// Header of appends and snapshot installs: the sending primary's epoch.
pub const H_EPOCH: &str = "x-walshard-epoch";
/// Header of appends and snapshot installs: the sending primary's server name.
pub const H_PRIMARY: &str = "x-walshard-primary";
/// Header of appends: the LSN just before the first entry sent (the last one if none is).
pub const H_PREV_LSN: &str = "x-walshard-prev-lsn";
/// Header of appends: the epoch of the entry at [`H_PREV_LSN`] in the primary's log.
pub const H_PREV_EPOCH: &str = "x-walshard-prev-epoch";
/// Header of appends: the primary's commit point when it sent the append.
pub const H_COMMIT: &str = "x-walshard-commit-lsn";

/// An append as a secondary receives it.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The sending primary's epoch ([`H_EPOCH`]).
    pub epoch: Epoch,
    /// The sending primary's server name ([`H_PRIMARY`]).
    pub primary: String,
    /// The LSN just before `entries` ([`H_PREV_LSN`]); the secondary's log must hold it in
    /// `prev_epoch` to continue.
    pub prev_lsn: Lsn,
    /// The epoch of the entry at `prev_lsn` ([`H_PREV_EPOCH`]).
    pub prev_epoch: Epoch,
    /// The primary's commit point ([`H_COMMIT`]).
    pub commit_lsn: Lsn,
    /// The entries from `prev_lsn + 1` on, in LSN order; empty for a heartbeat.
    pub entries: Vec<Entry>,
}

/// Encodes entries as concatenated WAL frames.
pub fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        encode_frame(e, &mut out);
    }
    out
}

/// Decodes concatenated WAL frames; any torn or corrupt frame rejects the whole body.
pub fn decode_entries(mut body: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        match decode_frame(body) {
            Ok(Some((entry, used))) => {
                out.push(entry);
                body = &body[used..];
            }
            Ok(None) => return Err("truncated frame in append body".into()),
            Err(e) => return Err(format!("bad frame in append body: {e:?}")),
        }
    }
    Ok(out)
}

/// A secondary's answer to an append (200) or its refusal (409/412), as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppendAnswer {
    /// 200: the last LSN the secondary holds; 412: where its log ends.
    #[serde(default)]
    pub last_lsn: Lsn,
    /// 412: the epoch of the secondary's last entry.
    #[serde(default)]
    pub last_epoch: Epoch,
    /// 409: the higher epoch the secondary has promised.
    #[serde(default)]
    pub epoch: Epoch,
    /// 409: the primary of that epoch, if the secondary knows it.
    #[serde(default)]
    pub primary: Option<String>,
}

/// The primary's replication state for its epoch.
pub struct Replication {
    /// The epoch this primary leads.
    pub epoch: Epoch,
    /// LSN of the primary's no-op in `epoch`; nothing before it commits by counting.
    pub epoch_start: Lsn,
    /// Replicas (this primary included) that must hold an entry for it to commit.
    pub quorum: usize,
    /// The secondaries (every replica but this one), each streamed to by its own task.
    pub peers: Vec<ReplicaRef>,
    /// Per peer: the LSN it holds and when it last answered.
    matched: Mutex<HashMap<String, (Lsn, Instant)>>,
    stop: watch::Sender<bool>,
    /// The no-op of this epoch is committed: client writes may start.
    ready: AtomicBool,
    /// Stepping down: no new client writes.
    draining: AtomicBool,
}

impl Replication {
    /// The state of a primary of `epoch` whose no-op is at `epoch_start`, replicating to
    /// `peers`; the quorum is sized over the peers plus this primary. Not ready and not
    /// streaming yet ([`Replication::spawn`]).
    pub fn new(
        epoch: Epoch,
        epoch_start: Lsn,
        quorum: Quorum,
        peers: Vec<ReplicaRef>,
    ) -> Arc<Self> {
        let quorum = quorum.size(peers.len() + 1);
        Arc::new(Self {
            epoch,
            epoch_start,
            quorum,
            peers,
            matched: Mutex::new(HashMap::new()),
            stop: watch::Sender::new(false),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        })
    }

    /// Client writes are taken: the epoch's no-op is committed and no step-down is under way.
    pub fn accepting(&self) -> bool {
        self.is_ready() && !self.is_draining()
    }

    /// The no-op of this epoch is committed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// A step-down is under way.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Records that the epoch's no-op is committed (client writes may start); never undone.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Starts (`true`) or ends (`false`) a step-down: while draining, client writes are refused.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
    }

    /// Stops the peer streams and the commit driver (this replica is no longer primary of the
    /// epoch); final.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether [`Replication::stop`] was called.
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// A receiver that changes to `true` when [`Replication::stop`] is called.
    pub fn subscribe_stop(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    fn set_matched(&self, peer: &str, lsn: Lsn) {
        if let Ok(mut m) = self.matched.lock() {
            m.insert(peer.to_owned(), (lsn, Instant::now()));
        }
    }

    /// The LSN `peer` last acknowledged holding; `None` until it first answers an append.
    pub fn matched(&self, peer: &str) -> Option<Lsn> {
        self.matched
            .lock()
            .ok()
            .and_then(|m| m.get(peer).map(|(l, _)| *l))
    }

    /// Peers that answered an append within `window`.
    pub fn reachable(&self, window: Duration) -> usize {
        self.matched
            .lock()
            .map(|m| m.values().filter(|(_, at)| at.elapsed() <= window).count())
            .unwrap_or(0)
    }

    /// The peer to step down to: [`walshard_replica::handover_target`] over what each peer
    /// holds as far as the primary knows.
    pub fn handover_target(&self) -> Option<String> {
        let m = self.matched.lock().ok()?;
        walshard_replica::handover_target(
            self.peers
                .iter()
                .map(|p| (p.name.as_str(), m.get(&p.name).map(|(l, _)| *l))),
        )
        .map(str::to_owned)
    }

    /// Every replica's durable LSN as far as the primary knows (its own first).
    pub fn held(&self, own: Lsn) -> Vec<Lsn> {
        let mut v = vec![own];
        if let Ok(m) = self.matched.lock() {
            v.extend(
                self.peers
                    .iter()
                    .map(|p| m.get(&p.name).map_or(0, |(l, _)| *l)),
            );
        }
        v
    }

    /// Read-index confirmation: how many peers still follow this primary in its epoch.
    pub async fn confirm(
        &self,
        shard: &Ident,
        primary: &str,
        http: &reqwest::Client,
        token: &str,
    ) -> usize {
        let calls = self.peers.iter().map(|p| {
            let req = http
                .post(format!("{}/shards/{shard}/confirm", p.url))
                .bearer_auth(token)
                .timeout(APPEND_TIMEOUT)
                .json(&serde_json::json!({"epoch": self.epoch, "primary": primary}))
                .send();
            async move { req.await.is_ok_and(|r| r.status().is_success()) }
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count()
    }

    /// Lowest LSN every replica holds (what may be compacted everywhere).
    pub fn min_held(&self, own: Lsn) -> Lsn {
        self.held(own).into_iter().min().unwrap_or(0)
    }

    /// Starts one streaming task per peer.
    pub fn spawn<S: ReplicationSource>(
        self: &Arc<Self>,
        shard: &Arc<S>,
        http: &reqwest::Client,
        token: &str,
    ) {
        for peer in &self.peers {
            let task = PeerTask {
                shard: shard.clone(),
                repl: self.clone(),
                peer: peer.clone(),
                http: http.clone(),
                token: token.to_owned(),
            };
            tokio::spawn(task.run(self.stop.subscribe()));
        }
    }
}

/// What a primary's peer streams need from their shard (the shard implements it, so this module
/// does not depend on the shard's).
pub trait ReplicationSource: Send + Sync + 'static {
    /// The shard's id.
    fn id(&self) -> &Ident;
    /// This server's name, sent to peers as their primary.
    fn server_name(&self) -> &str;
    /// The shard's WAL, streamed to the peers.
    fn wal(&self) -> &Wal;
    /// LSN up to which entries are committed.
    fn commit_lsn(&self) -> Lsn;
    /// Changes whenever the commit point advances.
    fn subscribe_commit(&self) -> watch::Receiver<Lsn>;
    /// The agent's metrics.
    fn metrics(&self) -> &Metrics;
    /// Whether a peer that needs entries from `next` must get a snapshot instead.
    fn needs_snapshot(&self, next: Lsn) -> bool;
    /// Recomputes the commit point after a peer acknowledged entries.
    fn recompute_commit(&self, repl: &Replication);
    /// A consistent copy of the shard at its applied point.
    fn snapshot(&self) -> impl Future<Output = Result<Snapshot, StoreError>> + Send;
    /// A peer has promised a higher `epoch`: this primary steps down.
    fn observe_epoch(self: &Arc<Self>, epoch: Epoch) -> impl Future<Output = ()> + Send;
}

struct PeerTask<S> {
    shard: Arc<S>,
    repl: Arc<Replication>,
    peer: ReplicaRef,
    http: reqwest::Client,
    token: String,
}

enum Sent {
    /// The peer holds everything up to this LSN.
    Matched(Lsn),
    /// The peer's log does not match at `prev`; it ends at this LSN.
    Mismatch(Lsn),
    /// The peer has promised a higher epoch.
    Stale(Epoch),
}

impl<S: ReplicationSource> PeerTask<S> {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let shard_id = self.shard.id().to_string();
        let mut durable = self.shard.wal().subscribe();
        let mut commits = self.shard.subscribe_commit();
        let mut next = self.shard.wal().last().1 + 1;
        let mut pauses = RETRY.start();
        info!(shard = %shard_id, peer = %self.peer.name, epoch = self.repl.epoch, "replicating");
        loop {
            if *stop.borrow() {
                return;
            }
            let snapshot = self.shard.needs_snapshot(next);
            // The commit point this send carries (read before it: the header is at least this).
            let commit_sent = *commits.borrow_and_update();
            let result = if snapshot {
                self.resync().await
            } else {
                self.send_from(next).await
            };
            let labels = Metrics::peer(&shard_id, &self.peer.name);
            let m = self.shard.metrics();
            match (&result, snapshot) {
                (Ok(Sent::Matched(_)), true) => m.snapshots_sent.get_or_create(&labels).inc(),
                (Ok(Sent::Matched(_)), false) => m.appends_sent.get_or_create(&labels).inc(),
                _ => m.append_failures.get_or_create(&labels).inc(),
            };
            match result {
                Ok(Sent::Matched(held)) => {
                    pauses.reset();
                    self.repl.set_matched(&self.peer.name, held);
                    self.shard.recompute_commit(&self.repl);
                    next = held + 1;
                    // Caught up, and the peer knows the commit point: wait for new entries, a
                    // commit advance (told at once, so its reads lag by about one round trip) or
                    // the heartbeat.
                    if next > self.shard.wal().last().1 && self.shard.commit_lsn() <= commit_sent {
                        tokio::select! {
                            _ = durable.changed() => {}
                            _ = commits.changed() => {}
                            _ = tokio::time::sleep(HEARTBEAT) => {}
                            _ = stop.changed() => return,
                        }
                    }
                }
                Ok(Sent::Mismatch(peer_last)) => {
                    let back = back_up(next, peer_last);
                    debug!(shard = %shard_id, peer = %self.peer.name, from = next, to = back, "log mismatch, backing up");
                    next = back;
                }
                Ok(Sent::Stale(epoch)) => {
                    warn!(shard = %shard_id, peer = %self.peer.name, epoch, "peer has a higher epoch; stepping down");
                    self.shard.observe_epoch(epoch).await;
                    return;
                }
                Err(e) => {
                    debug!(shard = %shard_id, peer = %self.peer.name, error = %e, "append failed");
                    tokio::select! {
                        _ = tokio::time::sleep(pauses.next_pause()) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    /// Installs a consistent snapshot of this primary's shard on the peer.
    async fn resync(&self) -> Result<Sent, String> {
        let snap = self.shard.snapshot().await.map_err(|e| e.to_string())?;
        info!(shard = %self.shard.id(), peer = %self.peer.name, lsn = snap.lsn, rows = snap.rows.len(), "resyncing peer from a snapshot");
        let resp = self
            .http
            .post(format!(
                "{}/shards/{}/install-snapshot",
                self.peer.url,
                self.shard.id()
            ))
            .bearer_auth(&self.token)
            .timeout(SNAPSHOT_TIMEOUT)
            .header(H_EPOCH, self.repl.epoch)
            .header(H_PRIMARY, self.shard.server_name())
            .json(&snap)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let answer: AppendAnswer = resp.json().await.map_err(|e| e.to_string())?;
        match status {
            200 => Ok(Sent::Matched(answer.last_lsn)),
            409 => Ok(Sent::Stale(answer.epoch)),
            other => Err(format!("snapshot install answered {other}")),
        }
    }

    /// Sends the entries from `next` on (maybe none: a heartbeat) and reports what the peer holds.
    async fn send_from(&self, next: Lsn) -> Result<Sent, String> {
        let wal = self.shard.wal();
        let last = wal.last().1;
        let mut entries = if next <= last {
            match wal.read(next, last, MAX_BATCH_ENTRIES).await {
                Ok(e) => e,
                Err(WalError::Compacted { .. }) => {
                    return Err(format!(
                        "peer needs entries from {next}, compacted here; it must resync from a snapshot"
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        } else {
            Vec::new()
        };
        // Cap the batch by size, but always send at least one entry.
        let mut bytes = 0;
        let keep = entries
            .iter()
            .take_while(|e| {
                bytes += e.payload.len() + 64;
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1);
        entries.truncate(keep);
        let prev_lsn = next - 1;
        let prev_epoch = match wal.epoch_at(prev_lsn).await {
            Ok(Some(e)) => e,
            Ok(None) | Err(WalError::Compacted { .. }) => {
                return Err(format!("entry {prev_lsn} compacted; peer must resync"));
            }
            Err(e) => return Err(e.to_string()),
        };
        let count = entries.len() as u64;
        let url = format!("{}/shards/{}/append", self.peer.url, self.shard.id());
        let resp = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .timeout(APPEND_TIMEOUT)
            .header(H_EPOCH, self.repl.epoch)
            .header(H_PRIMARY, self.shard.server_name())
            .header(H_PREV_LSN, prev_lsn)
            .header(H_PREV_EPOCH, prev_epoch)
            .header(H_COMMIT, self.shard.commit_lsn())
            .body(encode_entries(&entries))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let answer: AppendAnswer = resp.json().await.map_err(|e| e.to_string())?;
        match status {
            200 => Ok(Sent::Matched(prev_lsn + count)),
            412 => Ok(Sent::Mismatch(answer.last_lsn)),
            409 => Ok(Sent::Stale(answer.epoch)),
            other => Err(format!("append answered {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::OpId;
    use bytes::Bytes;

    #[test]
    fn frames_round_trip_and_reject_torn_bodies() {
        let entries: Vec<Entry> = (1..=3)
            .map(|i| Entry {
                epoch: 2,
                lsn: i,
                op_id: OpId(i as u128),
                payload: Bytes::from(vec![i as u8; 10]),
            })
            .collect();
        let body = encode_entries(&entries);
        assert_eq!(decode_entries(&body).expect("decode"), entries);
        assert!(decode_entries(&body[..body.len() - 1]).is_err());
        assert_eq!(decode_entries(&[]).expect("empty"), Vec::<Entry>::new());
    }
}
