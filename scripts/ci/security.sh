#!/usr/bin/env bash
# Security gates: cargo-deny (advisories from the RustSec snapshot in ../shared/advisory-db,
# licences, bans, sources) and schemathesis against a running server (no 5xx allowed).
# Writes target/ci/deny.json and target/ci/schemathesis.xml for the score report.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/ci
mkdir -p "$out"

# --- cargo-deny ------------------------------------------------------------------------------
if [ -z "${SKIP_DENY:-}" ]; then
  command -v cargo-deny >/dev/null || cargo install --locked --quiet cargo-deny
  snapshot=${ADVISORY_DB:-../shared/advisory-db}
  [ -d "$snapshot/crates" ] || { echo "advisory database not found at $snapshot (set ADVISORY_DB)" >&2; exit 1; }
  # cargo-deny reads the database as a git checkout named after the default URL's hash.
  db=target/advisory-dbs/advisory-db-3157b0e258782691
  if [ ! -d "$db/.git" ] || [ "$(cat "$db/.snapshot" 2>/dev/null)" != "$(cat "$snapshot/SNAPSHOT.txt")" ]; then
    rm -rf "$db" && mkdir -p "$db"
    cp -r "$snapshot"/. "$db"/
    cp "$snapshot/SNAPSHOT.txt" "$db/.snapshot"
    git -C "$db" init -q && git -C "$db" add -A
    git -C "$db" -c user.name=ci -c user.email=ci@localhost commit -qm "RustSec snapshot" --date="2026-08-21T00:00:00Z"
  fi
  cargo fetch --quiet
  echo "== cargo deny"
  cargo deny --offline --format json check 2> "$out/deny.json" && deny_ok=1 || deny_ok=0
  cargo deny --offline check 2>&1 | tail -5 || true
  [ "$deny_ok" = 1 ] || { echo "cargo-deny found problems (see above)" >&2; exit 1; }
fi

# --- schemathesis ----------------------------------------------------------------------------
# scripts/install-deps.sh puts schemathesis in the project's tools directory.
export PATH="${GHOSTWORKS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ghostworks/tools}/bin:$PATH"
command -v schemathesis >/dev/null || { echo "schemathesis not found: run scripts/install-deps.sh" >&2; exit 1; }
# The release binary of `make build` (built here when missing): one build serves every gate.
bin=${GHOSTWORKS_BIN:-target/release/ghostworks}
[ -x "$bin" ] || cargo build --release --quiet -p ghostworks
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d)
chmod 755 "$data"  # PostgreSQL runs as its own user when we are root
RATE_LIMIT_ENABLED=false GHOSTWORKS_BIND="127.0.0.1:$port" LOG_LEVEL=warn \
  "$bin" dev --data-dir "$data" > "$out/fuzz-server.log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "the server under test exited:" >&2; tail -20 "$out/fuzz-server.log" >&2; exit 1; }
  sleep 0.5
done
base="http://127.0.0.1:$port"
token=$(curl -sf -X POST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"owner@acme.com","password":"demo123"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
export GW_WORKSPACE_ID GW_ARTIFACT_ID
GW_WORKSPACE_ID=$(curl -sf "$base/api/v1/workspaces" -H "authorization: Bearer $token" | python3 -c 'import sys,json; print(json.load(sys.stdin)[0]["id"])')
GW_ARTIFACT_ID=$(curl -sf "$base/api/v1/workspaces/$GW_WORKSPACE_ID/artifacts?limit=1" -H "authorization: Bearer $token" | python3 -c 'import sys,json; print(json.load(sys.stdin)["items"][0]["id"])')
echo "== schemathesis (no 5xx) against $base"
# Logout would revoke the fuzzer's own session; it is covered by the integration tests.
PYTHONPATH=tests/api-fuzz SCHEMATHESIS_HOOKS=hooks schemathesis run "$base/openapi.json" \
  --checks not_a_server_error --exclude-path /api/v1/auth/logout \
  -H "Authorization: Bearer $token" --max-examples "${FUZZ_EXAMPLES:-40}" --seed 7 \
  --report junit --report-junit-path "$out/schemathesis.xml" --no-color
