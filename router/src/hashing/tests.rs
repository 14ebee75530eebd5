use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Server{i}")).collect()
}

const IDS: u64 = 100_000;

/// SplitMix64: a fixed stream of well-mixed "random" request ids.
fn random_ids(count: u64) -> impl Iterator<Item = u64> {
    let mut state = 0x5eed_u64;
    (0..count).map(move |_| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// Requests per server (every server present, possibly with 0).
fn spread(ring: &Ring, ids: impl Iterator<Item = u64>) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> =
        ring.servers().iter().map(|s| (s.clone(), 0)).collect();
    for id in ids {
        let server = ring.pick(id).expect("non-empty ring");
        *counts.get_mut(server).expect("a member") += 1;
    }
    counts
}

/// (max/mean, min/mean).
fn balance(counts: &BTreeMap<String, usize>) -> (f64, f64) {
    let total: usize = counts.values().sum();
    let mean = total as f64 / counts.len() as f64;
    let max = *counts.values().max().expect("servers") as f64;
    let min = *counts.values().min().expect("servers") as f64;
    (max / mean, min / mean)
}

/// Ids whose pick differs between two rings: (id, before, after).
fn moved<'a>(before: &'a Ring, after: &'a Ring, ids: &[u64]) -> Vec<(u64, &'a str, &'a str)> {
    ids.iter()
        .filter_map(|&id| {
            let (b, a) = (before.pick(id)?, after.pick(id)?);
            (a != b).then_some((id, b, a))
        })
        .collect()
}

fn without(servers: &[String], gone: &str) -> Vec<String> {
    servers.iter().filter(|s| *s != gone).cloned().collect()
}

