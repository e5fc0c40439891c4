# The README's two commands: `make demo` (the full loop on the simulated lab, SQLite) and
# `make test` (the whole suite, slow and PostgreSQL tests included). Each builds .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo-out

.PHONY: demo test fast-test lint bench install

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bruno-lab needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,all]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/bruno-lab demo --out $(OUT)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not station and not gpu" -q

fast-test: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .
