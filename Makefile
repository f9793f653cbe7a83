# Everyday commands. `make dev` runs Ghostworks locally; `make test` runs every gate CI runs
# (lint, tests with coverage, security, containers, score); `make check` is the quick loop.
.PHONY: setup dev check lint coverage security build e2e load containers score test

SHELL := /bin/bash
CI_DIR := target/ci

setup:
	@scripts/install-deps.sh

## Run the API with private PostgreSQL and Redis (started from the installed binaries) and demo data.
dev: setup
	cargo run -p ghostworks -- dev

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## The quick loop: lints and the whole test suite, without instrumentation.
check: setup lint
	cargo test --workspace

## Unit and integration tests under coverage instrumentation (fails below 65% of lines). The
## code the tests reach only through a spawned `ghostworks` process (deploy, backup, web and
## CLI paths) is not counted, so the figure understates the suite: 68.9% at the last measure.
## `--timeout 600`: a test binary may be silent that long (the deploy and failover drills run
## for minutes under instrumentation; tarpaulin's default gives up after one).
coverage: setup
	@mkdir -p $(CI_DIR)
	@command -v cargo-tarpaulin >/dev/null || cargo install --locked --quiet cargo-tarpaulin
	set -o pipefail; cargo tarpaulin --workspace --engine llvm --skip-clean --timeout 600 --out Xml --output-dir $(CI_DIR) \
	  --exclude-files 'crates/*/tests/*' --fail-under 65 2>&1 | tee $(CI_DIR)/test-output.log

## Browser tests of the web app: Playwright drives Debian's chromium (no browser download)
## against a whole stack started by `ghostworks dev` on free ports; screenshots go to
## target/e2e/screenshots, the JSON report to target/ci/playwright.json for the score.
## The release binary, as `make build` leaves it (in `make test` this builds nothing more).
e2e: setup
	cargo build --release --quiet -p ghostworks
	cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	cd tests/e2e && GHOSTWORKS_BIN=$(CURDIR)/target/release/ghostworks npx playwright test

## cargo-deny (advisories, licences, bans, sources), then against a running server a journey with
## a client generated from /openapi.json and schemathesis (every check, every phase).
security: setup build
	scripts/ci/security.sh

## The release binary, with its size and build time recorded for the score report.
build:
	@mkdir -p $(CI_DIR)
	scripts/ci/build.sh

## A short load benchmark on a small dataset; its read-journey figures feed the score. The full
## report (1M artifacts, about 10 minutes) is `ghostworks-bench report`: docs/performance.md.
load: build
	cargo build --release --quiet -p ghostworks-bench
	target/release/ghostworks-bench report --workspaces 50 --artifacts 20000 --users 200 --pool 50 \
	  --duration 5 --step-seconds 2 --steps 0.5,0.8,0.95 --pgbench-seconds 4 --overhead-seconds 2 \
	  --server-bin target/release/ghostworks --dir target/bench-ci

containers: build
	scripts/ci/containers.sh

## kiro_score.json from the results the other gates left in target/ci. Advisory here: the
## gates above already fail the run; the grade decides deployment, not the build.
score: build
	cargo build --release --quiet -p ghostworks-score
	target/release/ghostworks-score --dir $(CI_DIR) --output kiro_score.json \
	  || echo "score: the grade would hold back an automatic deployment (see kiro_score.json)"

## Every gate, in CI's order.
test: setup lint coverage build e2e security load containers score

## Container stage helpers (the stage itself is `containers` above; see deploy/README.md).
.PHONY: containers-stop containers-purge
## Stop a stack kept with GHOSTWORKS_CI_KEEP=1; containers-purge also deletes the image cache.
containers-stop:
	scripts/ci/containers.sh --stop

containers-purge:
	scripts/ci/containers.sh --purge
