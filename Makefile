# Aion — the two commands:
#   make run    build and run a single-process Aion (data in ./data, HTTP on 127.0.0.1:9009)
#   make test   install build + test dependencies and run the whole test suite
#
# One persistent target dir outside the clone, so RocksDB's C++ is built once per machine.
CARGO_TARGET_DIR ?= $(HOME)/.cache/aion/target
export CARGO_TARGET_DIR
CARGO ?= cargo

.PHONY: run test build deps-build deps-test bench-codec

deps-build:
	scripts/install-deps.sh build

deps-test:
	scripts/install-deps.sh test

build: deps-build
	$(CARGO) build --locked --bin aion

run: build
	$(CARGO_TARGET_DIR)/debug/aion $(ARGS)

test: deps-build deps-test
	$(CARGO) build --locked --workspace --all-targets
	$(CARGO) test --locked --workspace --no-fail-fast -- --test-threads=2

bench-codec:
	$(CARGO) bench -p aion-model --bench xor
