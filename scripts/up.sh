#!/usr/bin/env bash
# Runs walshard on this machine with the seed's default configuration (examples/seed-default.yaml:
# 6 servers, each a MariaDB + a shard agent; 4 shards of 4096 keys, 3 replicas each; the control
# plane and the router on port 5000). Foreground until Ctrl-C; everything lives in $WALSHARD_HOME
# (default ./walshard-data), so running it again resumes with all data.
#   WALSHARD_PORT   the router's port (default 5000)
#   WALSHARD_FILE   another ShardedDatabase YAML (default examples/seed-default.yaml; used only
#                   when the data dir holds no fleet yet)
set -euo pipefail
cd "$(dirname "$0")/.."
home=${WALSHARD_HOME:-$PWD/walshard-data}
port=${WALSHARD_PORT:-5000}
file=${WALSHARD_FILE:-examples/seed-default.yaml}

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  bash scripts/install-test-deps.sh
fi
echo "==> building walshard (release)"
cargo build --release --locked -p walshard-cli --bin walshard
exec ./target/release/walshard up --data-dir "$home" --port "$port" --file "$file"
