# Every target creates .venv (and installs jaxnn into it) when missing or out of date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= auto
# An idle worker takes queued tests from the busy one: the tiers hold tests of a second and of
# minutes, and a fixed split can leave one worker with the long ones at the end.
PYTEST_DIST := --dist worksteal
# Extra pytest arguments, e.g. PYTEST_ARGS=--durations=25 (what .ci/run passes).
PYTEST_ARGS ?=

.PHONY: demo test test-slow lint bench bench-cache bench-gpu faults

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[test]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/pip install -e '.[test,bench]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python launch.py --config=experiments/random_restarts.py:demo --workdir=runs/demo --overwrite

# The fast tier: every test not marked slow (pyproject.toml's addopts). Its programs are tiny and
# each runs for moments, so compiling them is most of its time: it compiles with XLA's backend
# optimisation level 0 (about a third less compile time; the same programs, rounded as their
# unfused operations round). The slow tier, benchmarks and every launch compile as users do.
test: $(VENV)/.installed
	XLA_FLAGS="$(strip $(XLA_FLAGS) --xla_backend_optimization_level=0)" \
		$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_DIST) -q $(PYTEST_ARGS)

# The slow tier: real-process fault trials, the wheel, multi-process runs, cold-cache launches,
# the full estimator checks (the tests marked slow).
test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_DIST) -q -m slow $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy jaxnn

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/restarts.py

# First against second launch of the same programs through the persistent compilation cache.
bench-cache: $(VENV)/.installed
	$(BIN)/python benchmarks/compile_cache.py

# The GPU mode (K = 1 ... 4096 on one chip); needs a GPU host: installs jax[cuda12].
bench-gpu: $(VENV)/.installed
	$(BIN)/pip install -e '.[cuda12]'
	$(BIN)/python benchmarks/restarts.py --gpu

# The long fault-injection trials alone (part of test-slow).
faults: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_DIST) -q -m faults $(PYTEST_ARGS)
