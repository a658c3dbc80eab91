# Concord's entry points. `make dev` and `make test` work on a fresh Debian machine as root:
# both install the Debian packages they need first (only the missing ones).
#
#   make deps     install build/test packages from apt (only when missing)
#   make build    build ./build/concord (RelWithDebInfo, -Werror)
#   make dev      build and run a single-node dev agent (HTTP 127.0.0.1:8500, DNS :8600)
#   make test     unit tests, integration tests, fuzz-corpus replay; again under ASan+UBSan
#   make bench    side-by-side benchmarks against etcd (see docs/benchmarks.md)
#   make fuzz     run each libFuzzer target for FUZZ_SECONDS (default 60)

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
PYTEST     := /usr/bin/python3 -m pytest
FUZZ_SECONDS ?= 60

DEB_PACKAGES := build-essential cmake pkg-config clang libclang-rt-14-dev \
  libuv1-dev libraft-dev node-llhttp libjansson-dev libmsgpack-dev libldns-dev libssl-dev \
  libcmocka-dev libnghttp2-dev zlib1g-dev python3 python3-pytest python3-pytest-xdist python3-consul \
  python3-requests \
  python3-grpcio bind9-dnsutils \
  procps iproute2 serf
# Only the tests need a browser (test_ui.py drives the web UI in headless Chromium): make dev
# does not install it.
TEST_PACKAGES := chromium
BENCH_PACKAGES := wrk etcd-server etcd-client unbound dnsperf

.PHONY: all deps test-deps bench-deps build build-asan build-fuzz dev test test-unit test-integration \
        test-asan test-fuzz bench fuzz clean

all: build

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test-deps: deps
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(TEST_PACKAGES)"

bench-deps:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(BENCH_PACKAGES)"

$(BUILD)/build.ninja $(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps
	@[ -f $(BUILD)/Makefile ] || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@[ -f $(ASAN_BUILD)/Makefile ] || cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCONCORD_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)

build-fuzz: deps
	@[ -f $(FUZZ_BUILD)/Makefile ] || CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCONCORD_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS)

dev: build
	./$(BUILD)/concord agent -dev

# Every suite, then every suite again under ASan+UBSan, then the fuzz corpora.
test: test-deps build build-asan build-fuzz
	@bash tests/run.sh $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

test-unit: build
	cd $(BUILD) && ctest --output-on-failure

test-integration: test-deps build
	CONCORD_BIN=$(CURDIR)/$(BUILD)/concord $(PYTEST) -q tests/integration

bench: build bench-deps
	bash bench/run.sh $(BUILD)

fuzz: build-fuzz
	@for f in $(FUZZ_BUILD)/fuzz_*; do \
	  n=$$(basename $$f); mkdir -p fuzz/corpus/$${n#fuzz_}; \
	  $$f -max_total_time=$(FUZZ_SECONDS) fuzz/corpus/$${n#fuzz_} || exit 1; \
	done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
