//! Lookup cost of the router's consistent hashing: ns per `pick` (and per `pick_n(id, 2)`, the
//! lookup with one fallback) for 3, 6 and 100 servers in the default mode and for up to 56 (the
//! seed ring's limit) in the seed mode, beside two baselines measured in the same run: a plain
//! `id % n` and a single XXH3 hash of the id. Prints figures; asserts nothing.
//!
//! `cargo bench -p walshard-router --bench hashing`; `WALSHARD_BENCH_LOOKUPS` sets the lookups
//! per cell (default 2,000,000; each cell is timed 5 times and the median is reported).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is the failure report

use std::hint::black_box;
use std::time::Instant;

use walshard_router::hashing::{HashMode, Ring};
use xxhash_rust::xxh3::xxh3_64;

fn lookups() -> u64 {
    std::env::var("WALSHARD_BENCH_LOOKUPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000)
}

/// Well-spread request ids without a table: the id stream of a Weyl sequence.
#[inline]
fn id(k: u64) -> u64 {
    k.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Median ns per call of `f` over `count` ids, 5 runs.
fn time(count: u64, mut f: impl FnMut(u64) -> u64) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let mut sink = 0u64;
            for k in 0..count {
                sink = sink.wrapping_add(f(black_box(id(k))));
            }
            black_box(sink);
            start.elapsed().as_nanos() as f64 / count as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn servers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("Server{i}")).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count = lookups();
    println!("walshard router hashing: ns per lookup, median of 5 runs of {count} lookups");
    println!(
        "{:<34} {:>8} {:>10} {:>14} {:>12}",
        "lookup", "servers", "ns/lookup", "× `id % n`", "ns/pick_n(2)"
    );
    for n in [3usize, 6, 56, 100] {
        let modulus = black_box(n as u64);
        let baseline = time(count, |id| id % modulus);
        println!(
            "{:<34} {:>8} {:>10.2} {:>14} {:>12}",
            "baseline `id % n`", n, baseline, "1.00", "-"
        );
        let one_hash = time(count, xxh3_64_of);
        println!(
            "{:<34} {:>8} {:>10.2} {:>14.2} {:>12}",
            "baseline: one XXH3 of the id",
            n,
            one_hash,
            one_hash / baseline,
            "-"
        );
        for mode in [HashMode::Default, HashMode::Seed] {
            let ring = match Ring::new(mode, &servers(n)) {
                Ok(ring) => ring,
                Err(err) => {
                    println!("{:<34} {:>8} {err}", format!("{mode}"), n);
                    continue;
                }
            };
            let pick = time(count, |id| ring.pick(id).map_or(0, |s| s.len() as u64));
            let pick2 = time(count / 4, |id| ring.pick_n(id, 2).len() as u64);
            let label = match mode {
                HashMode::Default => "default (rendezvous, XXH3)",
                HashMode::Seed => "seed (512-slot ring)",
            };
            println!(
                "{:<34} {:>8} {:>10.2} {:>14.2} {:>12.2}",
                label,
                n,
                pick,
                pick / baseline,
                pick2
            );
        }
    }
    Ok(())
}

fn xxh3_64_of(id: u64) -> u64 {
    xxh3_64(&id.to_le_bytes())
}
