# rishub: `make run` starts every listener on the embedded default; `make test` passes the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-pg bench bench-ingest bench-query lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/rishub serve --config config/rishub.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-pg: $(STAMP)
	RISHUB_TEST_PG=1 $(BIN)/python -m pytest -q

bench: bench-ingest bench-query

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-query: $(STAMP)
	$(BIN)/python bench/query.py

lint: $(STAMP)
	$(BIN)/ruff check hub interfaces mappings migrations tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
