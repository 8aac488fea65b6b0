# Nimbus: `make run` sets up and starts the platform; `make test` sets up and runs every test.
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080
DATA_DIR ?= .nimbus

.PHONY: setup run test unit integration check lint typecheck bench bench-smoke bench-density bench-scaling bench-cpu clean

setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/bin/nimbus serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

test: setup
	$(PY) -m pytest tests

unit: setup
	$(PY) -m pytest tests/unit

integration: setup
	$(PY) -m pytest tests/integration

check: lint typecheck

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: setup
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/run.py

bench-smoke: setup
	$(PY) bench/run.py --smoke

bench-density: setup
	$(PY) bench/density.py

bench-cpu: setup
	$(PY) bench/cpu_split.py

bench-scaling: setup
	$(PY) bench/scaling.py

clean:
	rm -rf $(VENV) .nimbus .pytest_cache .mypy_cache .ruff_cache
