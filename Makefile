# rishub: `make run` starts every listener on the embedded default; `make test` passes the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-pg bench bench-ingest bench-query bench-rest bench-archive bench-dicomweb bench-hl7 bench-mwl bench-fhir bench-render lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/rishub serve --config config/rishub.toml

# The browser end-to-end test runs on its own after the rest: headless chromium's software GL starves
# when it shares the two cores with the parallel suite (CI once saw 90 s pass without a frame drawn).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --ignore=tests/e2e
	$(BIN)/python -m pytest -q tests/e2e

test-pg: $(STAMP)
	RISHUB_TEST_PG=1 $(MAKE) test

bench: bench-ingest bench-query bench-rest bench-archive bench-dicomweb bench-hl7 bench-mwl bench-fhir bench-render

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-query: $(STAMP)
	$(BIN)/python bench/query.py

bench-rest: $(STAMP)
	$(BIN)/python bench/rest.py

bench-archive: $(STAMP)
	$(BIN)/python bench/archive.py

bench-dicomweb: $(STAMP)
	$(BIN)/python bench/dicomweb.py

bench-hl7: $(STAMP)
	$(BIN)/python bench/hl7.py

bench-mwl: $(STAMP)
	$(BIN)/python bench/mwl.py

bench-fhir: $(STAMP)
	$(BIN)/python bench/fhir_read.py
	$(BIN)/python bench/fhir_orders.py
	$(BIN)/python bench/fhir_orders.py --http

bench-render: $(STAMP)
	$(BIN)/python bench/render.py

lint: $(STAMP)
	$(BIN)/ruff check hub interfaces mappings migrations tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
