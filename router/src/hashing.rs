//! Consistent hashing of requests onto servers: for an eventual read of a shard, which of the
//! shard's replicas serves it. Pure and small: a [`Ring`] is built once per server set (a shard's
//! replicas, or every server) and answers [`Ring::pick`] and [`Ring::pick_n`] without IO or
//! allocation (`pick_n` allocates its answer).
//!
//! Two modes, chosen by [`HashMode`] (`"default"` / `"seed"` in JSON and on the command line):
//!
//! # `default`: rendezvous hashing with XXH3
//!
//! Rendezvous (highest-random-weight) hashing: every server `s` gives the request id a weight
//!
//! ```text
//! w(s, id) = XXH3-64(id as 8 little-endian bytes, seed = XXH3-64(name of s as UTF-8))
//! ```
//!
//! and the request goes to the server of highest weight ([`Ring::pick`]); [`Ring::pick_n`] lists
//! the servers by descending weight, the fallback order when the first is down. Equal weights
//! (a 2⁻⁶⁴ event) go to the lexicographically smaller name. XXH3 is a fixed, published hash
//! (stable output since xxHash 0.8.0; here from the `xxhash-rust` crate), so every router, on
//! every Rust version, picks the same server for the same id; std's `DefaultHasher` makes no such
//! promise.
//!
//! Why rendezvous, weighed against the alternatives:
//!
//! - **Balance**: each id's winner is an independent, uniform draw over the servers, so the load
//!   is as even as sampling allows, with no tuning. Measured (test `default_distribution`):
//!   100,000 sequential ids over `Server0..Server5` give max/mean **1.005** (min/mean 0.997);
//!   100,000 random ids give **1.008** (0.992); other name sets (3, 5, 6 and 12 servers) stay at
//!   or below 1.016. A ring needs hundreds of virtual nodes per server to get within 1.15 (its
//!   imbalance shrinks only as 1/√vnodes) and the memory that goes with them.
//! - **Movement** is minimal by construction: adding a server moves exactly the ids it now wins
//!   (measured: 14,117 of 100,000 = 0.99 × 1/7 when `Server6` joins six, every one of them to
//!   `Server6`); removing a server moves exactly its own ids (16,710 for `Server2`, no other).
//!   Jump consistent hash balances as well and looks up in O(log N), but numbers its buckets:
//!   removing `Server2` of `Server0..Server5` renumbers the later ones and moves ids among the
//!   survivors. Maglev's O(1) table moves some ids of surviving servers on every change.
//! - **Failover spreads**: the second choice of the ids a server wins is again uniform over the
//!   others, so a failed replica's reads spread evenly over the survivors (measured max/mean
//!   1.023 for `Server0`'s ids over the other five) instead of all landing on one ring
//!   neighbour; and `pick_n(id, n)[1..]` is exactly `pick_n` without the first server.
//! - **Identity by name**: the result depends only on the set of names, not their order nor any
//!   numbering, so routers that learn the servers in different orders agree.
//! - **Cost**: a lookup hashes the id once per server, O(N), with no table and a branch-free
//!   maximum. For a shard's replicas that is as fast as a ring's binary search. Measured by
//!   `cargo bench -p walshard-router --bench hashing` on this 2-core machine: `pick` takes
//!   5.8 ns for 3 servers, 10.3 ns for 6, 95 ns for 56 and 165 ns for 100 (baselines in the
//!   same run: `id % n` 2.5 ns, one XXH3 of the id 1.0 ns); `pick_n(id, 2)` takes 35 ns for 3,
//!   62 ns for 6 and 291 ns for 100 servers (it allocates its answer). All far below the cost
//!   of the read it routes; a ring over all of 100 servers would look up faster, at the price
//!   of balance or memory, which is not where the router's time goes.
//!
//! # `seed`: the seed's ring, for compatibility
//!
//! The seed's load balancer, reproduced: a ring of [`SEED_SLOTS`] = 512 slots; every server `i`
//! places [`SEED_VNODES`] = 9 virtual nodes `j = 0..9` at `Φ(i, j) = i² + j² + 2j + 25 mod 512`,
//! moving to the next free slot (linear probing, wrapping from 511 to 0) when the slot is taken;
//! a request id `i` hashes to `H(i) = i² + 2i + 17 mod 512` and goes to the first virtual node
//! clockwise from that slot (the slot itself included, wrapping around past 511). `pick_n`
//! continues clockwise, skipping servers already listed.
//!
//! - A server's number `i` is the value of the trailing decimal digits of its name (`"Server7"` →
//!   7, `"Server042"` → 42, `"db-12"` → 12), taken mod 2⁶⁴ (which leaves every value mod 512
//!   exact); a name without trailing digits uses `XXH3-64(name)` ([`seed_server_number`]).
//! - Servers place their virtual nodes in order of `(i, name)`, whatever order they are given
//!   in: the seed added servers in creation order, which is this order for `Server0, Server1,
//!   ...`, and every router builds the same ring from the same set.
//! - At most [`SEED_MAX_SERVERS`] = 56 servers (9 × 57 > 512): more is
//!   [`HashError::TooManyServers`].
//!
//! The seed's hashes are quadratic and distribute poorly: `H(i) = (i + 1)² + 16`, and squares
//! take only 87 of the 512 residues mod 512, so requests land on 87 slots at most;
//! `Φ(i, j) = i² + (j + 1)² + 24` puts the virtual nodes of consecutive servers side by side
//! (`Server0` at 25, 28, 33, …; `Server1` at 26, 29, 34, …), so `Server0` owns the long arcs.
//! Measured (test `seed_statistics`, printed, not asserted): 100,000 sequential ids over
//! `Server0..Server5` give max/mean **4.73** (`Server0` serves 78,906 of them, `Server1` 1,563);
//! random ids give 4.74. Adding `Server6` moves 781 ids (0.05 × 1/7), all to `Server6`; removing
//! `Server2` moves its 3,125 ids and no other (probing can shift other servers' nodes in
//! general, so that is not guaranteed); every id of `Server0` falls back to `Server1`. Use it to
//! reproduce the seed's behaviour, not to spread load. Its lookup is a table read: 2.2 ns.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Slots on the seed's ring.
pub const SEED_SLOTS: usize = 512;
/// Virtual nodes per server on the seed's ring.
pub const SEED_VNODES: usize = 9;
/// The most servers the seed's ring can place: `SEED_SLOTS / SEED_VNODES`.
pub const SEED_MAX_SERVERS: usize = SEED_SLOTS / SEED_VNODES;

