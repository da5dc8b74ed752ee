# One venv at the repo root; torch first (the CPU wheel), then the package with every extra the suite uses.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := dev,triton,tvm,export,bench,peers
# Debian packages for the aarch64 cross build and running it under emulation.
APT_PKGS := g++-aarch64-linux-gnu qemu-user cmake file pkg-config libglib2.0-dev llvm-19

.PHONY: setup demo test test-slow lint format bench bench-arm clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"  # constraints: keep torch 2.13.0 (CPU)
	touch $(STAMP)

setup: $(STAMP)
	@command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null \
		&& command -v cmake >/dev/null && command -v llvm-mca-19 >/dev/null \
		&& pkg-config --exists glib-2.0 2>/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $(APT_PKGS); \
		else echo "note: install $(APT_PKGS) (Debian) for the ARM cross-build tests"; fi; }

demo: setup
	$(BIN)/repnext demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest

test-slow: lint
	$(BIN)/python -m pytest -m "slow or not slow"

# Host bench: the kernel comparisons, then the whole models at 1 and 2 threads, one process per thread count
# (TVM sizes its thread pool once per process), and their report; bench/RESULTS-*.md are such reports.
BENCH_OUT ?= .benchmarks/host
bench: setup
	mkdir -p $(BENCH_OUT)
	$(BIN)/python -m pytest bench/test_kernels.py --benchmark-only
	for t in 1 2; do REPNEXT_BENCH_THREADS=$$t $(BIN)/python -m pytest bench/test_models.py --benchmark-only \
		--benchmark-json $(BENCH_OUT)/results-$$t.json || exit 1; done
	$(BIN)/python bench/report.py $(BENCH_OUT)/results-1.json $(BENCH_OUT)/results-2.json \
		--out $(BENCH_OUT)/RESULTS.md --plot $(BENCH_OUT)/latency.png

# Counted ARM bench: the first run fetches and builds everything (qemu plugin header, arm64 userland, peer
# wheels, conversions) under the cache root; later runs are offline.
ARM_TARGETS ?= cortex-a76 cortex-a53
ARM_MODELS ?= repnext_m1
bench-arm: setup
	mkdir -p bench/arm
	for m in $(ARM_MODELS); do for t in $(ARM_TARGETS); do \
		$(BIN)/repnext bench $$m --target $$t --json bench/arm/$$m-$$t.json || exit 1; done; done
	$(BIN)/python bench/arm_report.py bench/arm/*.json

.PHONY: bench-gpu
bench-gpu: setup
	$(BIN)/repnext bench --device cuda

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .benchmarks
