# pgq-thin: the front door. `make test` works on a fresh machine (the pytest plugin
# starts a throwaway PostgreSQL when none accepts connections).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv deps lint test test-fast demo bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

deps:
	@bash tests/deps.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict pgq_thin
	$(BIN)/lint-imports

# Every tier (tests/unit, tests/db, tests/e2e, tests/sql, tests/browser); one tier: `.venv/bin/pytest tests/db`
# or `-m db`. test-fast is the inner loop: no database, seconds.
test: venv deps lint
	$(BIN)/pytest

test-fast: venv
	$(BIN)/pytest -q tests/unit

# Ends by printing the commands to try next, runnable as printed from this directory
# (tests/e2e/test_demo.py runs them).
demo: venv
	@set -e; \
	if [ -z "$$DATABASE_URL" ]; then \
		$(BIN)/pgq-thin db start >/dev/null; \
		export DATABASE_URL=$$($(BIN)/pgq-thin db url); \
		echo "using the local database: $$DATABASE_URL"; \
	fi; \
	$(BIN)/pgq-thin install; \
	$(BIN)/pgq-thin verify; \
	ids="$$($(BIN)/python examples/enqueue_demo.py) $$($(BIN)/pgq-thin enqueue greet '{"name": "CLI"}')"; \
	echo "enqueued jobs $$ids; running examples/consumer.py until nothing is left to claim"; \
	(cd examples && ../$(BIN)/pgq-thin run consumer:main --mode drain); \
	echo "summary:"; \
	$(BIN)/python examples/summary.py $$ids; \
	echo; \
	echo "next, from this directory (pgq-thin is in $(BIN)/; \`source $(BIN)/activate\` puts it on PATH):"; \
	echo "  $(BIN)/pgq-thin stats"; \
	echo "  $(BIN)/pgq-thin jobs --limit 5"; \
	echo "  $(BIN)/pgq-thin enqueue greet '{\"name\": \"you\"}'"; \
	echo "  (cd examples && ../$(BIN)/pgq-thin run consumer:main --mode drain)"; \
	if [ -z "$(DATABASE_URL)" ]; then echo "  $(BIN)/pgq-thin db stop"; fi

# Benchmarks against PgQueuer, procrastinate and the SQL floor (bench/RESULTS.md): a short run
# of a few minutes by default, the full one with BENCH=full. Peers go into bench/.peers/.
bench: venv
	$(BIN)/python bench/run.py $(if $(filter full,$(BENCH)),--full)
