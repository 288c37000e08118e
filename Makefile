# pctalk: `make quickstart` and `make test` work on a fresh Linux machine with Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: whole test files each, in tests/conftest.py's order (the longest first), one
# torch thread each (0: one process, every thread)
TEST_WORKERS ?= 2
GPU_CHECK_ARGS ?=

.PHONY: install test lint format quickstart bench gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

quickstart: install
	$(BIN)/python -m pctalk fit -c experiments/quickstart/expression.yaml

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# One GPU, under 8 minutes: every task in bf16-mixed, generation, data build, every eval metric; one table.
# GPU_CHECK_ARGS="--dry-run" runs the same checks on CPU at tiny sizes; "--out FILE" writes the table.
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
