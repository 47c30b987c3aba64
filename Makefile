# The two commands a newcomer needs: `make serve` and `make test`.
# Both create .venv here and install everything on a fresh machine (Python 3.11 + pip).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
JS_STAMP := tests/js/node_modules/.installed-stamp

.PHONY: serve test lint install browser allocator benchmark benchmark-console mutate figures clean

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

install: $(STAMP) $(JS_STAMP) allocator

serve: $(STAMP) allocator
	$(BIN)/visage serve

test: lint browser allocator $(JS_STAMP)
	$(BIN)/python -m pytest

# The console's browser tests drive Debian's chromium through Playwright; nothing downloads
# a browser. Installed with apt when absent (as root, as on CI); otherwise those tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is not installed: the console's browser tests will skip (sudo apt-get install chromium)"; fi; }

# The server's memory allocator: jemalloc (Debian's libjemalloc2), on which the SQLite server's
# memory crept up more slowly under load than on glibc's malloc (docs/operations.md). Installed with
# apt when absent (as root, as on CI); otherwise `visage serve` runs on glibc's and says so.
allocator:
	@$(PYTHON) -c "import ctypes.util, sys; sys.exit(not ctypes.util.find_library('jemalloc'))" || { \
		if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq libjemalloc2 >/dev/null; \
		else echo "jemalloc is not installed: visage serve will use glibc's malloc (sudo apt-get install libjemalloc2)"; fi; }

# Formatting, lint and types; `make test` runs these first.
lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/mypy

# Mutation testing of service.py, quality.py, protocol.py, sigv4.py and similarity.py against
# the fast tests that cover them ([tool.mutmut] in pyproject.toml); docs/testing.md has the
# score and every surviving mutant. Not part of `make test` or CI.
mutate: $(STAMP)
	VISAGE_EVAL_DATA=$${VISAGE_EVAL_DATA:-../shared/eval} $(BIN)/python benchmarks/mutation.py

benchmark: $(STAMP)
	$(BIN)/python benchmarks/engine_speed.py

benchmark-console: $(STAMP)
	$(BIN)/python benchmarks/console.py

# Every published figure, rewritten from a fresh run: the fusion weight and Similarity maps that
# ship (--install), the LFW and CFP results, the bias audit and the gallery in docs/, the engine benchmark and
# users of one face against five, then docs/accuracy.md and the generated blocks of README.md and
# docs/engine.md. Hours of CPU.
figures: $(STAMP)
	$(BIN)/visage eval fusion-weight --install
	$(BIN)/visage eval calibrate --install
	for model in sface dlib sface-crops fusion; do $(BIN)/visage eval lfw --model $$model --out docs/accuracy || exit 1; done
	for model in sface dlib sface-crops fusion; do $(BIN)/visage eval cfp --model $$model --out docs/accuracy || exit 1; done
	$(BIN)/visage audit --out docs/bias-audit --markdown docs/bias-audit.md
	$(BIN)/visage eval gallery --out docs/gallery --markdown docs/gallery.md
	$(BIN)/visage eval attributes --out docs
	$(BIN)/python benchmarks/engine_speed.py
	$(BIN)/python benchmarks/several_photos.py
	$(BIN)/visage eval docs --out docs --pages README.md --pages docs/engine.md

clean:
	rm -rf $(VENV) .pytest_cache mutants
