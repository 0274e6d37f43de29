# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= config/digits.yaml

# Prefect runs on its ephemeral local server; no telemetry (no network here).
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 60
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: venv demo test lint docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/expand run $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipeline flows cli tests bench
	$(BIN)/lint-imports

# The generated references: the configuration keys and the manifest's JSON Schema.
docs: $(STAMP)
	$(BIN)/python -m pipeline.config.reference --write
	$(BIN)/python -m pipeline.version.schema > docs/manifest.schema.json

clean:
	rm -rf output .pytest_cache
