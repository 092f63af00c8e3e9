# Switchboard developer commands. `make dev` runs it, `make test` proves it.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

# Prefer a Python that AWS Lambda supports (3.12+; Chalice packages for the local version).
PYTHON ?= $(shell for v in 3.12 3.13 3.11; do \
	  for p in $$(command -v python$$v) $$HOME/.pyenv/versions/$$v*/bin/python$$v; do \
	    [ -x "$$p" ] && "$$p" -c 'import venv' 2>/dev/null && { echo "$$p"; exit 0; }; \
	  done; done; echo python3)

# What the test suite needs outside Python: Debian's chromium (the browser tests drive it
# headless) and Node.js + npm (the Durable Streams conformance suite and TypeScript client,
# pinned in tests/conformance/ and tests/e2e/ts_client/). `make test` installs what it can: the npm packages always, the Debian
# packages when it runs as root with apt-get; otherwise it stops at once, naming the command.
CHROMIUM ?= $(or $(shell command -v chromium),$(wildcard /usr/bin/chromium))
NPM ?= $(shell command -v npm)
APT_GET ?= $(shell command -v apt-get)
# The Durable Streams conformance suite and the official Durable Streams TypeScript client.
NPM_DIRS := tests/conformance tests/e2e/ts_client examples/restate_agent
ROOT_USER := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: venv dev test test-deps chromium npm lint typecheck fmt bench clean

$(VENV)/.installed: pyproject.toml
	@echo "==> Setting up $(VENV)/ with $(PYTHON): Switchboard and its dependencies (first run only, about a minute)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "make: cannot create $(VENV)/ with $(PYTHON). On Debian/Ubuntu run: sudo apt-get install -y python3-venv"; exit 1; }
	@$(BIN)/python -m pip install --quiet --upgrade 'pip<26.3'
	@set -o pipefail; $(BIN)/python -m pip install --progress-bar off -e '.[dev]' \
	  | awk '/^Collecting / { n++; printf "    [%3d] %s\n", n, $$2; fflush() } \
	         /^Installing collected/ { print "    installing..."; fflush() }'
	@echo "==> $(VENV)/ is ready"
	@touch $@

venv: $(VENV)/.installed

# `make dev ARGS="--no-auth"`, `make dev ARGS="--port 9000 --no-agent"`: any `switchboard dev` option.
dev: venv
	$(BIN)/switchboard dev $(ARGS)

test: venv test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy chalicelib switchboard app.py
	$(BIN)/python -m pytest

test-deps: chromium $(addsuffix /node_modules/.installed,$(NPM_DIRS))

chromium:
	@if [ -z "$(CHROMIUM)" ]; then \
	  if [ -n "$(ROOT_USER)" ] && [ -n "$(APT_GET)" ]; then \
	    echo "==> Installing Debian's chromium for the browser tests (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive $(APT_GET) update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq chromium >/dev/null || exit 1; \
	  else \
	    echo "make: the browser tests need Debian's chromium. Run: sudo apt-get install -y chromium"; \
	    echo "      then \`make test\` again."; \
	    exit 1; \
	  fi; \
	fi

npm:
	@if [ -z "$(NPM)" ]; then \
	  if [ -n "$(ROOT_USER)" ] && [ -n "$(APT_GET)" ]; then \
	    echo "==> Installing Node.js and npm for the conformance suite (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive $(APT_GET) update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq nodejs npm >/dev/null || exit 1; \
	  else \
	    echo "make: the Durable Streams conformance suite needs Node.js >= 20 and npm. Run: sudo apt-get install -y nodejs npm"; \
	    echo "      then \`make test\` again."; \
	    exit 1; \
	  fi; \
	fi
	@major=$$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'); \
	if [ -z "$$major" ] || [ "$$major" -lt 20 ]; then \
	  echo "make: the conformance suite needs Node.js >= 20 (found: $$(node --version 2>/dev/null || echo none))."; \
	  echo "      Install Node.js 20 or later (https://nodejs.org/en/download, or nodesource for Debian), then \`make test\` again."; \
	  exit 1; \
	fi

# `npm install --no-save` with the committed lock, not `npm ci`: vite lists an optional
# Windows-only dependency the registry does not serve, which `npm ci`'s lock check refuses;
# --no-save leaves package-lock.json as committed.
%/node_modules/.installed: %/package.json %/package-lock.json | npm
	@echo "==> Installing the npm packages of $* (pinned in $*/package-lock.json)"
	@$(or $(NPM),npm) install --prefix $* --no-save --no-audit --no-fund --loglevel=error >/dev/null
	@touch $@
