# Gatehouse: `make run` serves the demo config, `make test` runs the whole suite.
# Each target creates .venv and installs the pinned requirements it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= examples/demo.yaml
HOST ?= 127.0.0.1
PORT ?= 4000
WORKERS ?= 1
PYTEST_ARGS ?=

.PHONY: run test browser-setup lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

run: $(VENV)/.runtime-installed
	$(BIN)/python manage.py serve --config $(CONFIG) --host $(HOST) --port $(PORT) --workers $(WORKERS)

test: $(VENV)/.dev-installed browser-setup
	SECRET_KEY=$${SECRET_KEY:-gatehouse-test-secret} $(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's chromium for tests/browser (installed as root when missing; never Playwright's download). Without it
# the rest of the suite still runs and the browser tests fail, saying how to install it.
browser-setup:
	@scripts/browser-setup || echo "browser-setup: chromium is missing: the browser tests (tests/browser) will fail"

# BENCH_ARGS: e.g. --quick (a ~2 min smoke run), --profile (py-spy, installed on demand), --scenarios ab
bench: $(VENV)/.dev-installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var
