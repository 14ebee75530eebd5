#!/usr/bin/env bash
# Runs walshard on this machine: one MariaDB and one shard agent holding the seed's four shards
# (sh1..sh4, 4096 keys each; schema Stud_id/Stud_name/Stud_marks). Foreground until Ctrl-C; data
# persists in $WALSHARD_HOME (default ./.walshard), so running it again resumes with all data.
# (The full local fleet — router, replicas, failover — arrives with `walshard up`.)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
home=${WALSHARD_HOME:-$root/.walshard}
mysql_port=${WALSHARD_MYSQL_PORT:-3307}
agent_port=${WALSHARD_AGENT_PORT:-5001}
mkdir -p "$home"

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  bash scripts/install-test-deps.sh
fi
echo "==> building walshard-agent (release)"
cargo build --release --locked -p walshard-agent --bin walshard-agent

if [ ! -d "$home/mysql/mysql" ]; then
  echo "==> initialising MariaDB datadir $home/mysql"
  mariadb-install-db --no-defaults --auth-root-authentication-method=normal --skip-test-db \
    --user=root --datadir="$home/mysql" >"$home/mysql-install.log" 2>&1
fi
[ -f "$home/token" ] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$home/token"
token=$(cat "$home/token")

pids=()
cleanup() {
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

echo "==> starting MariaDB on 127.0.0.1:$mysql_port"
/usr/sbin/mariadbd --no-defaults --user=root --datadir="$home/mysql" --bind-address=127.0.0.1 \
  --port="$mysql_port" --socket="$home/mysql.sock" --pid-file="$home/mysql.pid" \
  --log-error="$home/mysql.err" --skip-log-bin --innodb-flush-log-at-trx-commit=2 \
  --innodb-buffer-pool-size=128M &
pids+=($!)

echo "==> starting walshard-agent on 127.0.0.1:$agent_port"
WALSHARD_LISTEN=127.0.0.1:$agent_port WALSHARD_MYSQL_URL=mysql://root@127.0.0.1:$mysql_port \
  WALSHARD_DATA_DIR=$home/agent WALSHARD_SERVER_NAME=Server0 WALSHARD_TOKEN=$token \
  "$root/target/release/walshard-agent" &
pids+=($!)

base=http://127.0.0.1:$agent_port
for _ in $(seq 1 300); do
  curl -fsS "$base/heartbeat" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/heartbeat" >/dev/null || { echo "agent did not come up; see the log above" >&2; exit 1; }

shards='[{"Stud_id_low":0,"Shard_id":"sh1","Shard_size":4096},{"Stud_id_low":4096,"Shard_id":"sh2","Shard_size":4096},{"Stud_id_low":8192,"Shard_id":"sh3","Shard_size":4096},{"Stud_id_low":12288,"Shard_id":"sh4","Shard_size":4096}]'
curl -fsS -H "Authorization: Bearer $token" -H 'content-type: application/json' "$base/config" \
  -d "{\"schema\":{\"columns\":[\"Stud_id\",\"Stud_name\",\"Stud_marks\"],\"dtypes\":[\"Number\",\"String\",\"Number\"]},\"shards\":$shards}"
echo
cat <<EOT

walshard agent ready at $base (token in $home/token). Try:

  T=\$(cat $home/token)
  curl -s -H "Authorization: Bearer \$T" $base/write -d '{"shard":"sh1","data":[{"Stud_id":2255,"Stud_name":"GHI","Stud_marks":27}]}'
  curl -s -H "Authorization: Bearer \$T" $base/read  -d '{"shard":"sh1","Stud_id":{"low":0,"high":4095}}'
  curl -s -H "Authorization: Bearer \$T" $base/status
  curl -s $base/metrics

Ctrl-C stops both processes; data stays in $home.
EOT
wait -n "${pids[@]}"
