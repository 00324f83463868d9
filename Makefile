# MedLens: `make run` (dashboard on the demo store) and `make test` work from a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PORT    ?= 8501
DEMO_STORE := data/demo_store

.PHONY: run test demo venv chromium lint bench clean-demo

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# Debian chromium for browser tests and figure export (never a downloaded browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: sudo apt-get install chromium (browser tests will be skipped)"; fi; }

demo: $(STAMP)
	$(BIN)/python -m data demo --store $(DEMO_STORE)

run: $(STAMP) chromium
	$(BIN)/python -m data demo --store $(DEMO_STORE) --if-stale
	$(BIN)/python -m dashboard --store $(DEMO_STORE) --port $(PORT)

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check cache ingest dashboard data tests

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_store.py

clean-demo:
	rm -rf $(DEMO_STORE) data/demo