/// How requests are hashed onto servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashMode {
    /// Rendezvous hashing with XXH3 weights: even spread, minimal movement.
    #[default]
    Default,
    /// The seed's 512-slot ring with quadratic hashes, for compatibility.
    Seed,
}

impl HashMode {
    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            HashMode::Default => "default",
            HashMode::Seed => "seed",
        }
    }
}

impl fmt::Display for HashMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HashMode {
    type Err = HashError;

    /// `"default"` or `"seed"`, ASCII case ignored.
    fn from_str(s: &str) -> Result<HashMode, HashError> {
        if s.eq_ignore_ascii_case("default") {
            Ok(HashMode::Default)
        } else if s.eq_ignore_ascii_case("seed") {
            Ok(HashMode::Seed)
        } else {
            Err(HashError::UnknownMode(s.to_string()))
        }
    }
}

/// Why a [`Ring`] could not be built or a [`HashMode`] parsed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HashError {
    /// The named server appears more than once in the ring's server list.
    #[error("server {0} is listed twice")]
    DuplicateServer(String),
    /// [`HashMode::Seed`] was asked to place more than [`SEED_MAX_SERVERS`] servers.
    #[error(
        "the seed's ring has {SEED_SLOTS} slots for {SEED_VNODES} virtual nodes per server: \
         at most {max} servers, got {servers}"
    )]
    TooManyServers {
        /// How many servers were given.
        servers: usize,
        /// The most the seed's ring holds ([`SEED_MAX_SERVERS`]).
        max: usize,
    },
    /// A mode name other than `default` or `seed` (ASCII case ignored).
    #[error("unknown hash mode {0:?}: expected \"default\" or \"seed\"")]
    UnknownMode(String),
}

/// Servers and the structure that maps request ids onto them.
#[derive(Debug, Clone)]
pub struct Ring {
    mode: HashMode,
    /// As given.
    servers: Vec<String>,
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Rendezvous(Rendezvous),
    Seed(SeedRing),
}

