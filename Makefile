# chatmesh: every entry point, for people and CI alike.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test test-chart test-cargo test-sdk test-web test-api test-unit lint fmt infra-up infra-down infra-status clean bench bench-peers fuzz chaos help

## run: start the infrastructure, two gateway nodes, every service and the demo page (its URL is printed); Ctrl-C stops it all
run:
	scripts/run

## test: the chart's checks, unit and integration tests against real Redis, Postgres, Kafka and S3 (the container image among them), the SDK's and the demo page's tests against a real mesh, and the HTTP API fuzzed from its OpenAPI document; each suite runs even if one before it failed, and any failure fails the target
test: infra-up
	$(CARGO) build --workspace --bins
	@$(MAKE) --no-print-directory -k -j1 test-chart test-cargo test-sdk test-web test-api

# The suites of `make test`, each on its own for a rerun. They expect the
# infrastructure up (make infra-up) and the workspace binaries built.
test-chart:
	scripts/chart test

test-cargo:
	$(CARGO) test --workspace --no-fail-fast

## test-sdk: clients/js: strict typecheck, unit tests, tests against a real mesh
test-sdk:
	scripts/clients test-sdk

## test-web: clients/web: typecheck, unit tests, Chromium tests against a real mesh
test-web:
	scripts/clients test-web

## test-api: schemathesis against a live gateway's /v1/openapi.json: no 5xx, every answer as documented (API_CHECK_EXAMPLES per operation, default 25)
test-api:
	scripts/api-check

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

## bench: release-mode benchmarks: the message path, posts only and then with a share of edits and reactions (BENCH_CLIENTS, BENCH_CHANNELS, BENCH_RATE, BENCH_SECONDS, BENCH_SENDERS, BENCH_SEND_WINDOW, BENCH_GATEWAYS, BENCH_CHANGE_SHARE: 0.10, 0 skips the mix; BENCH_CHANGE_AGE_MS), storage (BENCH_STORAGE_MESSAGES, BENCH_STORAGE_CHANNELS, BENCH_HISTORY_ROWS, BENCH_HISTORY_REQUESTS), presence (BENCH_SESSIONS, BENCH_PING_MS), the client protocol's JSON and Protobuf frames (BENCH_FRAMES) the cost of safe sequence numbers and of admitting a send in one script (BENCH_SEQ_CALLS), Redis round trips, directory queries and latency per send with the send-rights cache on and off (BENCH_SEND_CALLS, BENCH_SEND_COUNTED, BENCH_SEND_IN_FLIGHT), the moderation filter's scan throughput and cost per message, the gRPC server layers' cost per call (BENCH_LAYER_CALLS), and one gateway process at the edge: idle memory per connection at 10,000 and 19,000 connections, a channel of 10,000 subscribers, and a reconnect storm of 10,000 clients (BENCH_EDGE_CONNECTIONS, BENCH_FANOUT_SUBSCRIBERS, BENCH_FANOUT_RATE, BENCH_FANOUT_SECONDS, BENCH_STORM_CLIENTS, BENCH_STORM_RATE, BENCH_STORM_MISSED)
bench: infra-up
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-storage
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-presence
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-frames
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-sequencer
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-send
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-moderation
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-layers
	ulimit -n "$$(ulimit -Hn)" && $(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-edge

## bench-peers: chatmesh side by side with Socket.IO 4 (Redis adapter) and Sockudo (Redis Cluster adapter), one load client and one scenario for all, stepped through rising rates: highest sustainable rate, latency, loss, CPU per process and memory per connection of each, with ratios (BENCH_PEERS, BENCH_NODES, BENCH_CHANNELS, BENCH_RECEIVERS, BENCH_SENDERS, BENCH_RATES, BENCH_STEP_SECONDS, BENCH_GRACE_SECONDS); installs the peers on first use, outside the checkout
bench-peers: infra-up
	$(CARGO) build --release --workspace --bins
	scripts/peer-socketio
	scripts/peer-sockudo
	$(CARGO) run --release -p chatmesh-bench --bin chatmesh-bench-peers

## fuzz: the cargo-fuzz targets of fuzz/ (client frames; tokens, upgrade queries and headers), FUZZ_SECONDS (default 300) each from the seed corpus; fails on any crash
FUZZ_SECONDS ?= 300
fuzz:
	scripts/fuzz $(FUZZ_SECONDS)

.PHONY: image chart-test

## image: release binaries and the OCI image (buildah, FROM scratch, tagged by a hash of its contents)
image:
	scripts/image build

## chart-test: helm lint, every ci/ values file rendered and validated for Kubernetes 1.29 and 1.33, chart tests, --check-config of every rendered config
chart-test:
	$(CARGO) build --workspace --bins
	scripts/chart test

## chaos: 10 minutes (CHAOS_SECONDS) of traffic over a process mesh while a chat instance, a gateway, storage, a Redis master and the broker are killed in turn; prints acked, stored, delivered, missing and duplicated
chaos: infra-up
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -p chatmesh-integration-tests --bin chatmesh-chaos
