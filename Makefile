# Developer entry points. Every target sets up .venv first when needed, so on a fresh clone
# with only Python 3.11+ installed, `make run` and `make test` do all the set-up themselves.
#
#   make run      the broker, every service and the gateway (deploy/run_local.py)
#   make demo     a demo business posted into the running system (deploy/demo/)
#   make test     the test suite (PYTEST_ARGS="-k contacts -x" to narrow it)
#   make bench    every bench/*.py script, one after another
#   make migrate  each service's database migrations
#   make snapshots SERVICE=contacts  re-publish a service's current state for new subscribers
#   make clean    var/ and caches (not .venv)

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SERVICES := contacts orders interactions segmentation
PYTEST_ARGS ?=

# The first of these that runs and is 3.11 or newer (pyenv shims may exist for versions
# that aren't installed, so each candidate is run, not just looked up). Override: PYTHON=...
PYTHON ?= $(shell for p in python3 python3.14 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)

.DEFAULT_GOAL := help
.PHONY: help run test bench migrate snapshots clean

help:
	@sed -n 's/^#   make /make /p' Makefile

# Rebuilt whenever the pins change. The project itself is installed editable and without
# dependencies, so that requirements.lock alone decides every installed version.
$(STAMP): requirements.lock pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if [ -z "$(PYTHON)" ] || ! $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	    echo "error: Python 3.11 or newer is needed to create $(VENV) (tried: $(or $(PYTHON),python3 and python3.11 to python3.14))." >&2; \
	    echo "       Install it, or name it: make PYTHON=/path/to/python3.11 ..." >&2; \
	    exit 1; \
	  fi; \
	  echo "Creating $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade pip || echo "warning: could not upgrade pip; going on with $$($(PY) -m pip --version)"
	@echo "Installing the pinned dependencies of requirements.lock"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

run: $(STAMP)
	$(PY) -m deploy.run_local

# Needs `make run` in another terminal. DEMO_ARGS="--customers 500 --seed 3" changes the business.
.PHONY: demo
demo: $(STAMP)
	$(PY) -m deploy.demo $(DEMO_ARGS)

# pytest exits 5 when it collected no tests; a run that tested nothing must not pass.
test: $(STAMP)
	@$(PY) -m pytest -q $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: FAILED: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# Each script prints its own figures. All of them run; the target fails if any failed.
# bench/_*.py are helpers, not benchmarks. PYTHONPATH: they may import deploy/ too.
bench: $(STAMP)
	@ran=0; failed=""; for script in bench/*.py; do \
	  case $$(basename $$script) in _*|"*.py") continue;; esac; \
	  echo "== $$script"; ran=$$((ran + 1)); \
	  PYTHONPATH=$(CURDIR) $(PY) $$script || failed="$$failed $$script"; \
	done; \
	if [ $$ran -eq 0 ]; then echo "make bench: FAILED: no bench/*.py scripts" >&2; exit 1; fi; \
	if [ -n "$$failed" ]; then echo "make bench: FAILED:$$failed" >&2; exit 1; fi

migrate: $(STAMP)
	@mkdir -p var
	@for name in $(SERVICES); do \
	  if [ -f services/$$name/app.py ]; then \
	    echo "== migrate $$name"; $(PY) -m services.common.migrate $$name || exit 1; \
	  fi; \
	done
	@echo "== migrate gateway"; $(PY) -m gateway.migrate

# One snapshot event per aggregate of SERVICE into its outbox; its relay publishes them
# (docs/events.md, "Bootstrapping a new subscriber"). BATCH_SIZE: aggregates per transaction.
snapshots: $(STAMP)
	@if [ -z "$(SERVICE)" ]; then echo "usage: make snapshots SERVICE=<one of: $(SERVICES)> [BATCH_SIZE=500]" >&2; exit 2; fi
	$(PY) -m services.common.snapshots $(SERVICE) --batch-size $(or $(BATCH_SIZE),500)

clean:
	rm -rf var .cache .pytest_cache .hypothesis .ruff_cache .mypy_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
