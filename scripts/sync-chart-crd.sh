#!/usr/bin/env bash
# Copies the generated CRD (crds/shardeddatabases.walshard.io.yaml, written by `walshard crd`)
# into the Helm chart's crds/ directory. scripts/validate-chart.sh fails while the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
src=crds/shardeddatabases.walshard.io.yaml
dst=charts/walshard/crds/shardeddatabases.walshard.io.yaml
if [ ! -f "$src" ]; then
  echo "error: $src is missing: generate it first (cargo run -p walshard-cli -- crd)" >&2
  exit 1
fi
mkdir -p "$(dirname "$dst")"
if cmp -s "$src" "$dst"; then
  echo "==> $dst is up to date"
else
  cp "$src" "$dst"
  echo "==> copied $src to $dst"
fi