/// For the ids `first` wins, how their second choices spread over the others.
fn failover_spread(ring: &Ring, first: &str) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = ring
        .servers()
        .iter()
        .filter(|s| *s != first)
        .map(|s| (s.clone(), 0))
        .collect();
    for id in 0..IDS {
        let two = ring.pick_n(id, 2);
        if two[0] == first {
            *counts.get_mut(two[1]).expect("a member") += 1;
        }
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// HashMode

#[test]
fn mode_names() {
    assert_eq!("default".parse::<HashMode>(), Ok(HashMode::Default));
    assert_eq!("seed".parse::<HashMode>(), Ok(HashMode::Seed));
    assert_eq!("Seed".parse::<HashMode>(), Ok(HashMode::Seed));
    assert_eq!(
        "ring".parse::<HashMode>(),
        Err(HashError::UnknownMode("ring".into()))
    );
    assert_eq!(HashMode::default(), HashMode::Default);
    assert_eq!(HashMode::Seed.to_string(), "seed");
    assert_eq!(
        serde_json::to_string(&HashMode::Default).expect("json"),
        "\"default\""
    );
    assert_eq!(
        serde_json::from_str::<HashMode>("\"seed\"").expect("json"),
        HashMode::Seed
    );
    assert!(serde_json::from_str::<HashMode>("\"Seed\"").is_err());
}

#[test]
fn empty_rings_pick_nothing() {
    for mode in [HashMode::Default, HashMode::Seed] {
        let ring = Ring::new(mode, &[]).expect("empty ring");
        assert_eq!(ring.pick(7), None);
        assert!(ring.pick_n(7, 3).is_empty());
        assert!(ring.servers().is_empty());
        assert_eq!(ring.mode(), mode);
    }
}

#[test]
fn duplicate_servers_are_refused() {
    for mode in [HashMode::Default, HashMode::Seed] {
        let err = Ring::new(mode, &names(&["Server1", "Server0", "Server1"])).unwrap_err();
        assert_eq!(err, HashError::DuplicateServer("Server1".into()));
    }
}

#[test]
fn single_server_gets_everything() {
    for mode in [HashMode::Default, HashMode::Seed] {
        let ring = Ring::new(mode, &names(&["Server3"])).expect("ring");
        for id in random_ids(1000) {
            assert_eq!(ring.pick(id), Some("Server3"));
            assert_eq!(ring.pick_n(id, 4), vec!["Server3"]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Seed mode: hand-computed examples

#[test]
fn seed_server_numbers() {
    assert_eq!(seed_server_number("Server0"), 0);
    assert_eq!(seed_server_number("Server7"), 7);
    assert_eq!(seed_server_number("Server42"), 42);
    assert_eq!(seed_server_number("Server042"), 42);
    assert_eq!(seed_server_number("db-12"), 12);
    assert_eq!(seed_server_number("5"), 5);
    assert_eq!(seed_server_number("Server"), xxh3_64(b"Server"));
    assert_eq!(seed_server_number(""), xxh3_64(b""));
    // More digits than a u64 holds: the value mod 2^64, exact mod 512.
    let long = "Server12345678901234567890123";
    let exact: u128 = 12_345_678_901_234_567_890_123;
    assert_eq!(
        seed_server_number(long) % 512,
        (exact % 512) as u64,
        "the mod-512 value survives wrapping"
    );
}

#[test]
fn seed_vnode_hash_by_hand() {
    // Φ(i, j) = i² + j² + 2j + 25.
    // Server0 (i = 0): 0 + 0 + 0 + 25 = 25; j = 1: 1 + 2 + 25 = 28; j = 2: 4 + 4 + 25 = 33;
    // j = 3: 9 + 6 + 25 = 40; j = 4: 16 + 8 + 25 = 49; ... j = 8: 64 + 16 + 25 = 105.
    let server0: Vec<usize> = (0..9).map(|j| seed_vnode_slot(0, j)).collect();
    assert_eq!(server0, [25, 28, 33, 40, 49, 60, 73, 88, 105]);
    // Server1 (i = 1): one more than Server0's: 26, 29, 34, ...
    let server1: Vec<usize> = (0..9).map(|j| seed_vnode_slot(1, j)).collect();
    assert_eq!(server1, [26, 29, 34, 41, 50, 61, 74, 89, 106]);
    // Server30, j = 5: 900 + 25 + 10 + 25 = 960 = 512 + 448.
    assert_eq!(seed_vnode_slot(30, 5), 448);
    // Server32: 1024 = 2 × 512, so exactly Server0's slots (they collide, see the probing test).
    assert_eq!(seed_vnode_slot(32, 3), 40);
}

#[test]
fn seed_request_hash_by_hand() {
    // H(i) = i² + 2i + 17.
    assert_eq!(seed_request_slot(0), 17);
    assert_eq!(seed_request_slot(1), 20); // 1 + 2 + 17
    assert_eq!(seed_request_slot(2), 25); // 4 + 4 + 17
    assert_eq!(seed_request_slot(4), 41); // 16 + 8 + 17
    assert_eq!(seed_request_slot(9), 116); // 81 + 18 + 17
    assert_eq!(seed_request_slot(100), 489); // 10217 = 19 × 512 + 489
    // A 6-digit id like the seed's: 123456² + 246912 + 17 = 15241383936 + 246929
    // = 15241630865 = 29768810 × 512 + 145.
    assert_eq!(seed_request_slot(123_456), 145);
    // Large ids wrap mod 2^64, which is exact mod 512: (2^64 - 1)² + 2(2^64 - 1) + 17 ≡ 1 - 2 + 17.
    assert_eq!(seed_request_slot(u64::MAX), 16);
}

#[test]
fn seed_picks_by_hand() {
    // Server0 at 25, 28, 33, 40, 49, 60, 73, 88, 105; Server1 at 26, 29, 34, 41, 50, 61, 74, 89,
    // 106 (see above).
    let ring = Ring::new(HashMode::Seed, &names(&["Server0", "Server1"])).expect("ring");
    // id 0 → slot 17 → first node clockwise is 25 (Server0).
    assert_eq!(ring.pick(0), Some("Server0"));
    // id 2 → slot 25, a node's own slot: that node (Server0).
    assert_eq!(ring.pick(2), Some("Server0"));
    // id 3 → slot 32 → 33 (Server0).
    assert_eq!(ring.pick(3), Some("Server0"));
    // id 4 → slot 41 → Server1's node at 41.
    assert_eq!(ring.pick(4), Some("Server1"));
    // id 9 → slot 116, past the last node (106): wraps to 25 (Server0).
    assert_eq!(ring.pick(9), Some("Server0"));
    // Fallback goes clockwise: after 41 (Server1) comes 49 (Server0).
    assert_eq!(ring.pick_n(4, 2), ["Server1", "Server0"]);
    assert_eq!(ring.pick_n(4, 9), ["Server1", "Server0"]);
    assert_eq!(ring.pick_n(0, 1), ["Server0"]);
}

fn seed_layout(ring: &Ring) -> Vec<(usize, &str)> {
    let Inner::Seed(seed) = &ring.inner else {
        panic!("not a seed ring")
    };
    seed.vnodes
        .iter()
        .map(|&(slot, index)| (usize::from(slot), ring.servers[index].as_str()))
        .collect()
}

fn slots_of(layout: &[(usize, &str)], server: &str) -> Vec<usize> {
    layout
        .iter()
        .filter(|(_, s)| *s == server)
        .map(|(slot, _)| *slot)
        .collect()
}

#[test]
fn seed_collisions_probe_to_the_next_free_slot() {
    // Server32's natural slots equal Server0's (32² = 2 × 512): Server0 places first (lower
    // number), Server32 moves to the next slot each time.
    let ring = Ring::new(HashMode::Seed, &names(&["Server32", "Server0"])).expect("ring");
    let layout = seed_layout(&ring);
    assert_eq!(
        slots_of(&layout, "Server0"),
        [25, 28, 33, 40, 49, 60, 73, 88, 105]
    );
    assert_eq!(
        slots_of(&layout, "Server32"),
        [26, 29, 34, 41, 50, 61, 74, 89, 106]
    );
    // With Server1 in between (26, 29, ...), Server32 probes two slots on: 25 → 26 → 27.
    let ring =
        Ring::new(HashMode::Seed, &names(&["Server32", "Server1", "Server0"])).expect("ring");
    let layout = seed_layout(&ring);
    assert_eq!(
        slots_of(&layout, "Server1"),
        [26, 29, 34, 41, 50, 61, 74, 89, 106]
    );
    assert_eq!(
        slots_of(&layout, "Server32"),
        [27, 30, 35, 42, 51, 62, 75, 90, 107]
    );
    // A request at slot 41 (id 4) still goes to Server1's node there; slot 42 would be Server32's.
    assert_eq!(ring.pick(4), Some("Server1"));
    assert_eq!(ring.pick_n(4, 3), ["Server1", "Server32", "Server0"]);
    // Same number, different names ("Server1", "Replica1"): ordered by name, probing as above.
    let ring = Ring::new(HashMode::Seed, &names(&["Server1", "Replica1"])).expect("ring");
    let layout = seed_layout(&ring);
    assert_eq!(
        slots_of(&layout, "Replica1"),
        [26, 29, 34, 41, 50, 61, 74, 89, 106]
    );
    assert_eq!(
        slots_of(&layout, "Server1"),
        [27, 30, 35, 42, 51, 62, 75, 90, 107]
    );
}

#[test]
fn probing_wraps_past_the_last_slot() {
    let mut taken = [false; SEED_SLOTS];
    assert_eq!(probe(&taken, 7), Some(7));
    taken[511] = true;
    assert_eq!(probe(&taken, 511), Some(0));
    taken[0] = true;
    taken[1] = true;
    assert_eq!(probe(&taken, 510), Some(510));
    taken[510] = true;
    assert_eq!(probe(&taken, 510), Some(2));
    let full = [true; SEED_SLOTS];
    assert_eq!(probe(&full, 3), None);
}

#[test]
fn seed_ring_holds_at_most_56_servers() {
    assert_eq!(SEED_MAX_SERVERS, 56);
    let ring = Ring::new(HashMode::Seed, &numbered(56)).expect("56 fit");
    assert_eq!(seed_layout(&ring).len(), 56 * 9);
    let err = Ring::new(HashMode::Seed, &numbered(57)).unwrap_err();
    assert_eq!(
        err,
        HashError::TooManyServers {
            servers: 57,
            max: 56
        }
    );
    assert!(err.to_string().contains("at most 56 servers, got 57"));
    // The default mode has no such limit.
    let ring = Ring::new(HashMode::Default, &numbered(1000)).expect("1000 servers");
    assert!(ring.pick(1).is_some());
}

#[test]
fn seed_request_slots_are_few() {
    // H(i) mod 512 depends on i mod 512 only: count the slots it can reach at all.
    let reachable: BTreeSet<usize> = (0..512).map(seed_request_slot).collect();
    println!("seed: H(i) reaches {} of 512 slots", reachable.len());
    assert_eq!(reachable.len(), 87);
}

// ---------------------------------------------------------------------------------------------
// Default mode

#[test]
fn default_uses_xxh3_as_published() {
    // XXH3-64 of the empty input, from the reference implementation's test vectors.
    assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
    // Pinned picks: a change of hash or algorithm shows here (routers of different versions
    // must agree on where an id goes).
    let ring = Ring::new(HashMode::Default, &numbered(6)).expect("ring");
    let picks: Vec<&str> = (0..8).map(|id| ring.pick(id).expect("pick")).collect();
    assert_eq!(picks, GOLDEN_PICKS);
}

const GOLDEN_PICKS: [&str; 8] = [
    "Server1", "Server2", "Server2", "Server0", "Server1", "Server4", "Server4", "Server4",
];

#[test]
fn default_distribution() {
    let ring = Ring::new(HashMode::Default, &numbered(6)).expect("ring");
    for (label, counts) in [
        ("sequential", spread(&ring, 0..IDS)),
        ("random", spread(&ring, random_ids(IDS))),
    ] {
        let (max, min) = balance(&counts);
        println!(
            "default, {IDS} {label} ids over 6 servers: max/mean {max:.3}, min/mean {min:.3}: {counts:?}"
        );
        assert!(max <= 1.15, "{label}: max/mean {max}");
        assert_eq!(counts.values().sum::<usize>(), IDS as usize);
    }
}

#[test]
fn default_distribution_for_other_names() {
    // Not just Server0..5: other schemes and counts.
    let sets: Vec<Vec<String>> = vec![
        names(&["a", "b", "c"]),
        (1..=5).map(|i| format!("mysql-{i}.walshard.svc")).collect(),
        (0..6).map(|i| format!("Server{}", i * 100 + 7)).collect(),
        numbered(12),
    ];
    for servers in sets {
        let ring = Ring::new(HashMode::Default, &servers).expect("ring");
        let (max, _) = balance(&spread(&ring, random_ids(IDS)));
        println!(
            "default, {} servers {:?}...: max/mean {max:.3}",
            servers.len(),
            servers[0]
        );
        assert!(max <= 1.15, "{servers:?}: max/mean {max}");
    }
}

#[test]
fn default_adding_a_server_moves_only_to_it() {
    let six = Ring::new(HashMode::Default, &numbered(6)).expect("ring");
    let seven = Ring::new(HashMode::Default, &numbered(7)).expect("ring");
    let ids: Vec<u64> = (0..IDS).collect();
    let moved = moved(&six, &seven, &ids);
    let share = moved.len() as f64 / IDS as f64;
    println!(
        "default, adding Server6 to six: {} of {IDS} ids moved ({:.2} × 1/7)",
        moved.len(),
        share * 7.0
    );
    assert!(share <= 1.5 / 7.0, "moved {share}");
    assert!(
        share >= 0.5 / 7.0,
        "the new server takes its share: {share}"
    );
    assert!(moved.iter().all(|(_, _, to)| *to == "Server6"));
}

#[test]
fn default_removing_a_server_moves_only_its_ids() {
    let all = numbered(6);
    let six = Ring::new(HashMode::Default, &all).expect("ring");
    let five = Ring::new(HashMode::Default, &without(&all, "Server2")).expect("ring");
    let ids: Vec<u64> = (0..IDS).collect();
    let moved = moved(&six, &five, &ids);
    let had = ids
        .iter()
        .filter(|&&id| six.pick(id) == Some("Server2"))
        .count();
    println!(
        "default, removing Server2 of six: {} of {IDS} ids moved",
        moved.len()
    );
    assert!(moved.iter().all(|(_, from, _)| *from == "Server2"));
    assert_eq!(moved.len(), had, "every id of Server2 moved, no other");
}

#[test]
fn default_failover_spreads_evenly() {
    let ring = Ring::new(HashMode::Default, &numbered(6)).expect("ring");
    let counts = failover_spread(&ring, "Server0");
    let (max, min) = balance(&counts);
    println!(
        "default, second choices of Server0's ids: max/mean {max:.3}, min/mean {min:.3}: {counts:?}"
    );
    assert!(max <= 1.15, "max/mean {max}");
}

#[test]
fn default_fallback_is_where_the_id_goes_without_the_first() {
    let all = numbered(6);
    let ring = Ring::new(HashMode::Default, &all).expect("ring");
    let rings: BTreeMap<&str, Ring> = all
        .iter()
        .map(|s| {
            let ring = Ring::new(HashMode::Default, &without(&all, s)).expect("ring");
            (s.as_str(), ring)
        })
        .collect();
    for id in random_ids(10_000) {
        let order = ring.pick_n(id, 6);
        assert_eq!(rings[order[0]].pick(id), Some(order[1]), "id {id}");
        assert_eq!(rings[order[0]].pick_n(id, 5), order[1..], "id {id}");
    }
}

// ---------------------------------------------------------------------------------------------
// Seed mode statistics, for information (the seed's hashes are poorly distributed)

#[test]
fn seed_statistics() {
    let all = numbered(6);
    let six = Ring::new(HashMode::Seed, &all).expect("ring");
    let counts = spread(&six, 0..IDS);
    let (max, min) = balance(&counts);
    println!(
        "seed, {IDS} sequential ids over 6 servers: max/mean {max:.3}, min/mean {min:.3}: {counts:?}"
    );
    let (rmax, _) = balance(&spread(&six, random_ids(IDS)));
    println!("seed, {IDS} random ids over 6 servers: max/mean {rmax:.3}");

    let ids: Vec<u64> = (0..IDS).collect();
    let seven = Ring::new(HashMode::Seed, &numbered(7)).expect("ring");
    let added = moved(&six, &seven, &ids);
    let to_new = added.iter().filter(|(_, _, to)| *to == "Server6").count();
    println!(
        "seed, adding Server6 to six: {} of {IDS} ids moved ({:.2} × 1/7), {to_new} of them to Server6",
        added.len(),
        added.len() as f64 / IDS as f64 * 7.0
    );
    let five = Ring::new(HashMode::Seed, &without(&all, "Server2")).expect("ring");
    let removed = moved(&six, &five, &ids);
    let from_gone = removed
        .iter()
        .filter(|(_, from, _)| *from == "Server2")
        .count();
    println!(
        "seed, removing Server2 of six: {} of {IDS} ids moved, {from_gone} of them from Server2",
        removed.len()
    );
    let failover = failover_spread(&six, "Server0");
    println!("seed, second choices of Server0's ids: {failover:?}");
    assert_eq!(counts.values().sum::<usize>(), IDS as usize);
}

// ---------------------------------------------------------------------------------------------
// Properties

fn mode() -> impl Strategy<Value = HashMode> {
    prop_oneof![Just(HashMode::Default), Just(HashMode::Seed)]
}

/// Distinct names, some numbered seed style, some not.
fn servers() -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set("(Server|db-|[a-z]{0,4})[0-9]{0,3}", 0..12)
        .prop_map(|set| set.into_iter().collect())
        .prop_shuffle()
}

proptest! {
    #[test]
    fn pick_returns_a_member(mode in mode(), servers in servers(), id in any::<u64>()) {
        let ring = Ring::new(mode, &servers).expect("ring");
        match ring.pick(id) {
            None => prop_assert!(servers.is_empty()),
            Some(s) => prop_assert!(servers.iter().any(|m| m == s)),
        }
    }

    #[test]
    fn pick_n_returns_distinct_members_in_a_stable_order(
        mode in mode(), servers in servers(), id in any::<u64>(), n in 0usize..16,
    ) {
        let ring = Ring::new(mode, &servers).expect("ring");
        let picked = ring.pick_n(id, n);
        prop_assert_eq!(picked.len(), n.min(servers.len()));
        let distinct: BTreeSet<&str> = picked.iter().copied().collect();
        prop_assert_eq!(distinct.len(), picked.len());
        prop_assert!(picked.iter().all(|s| servers.iter().any(|m| m == s)));
        if n > 0 {
            prop_assert_eq!(picked.first().copied(), ring.pick(id));
        }
        // Asking for fewer gives a prefix of the longer answer.
        let all = ring.pick_n(id, servers.len());
        prop_assert_eq!(&all[..picked.len()], &picked[..]);
    }

    #[test]
    fn same_inputs_same_outputs(
        mode in mode(), servers in servers(), ids in prop::collection::vec(any::<u64>(), 1..20),
    ) {
        let ring = Ring::new(mode, &servers).expect("ring");
        let again = Ring::new(mode, &servers).expect("ring");
        let mut reversed = servers.clone();
        reversed.reverse();
        let reordered = Ring::new(mode, &reversed).expect("ring");
        for id in ids {
            prop_assert_eq!(ring.pick(id), again.pick(id));
            prop_assert_eq!(ring.pick_n(id, 3), again.pick_n(id, 3));
            // Only the set of names matters, not their order.
            prop_assert_eq!(ring.pick_n(id, 12), reordered.pick_n(id, 12));
        }
    }

    #[test]
    fn default_removal_moves_only_the_removed_servers_ids(
        servers in servers(), victim in any::<prop::sample::Index>(),
        ids in prop::collection::vec(any::<u64>(), 1..50),
    ) {
        prop_assume!(!servers.is_empty());
        let gone = victim.get(&servers).clone();
        let ring = Ring::new(HashMode::Default, &servers).expect("ring");
        let smaller = Ring::new(HashMode::Default, &without(&servers, &gone)).expect("ring");
        for id in ids {
            let before = ring.pick(id).expect("pick");
            if before != gone {
                prop_assert_eq!(smaller.pick(id), Some(before));
            } else {
                prop_assert_eq!(smaller.pick(id), ring.pick_n(id, 2).get(1).copied());
            }
        }
    }
}
