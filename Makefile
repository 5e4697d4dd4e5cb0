# The few commands a person runs. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: setup demo test bench bench-audit chaos lint lock up down generate screenshots

setup:
	@infra/setup.sh

## The whole system plus the demo scenario; set KEEP_RUNNING=1 to leave it running.
demo: setup
	@infra/stack.sh up >/dev/null
	@trap '[[ -n "$$KEEP_RUNNING" ]] || infra/stack.sh down >/dev/null' EXIT; \
	  CASEBRIDGE_LOG_LEVEL=$${CASEBRIDGE_LOG_LEVEL:-WARNING} CASEBRIDGE_LOG_FORMAT=$${CASEBRIDGE_LOG_FORMAT:-console} \
	  .venv/bin/casebridge demo $${KEEP_RUNNING:+--keep-running}

## The full test suite; it starts its own Kafka and PostgreSQL on free ports.
test: setup
	@$(PY) -m pytest -q

## (a) raw passthrough, (b) intake-router-audit, (c) the whole system; BENCH_ARGS="--backlog --events 200000" for memory.
bench: setup
	@infra/stack.sh up >/dev/null
	@$(PY) -m benchmarks.pipeline $(BENCH_ARGS)

bench-audit: setup
	@infra/stack.sh up >/dev/null
	@$(PY) -m benchmarks.audit_scale

## Fault recipes 1-9 on their own three-broker cluster and PostgreSQL (README: make chaos);
## CHAOS_ARGS="--events 2000 --recipes 1,3" for a quick run.
chaos: setup
	@$(PY) -m benchmarks.chaos $(CHAOS_ARGS)

## Re-resolve infra/requirements.lock (exact versions and hashes) from pyproject.toml; setup installs from it.
lock: setup
	@.venv/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --upgrade \
	  --python-version 3.11 --quiet -o infra/requirements.lock

## The web console's browser test, keeping its screenshots in docs/console/.
screenshots: setup
	@CASEBRIDGE_SCREENSHOTS=$(CURDIR)/docs/console $(PY) -m pytest -q tests/e2e/test_console_browser.py

lint: setup
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy --strict services schemas

generate: setup
	@$(PY) -m schemas.generate && $(PY) -m services.asyncapi

up: setup
	@infra/stack.sh up

down:
	@infra/stack.sh down
