//! The failure detector: per server, consecutive failed heartbeats and the time of the last
//! success; a server is suspected after too many failures, too long a silence or a refusal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Heartbeat and suspicion settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorConfig {
    /// How often the runtime polls `GET /status` (default 200 ms).
    pub heartbeat: Duration,
    /// Consecutive failed heartbeats after which a server is suspected (default 3).
    pub misses: u32,
    /// Time without a successful heartbeat after which a failing server is suspected
    /// (default 600 ms).
    pub timeout: Duration,
    /// Suspect at once on a connection refusal (default true: nothing listens there).
    pub suspect_on_refused: bool,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(200),
            misses: 3,
            timeout: Duration::from_millis(600),
            suspect_on_refused: true,
        }
    }
}

/// The result of one heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Heartbeat {
    /// The server answered.
    Ok,
    /// Timeout, HTTP error, bad answer, or the server does not report the shard.
    Failed,
    /// The connection was refused: nothing listens at the server's address.
    Refused,
}

#[derive(Debug, Clone, Copy)]
struct Health {
    first_seen: Instant,
    last_ok: Option<Instant>,
    last: Heartbeat,
    consecutive_failures: u32,
}

/// Per-server heartbeat bookkeeping.
///
/// A server is suspected only while its latest heartbeat failed, and then after
/// [`DetectorConfig::misses`] consecutive failures, [`DetectorConfig::timeout`] without success, or
/// at once on a refusal. One successful heartbeat clears the suspicion, so a single missed
/// heartbeat never triggers an election, and a stalled control plane (no heartbeats recorded at all)
/// does not suspect anyone.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    cfg: DetectorConfig,
    servers: BTreeMap<String, Health>,
}

impl FailureDetector {
    /// A detector that knows no server yet (none is suspected).
    pub fn new(cfg: DetectorConfig) -> Self {
        Self {
            cfg,
            servers: BTreeMap::new(),
        }
    }

    /// Its thresholds.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Records a heartbeat result observed at `now`.
    pub fn record(&mut self, server: &str, beat: Heartbeat, now: Instant) {
        let h = self.servers.entry(server.to_owned()).or_insert(Health {
            first_seen: now,
            last_ok: None,
            last: beat,
            consecutive_failures: 0,
        });
        h.last = beat;
        match beat {
            Heartbeat::Ok => {
                h.last_ok = Some(now);
                h.consecutive_failures = 0;
            }
            Heartbeat::Failed | Heartbeat::Refused => {
                h.consecutive_failures = h.consecutive_failures.saturating_add(1);
            }
        }
    }

    /// Whether `server` is suspected dead at `now`. A server never heard of is not suspected.
    pub fn suspected(&self, server: &str, now: Instant) -> bool {
        let Some(h) = self.servers.get(server) else {
            return false;
        };
        match h.last {
            Heartbeat::Ok => false,
            Heartbeat::Refused if self.cfg.suspect_on_refused => true,
            Heartbeat::Failed | Heartbeat::Refused => {
                let since = h.last_ok.unwrap_or(h.first_seen);
                h.consecutive_failures >= self.cfg.misses
                    || now.saturating_duration_since(since) >= self.cfg.timeout
            }
        }
    }

    /// Whether the latest heartbeat of `server` succeeded.
    pub fn reachable(&self, server: &str) -> bool {
        self.servers
            .get(server)
            .is_some_and(|h| h.last == Heartbeat::Ok)
    }

    /// Whether any heartbeat of `server` was recorded.
    pub fn observed(&self, server: &str) -> bool {
        self.servers.contains_key(server)
    }

    /// Consecutive failed heartbeats of `server`.
    pub fn failures(&self, server: &str) -> u32 {
        self.servers
            .get(server)
            .map_or(0, |h| h.consecutive_failures)
    }

    /// Drops what is known of `server` (it left the cluster).
    pub fn forget(&mut self, server: &str) {
        self.servers.remove(server);
    }
}
