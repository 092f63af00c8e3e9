# Switchboard developer commands. `make dev` runs it, `make test` proves it.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

# Prefer a Python that AWS Lambda supports (3.12+; Chalice packages for the local version).
PYTHON ?= $(shell for v in 3.12 3.13 3.11; do \
	  for p in $$(command -v python$$v) $$HOME/.pyenv/versions/$$v*/bin/python$$v; do \
	    [ -x "$$p" ] && "$$p" -c 'import venv' 2>/dev/null && { echo "$$p"; exit 0; }; \
	  done; done; echo python3)

.PHONY: venv dev test lint typecheck fmt bench clean

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip<26.3'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

dev: venv
	$(BIN)/switchboard dev

test: venv
	$(BIN)/ruff check .
	$(BIN)/mypy chalicelib switchboard app.py
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy chalicelib switchboard app.py

fmt: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: venv
	$(BIN)/python bench/costs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build chalice.out cdk.out

# `make package` (every stage) or `make package STAGE=prod`: chalice package + the infra/
# merge fragment + cfn-lint, offline (no AWS account; PyPI for the Lambda wheels). Output in
# build/<stage>/ (sam.json + deployment.zip); docs/deploy.md takes it from there.
.PHONY: package
package: venv
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-$${AWS_REGION:-us-east-1}} \
	  $(BIN)/python -m infra.package $(if $(STAGE),--stage $(STAGE))
