# Everything a fresh machine needs, from the project's own files (see README).
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: setup python infra demo test test-fast smoke-wheel lint bench fuzz results clean

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

# All tests: lint and types, the installed wheel's smoke, then pytest (pure tests, then those
# against the real Kafka, Redis and Chromium). The smoke runs before pytest so that pytest's
# summary stays the last line (CI reads it).
test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(MAKE) --no-print-directory smoke-wheel
	$(BIN)/python -m pytest -q

# The package as users install it: build the wheel, install it into a fresh venv outside the
# checkout, run simulate/estimate/score and stack up/process/serve/produce from there (~2 min).
# The tests import camtopo from the checkout, where files outside the package are found anyway.
smoke-wheel: setup
	$(BIN)/python tests/packaging/wheel_smoke.py

# Pure tests only (no services): seconds.
test-fast: python
	$(BIN)/python -m pytest -q -m "not kafka and not redis and not browser and not slow"

# mypy --strict over the four packages, configured in pyproject.toml ([tool.mypy]).
lint: python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m benchmarks.engine_speed
	$(BIN)/python -m benchmarks.engine_memory --budgets 1024 0
	$(BIN)/python -m benchmarks.accuracy
	$(BIN)/python -m benchmarks.redis_rewrite

# Every decoder and parser of outside input, 20,000 inputs a target (tests/fuzzing.py);
# writes benchmarks/results/fuzz.json (docs/formats.md, "Fuzzed inputs").
fuzz: setup
	$(BIN)/python -m benchmarks.fuzz

# The README's result tables, regenerated from the committed benchmarks/results/*.json
# (benchmarks/results_tables.py; tests/unit/test_results_tables.py fails while they differ).
results: python
	$(BIN)/python -m benchmarks.results_tables

clean:
	rm -rf $(VENV) .stack out .pytest_cache .hypothesis