impl Ring {
    /// A ring over `servers` (the replicas of one shard, or all servers). An empty list gives a
    /// ring that picks nothing. Errors: a name listed twice; in [`HashMode::Seed`], more than
    /// [`SEED_MAX_SERVERS`] servers.
    pub fn new(mode: HashMode, servers: &[String]) -> Result<Ring, HashError> {
        let mut names: Vec<&str> = servers.iter().map(String::as_str).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(HashError::DuplicateServer(pair[0].to_string()));
        }
        let inner = match mode {
            HashMode::Default => Inner::Rendezvous(Rendezvous::new(servers)),
            HashMode::Seed => Inner::Seed(SeedRing::new(servers)?),
        };
        Ok(Ring {
            mode,
            servers: servers.to_vec(),
            inner,
        })
    }

    /// The server for `request_id`; `None` only if the ring has no server.
    pub fn pick(&self, request_id: u64) -> Option<&str> {
        let index = match &self.inner {
            Inner::Rendezvous(r) => r.pick(request_id),
            Inner::Seed(r) => r.pick(request_id),
        }?;
        Some(&self.servers[index])
    }

    /// Up to `n` distinct servers for `request_id`, best first: `min(n, servers().len())` of
    /// them, the first being [`Ring::pick`]'s. The rest are the fallbacks when the first is down:
    /// by descending weight in [`HashMode::Default`] (the second is where the id goes if the
    /// first server is removed), clockwise around the ring in [`HashMode::Seed`].
    pub fn pick_n(&self, request_id: u64, n: usize) -> Vec<&str> {
        let n = n.min(self.servers.len());
        if n == 0 {
            return Vec::new();
        }
        match &self.inner {
            Inner::Rendezvous(r) => r.pick_n(&self.servers, request_id, n),
            Inner::Seed(r) => r.pick_n(&self.servers, request_id, n),
        }
    }

    /// The servers, in the order given to [`Ring::new`].
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// The hashing the ring was built with.
    pub fn mode(&self) -> HashMode {
        self.mode
    }
}

// ---------------------------------------------------------------------------------------------
// Default mode: rendezvous hashing.

#[derive(Debug, Clone)]
struct Rendezvous {
    /// One per server, sorted by name (so ties go to the smaller name by keeping the first).
    members: Vec<Member>,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    /// `XXH3-64(name)`.
    seed: u64,
    /// Index into `Ring::servers`.
    index: usize,
}

/// The weight of server `seed` for `request_id`.
#[inline]
fn weight(seed: u64, request_id: u64) -> u64 {
    xxh3_64_with_seed(&request_id.to_le_bytes(), seed)
}

impl Rendezvous {
    fn new(servers: &[String]) -> Rendezvous {
        let mut members: Vec<(&str, Member)> = servers
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let seed = xxh3_64(name.as_bytes());
                (name.as_str(), Member { seed, index })
            })
            .collect();
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Rendezvous {
            members: members.into_iter().map(|(_, m)| m).collect(),
        }
    }

    #[inline]
    fn pick(&self, request_id: u64) -> Option<usize> {
        let (first, rest) = self.members.split_first()?;
        let mut best = first.index;
        let mut best_weight = weight(first.seed, request_id);
        for member in rest {
            let w = weight(member.seed, request_id);
            // Strictly greater: on a tie the earlier (smaller) name stays. Branch-free, as
            // which server wins is a coin toss the branch predictor cannot learn.
            let better = w > best_weight;
            best_weight = std::hint::select_unpredictable(better, w, best_weight);
            best = std::hint::select_unpredictable(better, member.index, best);
        }
        Some(best)
    }

    /// The best `n` servers, `1 <= n <= members.len()`, best first.
    fn pick_n<'a>(&self, servers: &'a [String], request_id: u64, n: usize) -> Vec<&'a str> {
        // Best first: descending weight, then ascending name (position in `members`).
        let mut top: Vec<(u64, usize)>;
        if n <= 8 {
            // Insertion into a short sorted list: no sort, one allocation (reused below).
            top = Vec::with_capacity(n + 1);
            for (pos, member) in self.members.iter().enumerate() {
                let w = weight(member.seed, request_id);
                if top.len() == n && top[n - 1].0 >= w {
                    continue;
                }
                // After every equal weight: those have smaller names.
                let at = top.partition_point(|&(other, _)| other >= w);
                top.insert(at, (w, pos));
                top.truncate(n);
            }
        } else {
            top = self
                .members
                .iter()
                .enumerate()
                .map(|(pos, member)| (weight(member.seed, request_id), pos))
                .collect();
            let best_first = |a: &(u64, usize), b: &(u64, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
            if n < top.len() {
                top.select_nth_unstable_by(n - 1, best_first);
                top.truncate(n);
            }
            top.sort_unstable_by(best_first);
        }
        top.into_iter()
            .map(|(_, pos)| servers[self.members[pos].index].as_str())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Seed mode: the seed's 512-slot ring.

#[derive(Debug, Clone)]
struct SeedRing {
    /// Virtual nodes sorted by slot: `(slot, index into Ring::servers)`.
    vnodes: Vec<(u16, usize)>,
    /// For every slot, the position in `vnodes` of the first virtual node at or after it
    /// (clockwise, wrapping). Empty when there is no server.
    first_at: Vec<u16>,
}

/// A server's number on the seed's ring: its trailing decimal digits (mod 2⁶⁴), else
/// `XXH3-64(name)`.
pub fn seed_server_number(name: &str) -> u64 {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return xxh3_64(name.as_bytes());
    }
    name.as_bytes()[name.len() - digits..]
        .iter()
        .fold(0u64, |acc, d| {
            acc.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
        })
}

