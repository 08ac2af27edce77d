# Everything a newcomer needs: `make run` and `make test` set themselves up from nothing but Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test lint migrate bench clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

run: $(STAMP) ## everything in one foreground command: sandbox exchange, API on :8000, worker + beat
	$(BIN)/botmarket run

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint ## lint, then the whole test suite with branch coverage (reports in var/coverage/; MariaDB/Redis tests skip when absent, fail under CI)
	$(BIN)/pytest --cov --cov-report=term --cov-report=xml --cov-report=html

migrate: $(STAMP) ## alembic upgrade head on DATABASE_URL
	$(BIN)/botmarket migrate

# Every script runs, so that one missed target does not hide the other figures; then the
# status is 1 if any of them missed one.
bench: $(STAMP) ## every benchmark script, then fails if any missed a target (needs wrk: apt-get install -y wrk; gateway.py and tick.py need MariaDB + Redis)
	status=0; \
	$(BIN)/python bench/api_load.py || status=1; \
	$(BIN)/python bench/gateway_cpu.py || status=1; \
	$(BIN)/python bench/statement_cost.py || status=1; \
	$(BIN)/python bench/gateway.py || status=1; \
	$(BIN)/python bench/tick.py --sizes 100,1000,10000 || status=1; \
	exit $$status

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
