# Everything a fresh machine needs, from the project's own files (see README).
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: setup python infra demo test test-fast lint bench clean

setup: python infra

python: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

infra:
	bash infra/setup.sh

# The main job: a simulated campus through the whole pipeline (see `camtopo demo --help`).
demo: setup
	$(BIN)/camtopo demo

# All tests: pure ones, then those against the real Kafka, Redis and Chromium.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Pure tests only (no services): seconds.
test-fast: python
	$(BIN)/python -m pytest -q -m "not kafka and not redis and not browser and not slow"

lint: python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m benchmarks.engine_speed
	$(BIN)/python -m benchmarks.engine_memory --budgets 1024 0
	$(BIN)/python -m benchmarks.accuracy
	$(BIN)/python -m benchmarks.redis_rewrite

clean:
	rm -rf $(VENV) .stack out .pytest_cache .hypothesis
