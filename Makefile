# The two commands a newcomer needs: `make serve` and `make test`.
# Both create .venv here and install everything on a fresh machine (Python 3.11 + pip).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: serve test lint install benchmark figures clean

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

benchmark: $(STAMP)
	$(BIN)/python benchmarks/engine_speed.py

# Every published figure, rewritten from a fresh run: the fusion weight and Similarity maps that
# ship (--install), the LFW results, the bias audit and the gallery in docs/, the engine benchmark,
# then docs/accuracy.md and the generated blocks of README.md and docs/engine.md. Hours of CPU.
figures: $(STAMP)
	$(BIN)/visage eval fusion-weight --install
	$(BIN)/visage eval calibrate --install
	for model in sface dlib fusion; do $(BIN)/visage eval lfw --model $$model --out docs/accuracy || exit 1; done
	$(BIN)/visage audit --out docs/bias-audit --markdown docs/bias-audit.md
	$(BIN)/visage eval gallery --out docs/gallery --markdown docs/gallery.md
	$(BIN)/python benchmarks/engine_speed.py
	$(BIN)/visage eval docs --out docs --pages README.md --pages docs/engine.md

clean:
	rm -rf $(VENV) .pytest_cache
