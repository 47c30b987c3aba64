# The two commands a newcomer needs: `make serve` and `make test`.
# Both create .venv here and install everything on a fresh machine (Python 3.11 + pip).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: serve test lint install benchmark mutate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/visage serve

test: lint
	$(BIN)/python -m pytest

# Formatting, lint and types; `make test` runs these first.
lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Mutation testing of service.py, quality.py, protocol.py, sigv4.py and similarity.py against
# the fast tests that cover them ([tool.mutmut] in pyproject.toml); docs/testing.md has the
# score and every surviving mutant. Not part of `make test` or CI.
mutate: $(STAMP)
	rm -rf mutants
	VISAGE_EVAL_DATA=$${VISAGE_EVAL_DATA:-../shared/eval} $(BIN)/mutmut run
	$(BIN)/mutmut results

benchmark: $(STAMP)
	$(BIN)/python benchmarks/engine_speed.py

clean:
	rm -rf $(VENV) .pytest_cache mutants
