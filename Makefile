# `make test` and `make serve` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test serve lint typecheck unit compliance clean

$(STAMP): pyproject.toml setup.py src/tidewire/_speedups.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/tidewire echo

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

clean:
	rm -rf $(VENV) compliance/reports .mypy_cache .ruff_cache .pytest_cache
