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
	$(BIN)/flowscope demo --html flowscope-report.html

# Phoenix, the real OTLP receiver of the export tests, lives in its own venv (see the script).
PHOENIX_VENV ?= $(or $(FLOWSCOPE_PHOENIX_VENV),.venv-phoenix)
PHOENIX_STAMP := $(PHOENIX_VENV)/.phoenix-installed

$(PHOENIX_STAMP): scripts/install-phoenix.sh
	PYTHON=$(PYTHON) scripts/install-phoenix.sh $(PHOENIX_VENV)

# The suite runs twice: on SQLAlchemy 2.0 (constraints.txt; opentelemetry-instrumentation-
# sqlalchemy supports < 2.1 only) and on 2.1, in a second venv (tests of that instrumentation
# skip there, saying why).
SQLALCHEMY_21 ?= 2.1.9
VENV21 ?= .venv-sqlalchemy-2.1
STAMP21 := $(VENV21)/.installed

$(STAMP21): pyproject.toml constraints.txt setup.py
	$(PYTHON) -m venv $(VENV21)
	$(VENV21)/bin/python -m pip install --quiet --upgrade pip
	sed 's/^SQLAlchemy==.*/SQLAlchemy==$(SQLALCHEMY_21)/' constraints.txt > $(VENV21)/constraints.txt
	$(VENV21)/bin/python -m pip install --quiet -c $(VENV21)/constraints.txt -e '.[test]'
	touch $(STAMP21)

# The official SARIF 2.1.0 JSON schema, which tests/test_sarif.py validates flowscope's SARIF against.
SARIF_SCHEMA := .cache/sarif-2.1.0-rtm.5.json

$(SARIF_SCHEMA): scripts/install-sarif-schema.sh
	scripts/install-sarif-schema.sh $(SARIF_SCHEMA)

TEST_ENV = FLOWSCOPE_PHOENIX_VENV=$(abspath $(PHOENIX_VENV)) FLOWSCOPE_SARIF_SCHEMA=$(abspath $(SARIF_SCHEMA))

test: $(STAMP) $(PHOENIX_STAMP) $(STAMP21) $(SARIF_SCHEMA)
	@echo "== test suite on SQLAlchemy $$($(BIN)/python -c 'import sqlalchemy; print(sqlalchemy.__version__)')"
	$(TEST_ENV) $(BIN)/python -m pytest
	@echo "== test suite on SQLAlchemy $$($(VENV21)/bin/python -c 'import sqlalchemy; print(sqlalchemy.__version__)')"
	$(TEST_ENV) $(VENV21)/bin/python -m pytest

# Speed and memory targets, measured side by side (see benchmarks/); not part of `make test`.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(VENV21) .cache .pytest_cache flowscope.db flowscope-report.html
