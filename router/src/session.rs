//! Session consistency (docs/consistency.md): causality tokens and the router's own memory.
//!
//! A token holds, per shard, a log position (LSN) a read must see: the position an acknowledged
//! write reached, or the position a read was served at. Committed LSNs never change meaning
//! (a failover never truncates a committed entry), so "a replica that has applied LSN `n`" sees
//! every write acknowledged at or below `n`. Written as `sh1:120,sh2:7`, in the
//! `X-Walshard-Session` header of answers and requests and in the `"session"` field of JSON
//! answers (which the seed's clients ignore).

use std::collections::BTreeMap;
use std::sync::Mutex;

use walshard_contract::RequestError;

/// The header that carries a token, in answers and in requests.
pub const SESSION_HEADER: &str = "x-walshard-session";

/// Per-shard positions a read must see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionToken(BTreeMap<String, u64>);

impl SessionToken {
    /// Parses `sh1:120,sh2:7` (empty: no positions).
    pub fn parse(text: &str) -> Result<Self, RequestError> {
        let mut out = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = part
                .split_once(':')
                .and_then(|(shard, lsn)| Some((shard.trim(), lsn.trim().parse::<u64>().ok()?)))
                .filter(|(shard, _)| !shard.is_empty());
            let Some((shard, lsn)) = parsed else {
                return Err(RequestError::Invalid(format!(
                    "session token {text:?}: expected shard:lsn pairs separated by commas"
                )));
            };
            let at = out.entry(shard.to_owned()).or_insert(0);
            *at = (*at).max(lsn);
        }
        Ok(Self(out))
    }

    /// The position a read of `shard` must see (0: any).
    pub fn get(&self, shard: &str) -> u64 {
        self.0.get(shard).copied().unwrap_or(0)
    }

    /// Raises `shard`'s position to `lsn` (positions only grow).
    pub fn raise(&mut self, shard: &str, lsn: u64) {
        if lsn > 0 {
            let at = self.0.entry(shard.to_owned()).or_insert(0);
            *at = (*at).max(lsn);
        }
    }

    /// Whether the token names no shard (`parse("")`, or nothing raised above 0).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The shards this token names.
    pub fn shards(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl std::fmt::Display for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(s, l)| format!("{s}:{l}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// What this router acknowledged or served, per shard: every session read through it sees at
/// least this, so a client that sends no token still reads its own writes and never reads
/// backwards through the same router.
#[derive(Debug, Default)]
pub struct RouterMemory(Mutex<SessionToken>);

impl RouterMemory {
    /// The highest position this router acknowledged or served for `shard` (0: none yet).
    pub fn get(&self, shard: &str) -> u64 {
        match self.0.lock() {
            Ok(t) => t.get(shard),
            Err(poisoned) => poisoned.into_inner().get(shard),
        }
    }

    /// Raises `shard`'s remembered position to `lsn` (positions only grow; a poisoned lock is
    /// used as is).
    pub fn raise(&self, shard: &str, lsn: u64) {
        match self.0.lock() {
            Ok(mut t) => t.raise(shard, lsn),
            Err(poisoned) => poisoned.into_inner().raise(shard, lsn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_parse_merge_and_print() {
        let mut t = SessionToken::parse("sh1:120, sh2:7,sh1:3").expect("valid");
        assert_eq!((t.get("sh1"), t.get("sh2"), t.get("sh9")), (120, 7, 0));
        t.raise("sh2", 5);
        t.raise("sh3", 9);
        assert_eq!(t.to_string(), "sh1:120,sh2:7,sh3:9");
        assert!(SessionToken::parse("").expect("empty").is_empty());
        for bad in ["sh1", "sh1:x", ":4", "sh1:-1"] {
            assert!(SessionToken::parse(bad).is_err(), "{bad}");
        }
        let m = RouterMemory::default();
        m.raise("sh1", 4);
        m.raise("sh1", 2);
        assert_eq!(m.get("sh1"), 4);
    }

    proptest! {
        /// Printing and parsing a token gives it back; raising never lowers a position.
        #[test]
        fn round_trip_and_monotonic(pairs in proptest::collection::vec((0u8..5, 0u64..1000), 0..12)) {
            let mut t = SessionToken::default();
            for (shard, lsn) in &pairs {
                let name = format!("sh{shard}");
                let before = t.get(&name);
                t.raise(&name, *lsn);
                prop_assert!(t.get(&name) >= before && t.get(&name) >= *lsn);
            }
            prop_assert_eq!(SessionToken::parse(&t.to_string()).expect("parse"), t);
        }
    }
}
