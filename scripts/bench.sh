#!/usr/bin/env bash
# Benchmarks (release build). Prints figures and ratios against a baseline measured in the same
# run; asserts nothing about time. WALSHARD_BENCH_SECS sets the seconds per cell (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo bench --locked -p walshard-agent --bench write_throughput
cargo bench --locked -p walshard-agent --bench replicated_write
cargo bench --locked -p walshard-router --bench hashing
# The seed's analysis (A-1, A-1 archiving its WAL, A-2, A-3 against direct MariaDB) and a base
# backup + restore of 1,000,000 rows against mariadb-dump + reload, and A-1 against the baseline at
# concurrency 1, 16 and 64 (docs/benchmarks.md).
cargo build --locked --release -p walshard-cli
./target/release/walshard bench --backup-rows 1000000 --sweep 1,16,64 --out-dir bench-results
