# syncmesh — every target bootstraps what it needs (.venv, dependencies, buf).
# Fresh machine: `make run` runs the hub; `make test` runs the tests.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUF    := node_modules/.bin/buf

.PHONY: run test test-fast generate check-generated lint breaking bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $@

$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: $(STAMP)
	$(VENV)/bin/syncmesh up $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

generate: $(STAMP)
	PY=$(PY) ./scripts/generate.sh

# CI: generated/ must be exactly what `make generate` produces from protos/.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- generated/)" ]; then \
	  git status --short -- generated/; \
	  echo "generated/ drifted from protos/: run 'make generate' and commit the result" >&2; exit 1; \
	fi

lint: $(STAMP) $(BUF)
	$(PY) scripts/protodeps.py .build/protodeps
	$(BUF) lint
	./scripts/buf-breaking.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services gateway tests bench scripts

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf .build .pytest_cache .mypy_cache .ruff_cache
