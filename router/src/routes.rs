//! Where requests go: the fleet layout, each server's URL, and per shard a consistent-hash ring
//! over its replicas (for eventual reads). Primaries change with elections, so they come from a
//! [`Primaries`] source at request time instead of being stored here.

use std::collections::BTreeMap;

use walshard_contract::{Ident, Topology};

use crate::hashing::{HashError, HashMode, Ring};
use crate::layout::Layout;

/// Why [`Routes::new`] refused a layout.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// The named server is in the placement but was given no base URL.
    #[error("server {0} holds shards but has no URL")]
    NoUrl(String),
    /// The ring over a shard's replicas could not be built.
    #[error("hash ring of shard {shard}: {source}")]
    Ring {
        /// The shard whose ring failed.
        shard: String,
        /// Why the ring failed.
        source: HashError,
    },
}

/// Who is the writable primary of a shard right now (the control plane's published topology).
pub trait Primaries: Send + Sync + 'static {
    /// The server name of `shard`'s current primary; `None` while it has none (an election)
    /// or the shard is unknown.
    fn primary(&self, shard: &str) -> Option<String>;
}

/// A watched topology, e.g. a running control plane's (`ControlPlaneHandle::watch`).
impl Primaries for tokio::sync::watch::Receiver<Topology> {
    fn primary(&self, shard: &str) -> Option<String> {
        self.borrow().primary(shard).map(str::to_owned)
    }
}

/// The routing view of one layout.
#[derive(Debug)]
pub struct Routes {
    /// The layout the routes were built from; every server of its placement has a URL.
    pub layout: Layout,
    urls: BTreeMap<Ident, String>,
    rings: BTreeMap<Ident, Ring>,
}

impl Routes {
    /// `urls` gives each server's base URL (every server of the placement needs one).
    pub fn new(
        layout: Layout,
        urls: BTreeMap<Ident, String>,
        mode: HashMode,
    ) -> Result<Routes, RoutesError> {
        if let Some(s) = layout.placement.keys().find(|s| !urls.contains_key(*s)) {
            return Err(RoutesError::NoUrl(s.to_string()));
        }
        let mut rings = BTreeMap::new();
        for shard in layout.shards() {
            let replicas: Vec<String> = layout
                .replicas(&shard.id)
                .into_iter()
                .map(Ident::to_string)
                .collect();
            let ring = Ring::new(mode, &replicas).map_err(|source| RoutesError::Ring {
                shard: shard.id.to_string(),
                source,
            })?;
            rings.insert(shard.id.clone(), ring);
        }
        Ok(Routes {
            layout,
            urls,
            rings,
        })
    }

    /// A server's base URL.
    pub fn url(&self, server: &str) -> Option<&str> {
        Ident::new(server)
            .ok()
            .and_then(|s| self.urls.get(&s))
            .map(String::as_str)
    }

    /// The shard's replicas in the order an eventual read with `request_id` should try them:
    /// the consistent-hash pick first, then the others around the ring.
    pub fn read_order(&self, shard: &Ident, request_id: u64) -> Vec<&str> {
        self.rings
            .get(shard)
            .map(|r| r.pick_n(request_id, r.servers().len()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::{id, seed_layout};

    fn urls() -> BTreeMap<Ident, String> {
        (0..6)
            .map(|i| {
                (
                    id(&format!("Server{i}")),
                    format!("http://127.0.0.1:{}", 7000 + i),
                )
            })
            .collect()
    }

    #[test]
    fn reads_try_every_replica_of_the_shard_once() {
        let r = Routes::new(seed_layout(), urls(), HashMode::Default).expect("routes");
        let mut order = r.read_order(&id("sh1"), 42);
        assert_eq!(order.len(), 3);
        order.sort();
        assert_eq!(order, ["Server0", "Server2", "Server4"]);
        assert_eq!(r.url("Server3"), Some("http://127.0.0.1:7003"));
        assert_eq!(r.url("nope"), None);
    }

    #[test]
    fn every_server_needs_a_url() {
        let mut u = urls();
        u.remove(&id("Server5"));
        assert!(matches!(
            Routes::new(seed_layout(), u, HashMode::Default),
            Err(RoutesError::NoUrl(_))
        ));
    }
}
