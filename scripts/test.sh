#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, then formatting, lints and
# every test (real MariaDB instances, real agent processes, real crashes).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test (unit, integration, crash and doc tests; benchmarks are scripts/bench.sh)"
cargo test --workspace --locked -- --nocapture

echo "==> the Helm chart, Dockerfiles and shell scripts (scripts/validate-chart.sh)"
bash scripts/validate-chart.sh
