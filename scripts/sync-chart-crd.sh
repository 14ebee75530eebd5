#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.walshard.io.yaml, written by `walshard crd` and `walshard crd
# ShardedDatabaseBackup`) into the Helm chart's crds/ directory. scripts/validate-chart.sh fails
# while they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
for name in shardeddatabases shardeddatabasebackups; do
  src=crds/$name.walshard.io.yaml
  dst=charts/walshard/crds/$name.walshard.io.yaml
  if [ ! -f "$src" ]; then
    echo "error: $src is missing: generate it first (cargo run -p walshard-cli -- crd, see k8s-api/README.md)" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$dst")"
  if cmp -s "$src" "$dst"; then
    echo "==> $dst is up to date"
  else
    cp "$src" "$dst"
    echo "==> copied $src to $dst"
  fi
done
