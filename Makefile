# `make test` and `make serve` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.bench-installed
# uvicorn's WebSocket tests, fetched from PyPI for compliance/test_uvicorn.py.
UVICORN_TESTS := $(VENV)/uvicorn-tests/RELEASE
LOADGEN := bench/loadgen/loadgen
# pytest-xdist workers: two per core by default, since most tests spend their
# time waiting on sockets and timers (JOBS=0 runs the suite in one process).
JOBS ?= $(shell echo $$(( $$(nproc) * 2 )))
# Socket.IO and soketi, the Node servers the hub is measured against (bench/node).
NODE_STAMP := bench/node/node_modules/.installed
# Python caches bytecode in __pycache__ even where the environment says not to
# (an empty value is off): each of the suite's hundreds of Python processes
# would compile tidewire again, and each pytest worker rewrite every test module.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: test serve lint typecheck unit compliance clean bench instructions fuzz soak

# Compiled twins are rebuilt when their sources change.
$(STAMP): pyproject.toml setup.py src/tidewire/_speedups.c \
		src/tidewire/protocol/reader.py src/tidewire/protocol/_reader_c.pxd \
		src/tidewire/protocol/connection.py src/tidewire/protocol/_connection_c.pxd \
		src/tidewire/asyncio/connection.py src/tidewire/asyncio/_connection_c.pxd \
		src/tidewire/asyncio/messages.py src/tidewire/asyncio/_messages_c.pxd
	@command -v microsocks >/dev/null || { apt-get update && apt-get install -y microsocks; }
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }
	@command -v redis-server >/dev/null || { apt-get update && apt-get install -y redis-server; }
	@command -v redis-sentinel >/dev/null || { apt-get update && apt-get install -y redis-sentinel; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/tidewire serve

lint: $(STAMP)
	$(BIN)/ruff check src tests compliance fuzzing soak examples conftest.py

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n $(JOBS) --dist worksteal -m "not compliance"

compliance: $(STAMP) $(UVICORN_TESTS)
	$(BIN)/pytest -n $(JOBS) --dist worksteal -m compliance

$(UVICORN_TESTS): $(STAMP) compliance/uvicorn_suite.py
	$(BIN)/python compliance/uvicorn_suite.py fetch $(VENV)/uvicorn-tests

# The whole suite with the compiled speedups (a short run of each fuzz harness
# and of the soak included), then the unit tests again on their pure-Python twins.
test: $(STAMP) $(UVICORN_TESTS)
	$(BIN)/ruff check src tests compliance fuzzing soak examples conftest.py
	$(BIN)/mypy
	$(BIN)/pytest -n $(JOBS) --dist worksteal
	TIDEWIRE_NO_SPEEDUPS=1 $(BIN)/pytest -n $(JOBS) --dist worksteal -m "not compliance and not fuzz and not soak"

# `make fuzz` runs each harness of fuzzing/ for FUZZ_SECONDS (300) in turn;
# FUZZ=name runs one. Crashes are saved into fuzzing/corpus/<name>/.
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	$(BIN)/python -m fuzzing.run --seconds $(FUZZ_SECONDS) $(FUZZ)

# `make bench` runs the benchmarks (about 10-15 minutes); `make bench QUICK=1` is a
# smoke run; BENCH_ARGS passes options, e.g. BENCH_ARGS="--only echo-64 --reps 5".
bench: $(BENCH_STAMP) $(LOADGEN) $(NODE_STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick) $(BENCH_ARGS)

# `make instructions`: the echo path's cost in instructions per message, counted
# by valgrind in-process (bench/instructions.py), then every library's server on
# real sockets (bench/userspace.py): steadier than any socket rate.
instructions: $(BENCH_STAMP) $(LOADGEN)
	@command -v valgrind >/dev/null || { apt-get update && apt-get install -y valgrind; }
	$(BIN)/python -m bench.instructions
	$(BIN)/python -m bench.userspace

# `make soak`: 1,000 subscribers and 10,000 publications through the hub, on the
# memory broker, then on Redis with two nodes (about 5 minutes); it fails if
# anything was lost or reordered, if a node's RSS grew 5% after the warm-up, or if
# its file descriptors didn't come back. SOAK_SUBSCRIBERS, SOAK_PUBLICATIONS and
# SOAK_RATE change the size; SOAK_ARGS passes other options (python -m soak --help).
soak: $(STAMP)
	$(BIN)/python -m soak $(if $(SOAK_SUBSCRIBERS),--subscribers $(SOAK_SUBSCRIBERS)) \
		$(if $(SOAK_PUBLICATIONS),--publications $(SOAK_PUBLICATIONS)) \
		$(if $(SOAK_RATE),--rate $(SOAK_RATE)) $(SOAK_ARGS)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

$(LOADGEN): bench/loadgen/loadgen.c
	@command -v taskset >/dev/null || { apt-get update && apt-get install -y util-linux; }
	@{ command -v gcc && test -f /usr/include/zlib.h && test -f /usr/include/openssl/hmac.h; } \
		>/dev/null || { apt-get update && apt-get install -y gcc zlib1g-dev libssl-dev; }
	gcc -O2 -Wall -Wextra -o $(LOADGEN) bench/loadgen/loadgen.c -lz -lcrypto

# npm installs the pinned versions of the lock file into bench/node/node_modules.
$(NODE_STAMP): bench/node/package.json bench/node/package-lock.json
	@command -v npm >/dev/null || { apt-get update && apt-get install -y nodejs npm; }
	cd bench/node && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

clean:
	rm -rf $(VENV) compliance/reports .mypy_cache .ruff_cache .pytest_cache $(LOADGEN) bench/.logs \
		bench/node/node_modules
