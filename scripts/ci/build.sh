#!/usr/bin/env bash
# Builds the release binary and records its size and build time in target/ci/build.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p target/ci
start=$(date +%s)
if cargo build --release --quiet -p ghostworks; then ok=true; else ok=false; fi
bytes=$(stat -c %s target/release/ghostworks 2>/dev/null || echo 0)
printf '{"success": %s, "duration_s": %s, "binary_bytes": %s, "image_bytes": null}\n' "$ok" "$(( $(date +%s) - start ))" "$bytes" > target/ci/build.json
echo "release binary: $bytes bytes"
[ "$ok" = true ]
