# `make test` and `make serve` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.bench-installed
LOADGEN := bench/loadgen/loadgen
# Socket.IO and soketi, the Node servers the hub is measured against (bench/node).
NODE_STAMP := bench/node/node_modules/.installed

.PHONY: test serve lint typecheck unit compliance clean bench instructions

# Compiled twins are rebuilt when their sources change.
$(STAMP): pyproject.toml setup.py src/tidewire/_speedups.c \
		src/tidewire/protocol/reader.py src/tidewire/protocol/_reader_c.pxd \
		src/tidewire/protocol/connection.py src/tidewire/protocol/_connection_c.pxd \
		src/tidewire/asyncio/connection.py src/tidewire/asyncio/_connection_c.pxd \
		src/tidewire/asyncio/messages.py src/tidewire/asyncio/_messages_c.pxd
	@command -v microsocks >/dev/null || { apt-get update && apt-get install -y microsocks; }
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }
	@command -v redis-server >/dev/null || { apt-get update && apt-get install -y redis-server; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/tidewire serve

lint: $(STAMP)
	$(BIN)/ruff check src tests compliance

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not compliance"

compliance: $(STAMP)
	$(BIN)/pytest -m compliance

# The whole suite with the compiled speedups, then the unit tests again on
# their pure-Python twins.
test: $(STAMP)
	$(BIN)/ruff check src tests compliance
	$(BIN)/mypy
	$(BIN)/pytest
	TIDEWIRE_NO_SPEEDUPS=1 $(BIN)/pytest -m "not compliance"

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
