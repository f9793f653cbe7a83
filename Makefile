# The two everyday commands: `make dev` runs Ghostworks locally, `make test` runs every check.
.PHONY: dev test lint setup

setup:
	@scripts/install-deps.sh

## Run the API with private PostgreSQL and Redis (started from the installed binaries) and demo data.
dev: setup
	cargo run -p ghostworks -- dev

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## Formatting, lints, then unit and integration tests against real PostgreSQL and Redis.
test: setup lint
	cargo test --workspace
