# The two commands: `make run` and `make test`. Both install what they need (uv, the locked dependencies).
SHELL := /bin/bash
PYTHON ?= python3
# uv from PATH, else a private copy installed with pip under .tools/
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := .venv
STAMP := $(VENV)/.synced

.PHONY: run test lint typecheck pytest sync clean bench-dispatch bench-query bench-ingest bench-lifecycle

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --ignore-installed --prefix $(CURDIR)/.tools uv

$(STAMP): $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --frozen --all-packages
	touch $(STAMP)

sync: $(STAMP) ## install the locked dependencies into .venv

run: $(STAMP) ## start the local stack in the foreground (Ctrl-C stops it)
	$(UV) run --frozen --no-sync trace dev up

test: lint typecheck pytest ## ruff, mypy --strict, pytest

lint: $(STAMP)
	$(UV) run --frozen --no-sync ruff check .
	$(UV) run --frozen --no-sync ruff format --check .

typecheck: $(STAMP)
	$(UV) run --frozen --no-sync mypy libs services tests benchmarks examples

pytest: $(STAMP)
	$(UV) run --frozen --no-sync pytest

bench-dispatch: $(STAMP) ## Trace vs PgQueuer vs procrastinate on the same Postgres (TRACE_DATABASE_URL or 127.0.0.1:5432)
	$(UV) run --frozen --no-sync python -m benchmarks.dispatch

bench-query: $(STAMP) ## raw DuckDB vs the Query Service engine vs the Query Service over HTTP, 10 M Parquet rows
	$(UV) run --frozen --no-sync python -m benchmarks.query

bench-ingest: $(STAMP) ## 50,000 devchain blocks through block_follower -> range_aggregator -> cryo_ingest vs cryo alone
	$(UV) run --frozen --no-sync python -m benchmarks.ingest

bench-lifecycle: $(STAMP) ## redeploy, backfill, status, cutover and rollback of a DAG with 10 k and 100 k events
	$(UV) run --frozen --no-sync python -m benchmarks.lifecycle

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis
