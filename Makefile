# The front door. `make run` starts the whole product, `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COV := --cov=conductor --cov=agents --cov=connectors --cov=telemetry --cov-report=term

.PHONY: run test lint bench evaluate demo install clean

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Conductor needs Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

## Start web (HTTP + websockets), worker, beat and the embedded PostgreSQL and Redis.
run: $(STAMP)
	$(PY) manage.py serve

## Run the whole suite against real embedded PostgreSQL and Redis (var/test, not the run data).
test: $(STAMP)
	@command -v chromium >/dev/null || echo "note: no chromium found; browser tests will be skipped (apt-get install chromium)"
	$(PY) -m pytest $(COV) $(PYTEST_ARGS)

## ruff, formatting, mypy and the import contracts (pyproject.toml) on our packages (no services).
lint: $(STAMP)
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DATABASE_URL=postgres://lint@localhost/lint REDIS_URL=redis://localhost:6379/0 \
		$(VENV)/bin/mypy conductor agents connectors telemetry

## Benchmarks under bench/: each prints its figures as ratios against a baseline run alongside.
bench: $(STAMP)
	@for b in $(wildcard bench/*.py); do echo "== $$b"; $(PY) $$b || exit 1; done

## The policy against an oracle and baselines, through the whole loop (its own data in var/evaluate).
evaluate: $(STAMP)
	rm -rf var/evaluate
	CONDUCTOR_DATA_DIR=var/evaluate $(PY) manage.py evaluate $(EVALUATE_ARGS)

clean:
	rm -rf var staticfiles .coverage htmlcov test-artifacts