/// The seed's request hash `H(i) = i² + 2i + 17`, as a slot (mod 512). Wrapping arithmetic mod
/// 2⁶⁴ is exact mod 512, which divides 2⁶⁴.
pub fn seed_request_slot(request_id: u64) -> usize {
    let i = request_id;
    let h = i
        .wrapping_mul(i)
        .wrapping_add(i.wrapping_mul(2))
        .wrapping_add(17);
    (h % SEED_SLOTS as u64) as usize
}

/// The seed's virtual-node hash `Φ(i, j) = i² + j² + 2j + 25`, as a slot (mod 512), before
/// probing.
pub fn seed_vnode_slot(server_number: u64, vnode: u64) -> usize {
    let (i, j) = (server_number, vnode);
    let h = i
        .wrapping_mul(i)
        .wrapping_add(j.wrapping_mul(j))
        .wrapping_add(j.wrapping_mul(2))
        .wrapping_add(25);
    (h % SEED_SLOTS as u64) as usize
}

/// Linear probing: the first free slot at or after `slot`, wrapping; `None` if all are taken.
fn probe(taken: &[bool; SEED_SLOTS], slot: usize) -> Option<usize> {
    (0..SEED_SLOTS)
        .map(|step| (slot + step) % SEED_SLOTS)
        .find(|&s| !taken[s])
}

impl SeedRing {
    fn new(servers: &[String]) -> Result<SeedRing, HashError> {
        if servers.len() > SEED_MAX_SERVERS {
            return Err(HashError::TooManyServers {
                servers: servers.len(),
                max: SEED_MAX_SERVERS,
            });
        }
        let mut order: Vec<(u64, &str, usize)> = servers
            .iter()
            .enumerate()
            .map(|(index, name)| (seed_server_number(name), name.as_str(), index))
            .collect();
        order.sort_unstable();
        let mut taken = [false; SEED_SLOTS];
        let mut owner = [usize::MAX; SEED_SLOTS];
        for &(number, _, index) in &order {
            for j in 0..SEED_VNODES as u64 {
                // At most 56 × 9 = 504 of 512 slots are ever taken: probing always finds one.
                let slot =
                    probe(&taken, seed_vnode_slot(number, j)).ok_or(HashError::TooManyServers {
                        servers: servers.len(),
                        max: SEED_MAX_SERVERS,
                    })?;
                taken[slot] = true;
                owner[slot] = index;
            }
        }
        let vnodes: Vec<(u16, usize)> = (0..SEED_SLOTS)
            .filter(|&s| taken[s])
            .map(|s| (s as u16, owner[s]))
            .collect();
        let mut first_at = Vec::new();
        if !vnodes.is_empty() {
            first_at = vec![0u16; SEED_SLOTS];
            // Walk backwards: slots after the last virtual node wrap to position 0.
            let mut next = 0usize;
            let mut pos = vnodes.len();
            for slot in (0..SEED_SLOTS).rev() {
                if pos > 0 && usize::from(vnodes[pos - 1].0) == slot {
                    pos -= 1;
                    next = pos;
                }
                first_at[slot] = next as u16;
            }
        }
        Ok(SeedRing { vnodes, first_at })
    }

    #[inline]
    fn pick(&self, request_id: u64) -> Option<usize> {
        let pos = *self.first_at.get(seed_request_slot(request_id))?;
        Some(self.vnodes[usize::from(pos)].1)
    }

    /// `1 <= n <= number of servers`; every server has virtual nodes, so one lap finds `n`.
    fn pick_n<'a>(&self, servers: &'a [String], request_id: u64, n: usize) -> Vec<&'a str> {
        let Some(&start) = self.first_at.get(seed_request_slot(request_id)) else {
            return Vec::new();
        };
        let mut picked: Vec<&str> = Vec::with_capacity(n);
        let len = self.vnodes.len();
        for step in 0..len {
            let server = servers[self.vnodes[(usize::from(start) + step) % len].1].as_str();
            // Names are distinct: the same name is the same string.
            if !picked.iter().any(|p| std::ptr::eq(*p, server)) {
                picked.push(server);
                if picked.len() == n {
                    break;
                }
            }
        }
        picked
    }
}

#[cfg(test)]
mod tests;
