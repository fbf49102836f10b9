# chatmesh: every entry point, for people and CI alike.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test test-unit lint fmt infra-up infra-down infra-status clean bench help

## run: start the infrastructure, two gateway nodes and every service; Ctrl-C stops it all
run:
	scripts/run

## test: unit tests, then integration tests against real Redis, Postgres, Kafka and S3
test: infra-up
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast

## test-unit: tests that need no infrastructure
test-unit:
	$(CARGO) test --workspace --lib --bins

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fmt: format the code
fmt:
	$(CARGO) fmt --all

infra-up:
	scripts/infra up

infra-down:
	scripts/infra down

infra-status:
	scripts/infra status

## clean: stop the infrastructure and delete its data and the build output
clean:
	scripts/infra down --purge
	$(CARGO) clean

help:
	@grep -E '^## ' Makefile | sed 's/^## /  make /'

## bench: release-mode benchmarks: the message path (BENCH_CLIENTS, BENCH_CHANNELS, BENCH_RATE, BENCH_SECONDS, BENCH_SENDERS), storage (BENCH_STORAGE_MESSAGES, BENCH_STORAGE_CHANNELS, BENCH_HISTORY_ROWS, BENCH_HISTORY_REQUESTS), presence (BENCH_SESSIONS, BENCH_PING_MS) and the client protocol's JSON and Protobuf frames (BENCH_FRAMES)
bench: infra-up
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-storage
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-presence
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-frames
