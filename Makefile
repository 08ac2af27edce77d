# Everything a newcomer needs: `make run` and `make test` set themselves up from nothing but Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The pinned, hash-checked versions we test with (dev.txt) and the image runs (main.txt, the
# same pins without the dev tools); `make lock` writes both from pyproject.toml.
LOCK := requirements/dev.txt
RUNTIME_LOCK := requirements/main.txt
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

.DEFAULT_GOAL := help
.PHONY: help install lock audit run test lint migrate bench clean chromium promtool

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

# Every dependency comes from the lock, pip and setuptools included, without resolving (the lock
# is complete: `pip check` proves it; an old pip resolving it refuses an extra it cannot see
# pinned); the project itself is built with that setuptools (no build isolation).
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the locked versions, the project and its dev tools

# The image's lock takes its pins from the dev lock, so it holds only versions the tests ran.
lock: $(STAMP) ## re-resolve requirements/*.txt to the newest versions pyproject.toml allows
	$(PIP_COMPILE) --upgrade --extra dev -o $(LOCK) pyproject.toml
	$(PIP_COMPILE) --upgrade -c $(LOCK) -o $(RUNTIME_LOCK) pyproject.toml

audit: $(STAMP) ## pip-audit of the lock against PyPI's advisories (needs PyPI's JSON API: README, Supply chain)
	$(BIN)/pip-audit --strict --disable-pip --progress-spinner off -r $(LOCK)

run: $(STAMP) ## everything in one foreground command: sandbox exchange, API on :8000, worker + beat, market streams
	$(BIN)/botmarket run

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# One pytest process per core (at most 4), each test file whole on one of them: its module's
# fixtures (API replicas, worker stacks) start once.
# The console's browser tests drive Debian's Chromium (Playwright's own browser download does
# not work on these machines). Installed once when missing; where apt cannot install it the
# browser tests skip, and fail under CI.
chromium:
	@test -x /usr/bin/chromium || apt-get install -y chromium || \
		{ apt-get update && apt-get install -y chromium; } || \
		echo "chromium is not installed: the console's browser tests will skip (fail under CI)"

# The alert rules' checks and unit tests (deploy/prometheus) run Debian's promtool, of its
# prometheus package (without the recommended extras; nothing of it is left running). Where apt
# cannot install it the alert tests skip, and fail under CI.
promtool:
	@command -v promtool >/dev/null || apt-get install -y --no-install-recommends prometheus || \
		{ apt-get update && apt-get install -y --no-install-recommends prometheus; } || \
		echo "promtool is not installed: the alert rule tests will skip (fail under CI)"

test: lint chromium promtool ## lint, then the whole test suite with branch coverage (reports in var/coverage/; MariaDB/Redis tests skip when absent, fail under CI)
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile --cov --cov-report=term --cov-report=xml --cov-report=html

migrate: $(STAMP) ## alembic upgrade head on DATABASE_URL
	$(BIN)/botmarket migrate

# Every script runs, so that one missed target does not hide the other figures; then the
# status is 1 if any of them missed one.
bench: $(STAMP) ## every benchmark script, then fails if any missed a target (needs wrk: apt-get install -y wrk; gateway.py, tick.py, events.py and console.py need MariaDB + Redis)
	status=0; \
	$(BIN)/python bench/api_load.py || status=1; \
	$(BIN)/python bench/gateway_cpu.py || status=1; \
	$(BIN)/python bench/statement_cost.py || status=1; \
	$(BIN)/python bench/gateway.py || status=1; \
	$(BIN)/python bench/tick.py --sizes 100,1000,10000 || status=1; \
	$(BIN)/python bench/events.py || status=1; \
	$(BIN)/python bench/console.py || status=1; \
	exit $$status

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
