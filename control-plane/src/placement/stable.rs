//! The computed placement, built so that changing the server count moves few replicas.
//!
//! The placement of N servers is defined by a chain: with R servers, each holds every shard;
//! the placement of k + 1 servers is that of k servers plus server k, which takes
//! ⌊S·R/(k+1)⌋ replicas, one at a time, each from the most loaded of the earlier servers (ties:
//! the most recently added, so the first servers keep the surplus), the first of its shards the
//! new server does not hold yet.
//!
//! Properties (tested in `placement::tests`):
//! - loads are ⌊S·R/N⌋ or ⌈S·R/N⌉ (the donor is always a most loaded server, and the newcomer
//!   takes exactly the floor), and a shard never has two replicas on one server;
//! - N → N + 1 moves exactly ⌊S·R/(N+1)⌋ replicas, the least any balanced placement can (each
//!   replica on the new server is a move), and N + 1 → N moves the same ones back;
//! - N → N + k moves only replicas onto the new servers (old servers only give), close to the
//!   lower bound (see the property test for the bound it meets).
//!
//! Changing R or the shard count is not minimal: it redeals along a new chain (still balanced).

/// `held[i][x]`: server `i` holds shard `x`, for `n` servers, `s` shards, `r` replicas
/// (`1 <= r <= n`).
pub fn chain(n: usize, s: usize, r: usize) -> Vec<Vec<bool>> {
    let mut held: Vec<Vec<bool>> = (0..r.min(n)).map(|_| vec![true; s]).collect();
    let mut loads: Vec<usize> = vec![s; held.len()];
    for k in r..n {
        let target = s * r / (k + 1);
        let mut mine = vec![false; s];
        for _ in 0..target {
            let Some(donor) = (0..k).max_by_key(|&i| (loads[i], i)) else {
                break;
            };
            // The donor holds more shards than the newcomer (it is a most loaded server and the
            // newcomer is below the floor of the mean), so one of them is new to it.
            let Some(shard) = (0..s).find(|&x| held[donor][x] && !mine[x]) else {
                break;
            };
            held[donor][shard] = false;
            loads[donor] -= 1;
            mine[shard] = true;
        }
        loads.push(target);
        held.push(mine);
    }
    held
}
