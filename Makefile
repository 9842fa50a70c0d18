# Two commands on a fresh machine: `make demo` and `make test`. Each makes its own virtual environment.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NGINX := $(shell command -v nginx || ls /usr/sbin/nginx 2>/dev/null)
KUBECTL := $(shell command -v kubectl)

.PHONY: demo test tools lint types layers unit bench clean

# Checked before anything is created, so a wrong Python never leaves a half-built .venv behind.
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "aks-apim-sync needs Python 3.11 or newer with venv; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing). Try: make PYTHON=python3.11 ..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip || { rm -rf $(VENV); exit 1; }
	$(BIN)/pip install --quiet -r requirements-dev.txt || { rm -rf $(VENV); exit 1; }
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sandbox demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# The layering of shared/ (pyproject.toml [tool.importlinter]); which SDK each adapter imports is a test.
layers: $(STAMP)
	$(BIN)/lint-imports --no-cache

# Third-party servers the tests run for real: Azurite (npm, into ./node_modules) and nginx (Debian package).
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "make test needs node and npm for Azurite (Debian: apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# checkov (Bicep checks) pins dozens of packages of its own, so it lives in a venv of its own, apart from the app's.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt || { rm -rf $(CHECKOV_VENV); exit 1; }
	touch $@

tools: node_modules/.installed $(CHECKOV_VENV)/.installed
ifeq ($(NGINX),)
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q nginx >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q nginx >/dev/null); \
	else echo "nginx is missing: sudo apt-get install nginx (the TLS rotation test needs it)"; fi
endif
ifeq ($(KUBECTL),)
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q kubectl >/dev/null 2>&1 || apt-get install -y -q kubernetes-client >/dev/null; \
	else echo "kubectl (1.27 or newer) is missing: the kubectl tests need it (https://kubernetes.io/docs/tasks/tools/)"; fi
endif

unit: $(STAMP) tools
	$(BIN)/python -m pytest

test: lint types layers unit

bench: $(STAMP)
	$(BIN)/python -m bench.noop_resync
	$(BIN)/python -m bench.event_cost
	$(BIN)/python -m bench.api_event_cost
	$(BIN)/python -m bench.paced_first_sync 1000

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .mypy_cache .pytest_cache .ruff_cache .import_linter_cache
