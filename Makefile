# SEP Research: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv when it is missing and (re)install the project when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sep-installed
EXTRAS ?= dev

.DEFAULT_GOAL := help
.PHONY: help demo test test-fast lab bench lint clean-venv

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

demo: $(STAMP) ## run the main job end to end on the real sample data
	$(BIN)/sep demo

test: $(STAMP) lint ## lint, then the test suite (slow tests and notebooks included)
	$(BIN)/python -m pytest -q tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

test-fast: $(STAMP) ## the tests without the slow ones and the notebooks
	$(BIN)/python -m pytest -q tests -m "not slow" -p no:cacheprovider

lab: $(STAMP) ## open JupyterLab on notebooks/
	$(BIN)/jupyter lab --notebook-dir=notebooks

bench: $(STAMP) ## run the benchmarks (tables on stdout)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(STAMP) ## ruff, with the rule set and version pinned in pyproject.toml
	$(BIN)/ruff check sep_research runners tests bench

clean-venv: ## remove .venv
	rm -rf $(VENV)
