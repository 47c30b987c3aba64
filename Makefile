# The two commands a newcomer needs: `make serve` and `make test`.
# Both create .venv here and install everything on a fresh machine (Python 3.11 + pip).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
JS_STAMP := tests/js/node_modules/.installed-stamp

.PHONY: serve test lint install benchmark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The JavaScript client the tests drive (tests/js, pinned by its package-lock.json): node and
# npm from Debian's packages when node is absent, then `npm ci`, again only when the lock changes.
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
	@cd tests/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null
	@touch $(JS_STAMP)

install: $(STAMP) $(JS_STAMP)

serve: $(STAMP)
	$(BIN)/visage serve

test: lint $(JS_STAMP)
	$(BIN)/python -m pytest

# Formatting, lint and types; `make test` runs these first.
lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

benchmark: $(STAMP)
	$(BIN)/python benchmarks/engine_speed.py

clean:
	rm -rf $(VENV) .pytest_cache
