# Two commands set everything up on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Versions the suite is tested with; see the comments in constraints.txt.
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flowscope demo

# Phoenix, the real OTLP receiver of the export tests, lives in its own venv (see the script).
PHOENIX_VENV ?= $(or $(FLOWSCOPE_PHOENIX_VENV),.venv-phoenix)
PHOENIX_STAMP := $(PHOENIX_VENV)/.phoenix-installed

$(PHOENIX_STAMP): scripts/install-phoenix.sh
	PYTHON=$(PYTHON) scripts/install-phoenix.sh $(PHOENIX_VENV)

test: $(STAMP) $(PHOENIX_STAMP)
	FLOWSCOPE_PHOENIX_VENV=$(abspath $(PHOENIX_VENV)) $(BIN)/python -m pytest

# Speed and memory targets, measured side by side (see benchmarks/); not part of `make test`.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache flowscope.db
