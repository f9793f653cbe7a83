#!/usr/bin/env bash
# Security gates: cargo-deny (advisories from the RustSec snapshot in ../shared/advisory-db,
# licences, bans, sources), then against a private server with the demo data: a client
# generated from /openapi.json runs a journey (tests/api-client), and schemathesis runs every
# check in every phase (examples, coverage, fuzzing, stateful via the document's links); any
# failure fails the gate. Writes target/ci/deny.json and target/ci/schemathesis.xml (with the
# case count and duration) for the score report.
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

# --- schemathesis and the generated client -----------------------------------------------------
# scripts/install-deps.sh puts schemathesis and openapi-python-client in the project's tools
# directory.
tools="${GHOSTWORKS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ghostworks/tools}"
export PATH="$tools/bin:$PATH"
for tool in schemathesis openapi-python-client; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run scripts/install-deps.sh" >&2; exit 1; }
done
# The release binary of `make build` (built here when missing): one build serves every gate.
bin=${GHOSTWORKS_BIN:-target/release/ghostworks}
[ -x "$bin" ] || cargo build --release --quiet -p ghostworks
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
data=$(mktemp -d)
chmod 755 "$data"  # PostgreSQL runs as its own user when we are root
RATE_LIMIT_ENABLED=false JOB_POLL_SECONDS=1 LOG_LEVEL=warn GHOSTWORKS_BIND="127.0.0.1:$port" \
  WORKER_BIND="127.0.0.1:$(free_port)" WEB_BIND="127.0.0.1:$(free_port)" \
  "$bin" dev --data-dir "$data" > "$out/fuzz-server.log" 2>&1 &
server=$!
trap 'kill -INT $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 120); do
  curl -sf "$base/health/ready" >/dev/null && grep -q 'e-mail ' "$out/fuzz-server.log" && break
  kill -0 "$server" 2>/dev/null || { echo "the server under test exited:" >&2; tail -20 "$out/fuzz-server.log" >&2; exit 1; }
  sleep 0.5
done
mail=$(sed -n 's/^ *e-mail *\(http:[^ ]*\).*/\1/p' "$out/fuzz-server.log" | head -1)

echo "== generated client journey against $base"
client=$(mktemp -d)
curl -sf "$base/openapi.json" -o "$client/openapi.json"
printf 'project_name_override: ghostworks-client\npackage_name_override: ghostworks_client\n' > "$client/config.yml"
openapi-python-client generate --path "$client/openapi.json" --config "$client/config.yml" \
  --meta none --output-path "$client/ghostworks_client" --fail-on-warning > "$out/client-generate.log" 2>&1 \
  || { cat "$out/client-generate.log" >&2; exit 1; }
PYTHONPATH="$client" "$tools/bin/python" tests/api-client/journey.py "$base" "$mail"
rm -rf "$client"

token=$(curl -sf -X POST "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"owner@acme.com","password":"demo123"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
export GW_WORKSPACE_ID GW_ARTIFACT_ID
GW_WORKSPACE_ID=$(curl -sf "$base/api/v1/workspaces" -H "authorization: Bearer $token" | python3 -c 'import sys,json; print(json.load(sys.stdin)[0]["id"])')
GW_ARTIFACT_ID=$(curl -sf "$base/api/v1/workspaces/$GW_WORKSPACE_ID/artifacts?limit=1" -H "authorization: Bearer $token" | python3 -c 'import sys,json; print(json.load(sys.stdin)["items"][0]["id"])')
echo "== schemathesis (every check, every phase) against $base"
# Logout is left out: it revokes the session whose token every other case authenticates with,
# so each case after it would only test the 401 path. The integration tests cover it.
started=$(date +%s.%N)
PYTHONPATH=tests/api-fuzz SCHEMATHESIS_HOOKS=hooks schemathesis --config-file tests/api-fuzz/schemathesis.toml \
  --no-color run "$base/openapi.json" \
  --checks all --phases examples,coverage,fuzzing,stateful --exclude-path /api/v1/auth/logout \
  -H "Authorization: Bearer $token" --max-examples "${FUZZ_EXAMPLES:-25}" --seed "${FUZZ_SEED:-11}" \
  --report junit --report-junit-path "$out/schemathesis.xml" 2>&1 | tee "$out/schemathesis.log" \
  && fuzz_ok=1 || fuzz_ok=0
# The score reports the run's size and duration: the case count from the summary, the time
# from here, as properties of the JUnit report.
python3 - "$out/schemathesis.xml" "$out/schemathesis.log" "$started" <<'PY'
import re, sys, time
import xml.etree.ElementTree as ET
report, log, started = sys.argv[1:4]
seconds = time.time() - float(started)
cases = re.search(r"^Test cases:\s*\n\s*(\d+) generated", open(log).read(), re.M)
tree = ET.parse(report)
suite = tree.getroot().find("testsuite")
props = ET.Element("properties")
props.append(ET.Element("property", name="cases", value=cases.group(1) if cases else "0"))
props.append(ET.Element("property", name="duration_seconds", value=f"{seconds:.1f}"))
suite.insert(0, props)
tree.write(report, encoding="unicode", xml_declaration=True)
print(f"schemathesis: {props[0].get('value')} cases in {props[1].get('value')} s")
PY
[ "$fuzz_ok" = 1 ] || { echo "schemathesis found failures (see above and $out/schemathesis.log)" >&2; exit 1; }
