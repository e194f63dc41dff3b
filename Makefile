# ModelServe — developer entry points. `make dev` runs the platform locally,
# `make test` runs the tests; both build what they need first (cached under
# ~/.cache/modelserve, so a warm machine builds nothing).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: dev test lint testbed venv clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

## testbed: build the whole test bed ahead of time (Kubernetes, etcd, KWOK, MinIO, helm,
## PostgreSQL, llama-cpp-python with SmolLM2)
testbed: venv
	$(BIN)/modelserve-testbed build

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common operator services testbed tests bench

## test: lint, type-check and run every test against the real components
test: testbed lint
	$(BIN)/pytest $(PYTEST_ARGS)

## dev: run the platform locally until Ctrl-C
dev: testbed
	$(BIN)/modelserve-testbed up

clean-venv:
	rm -rf $(VENV)
