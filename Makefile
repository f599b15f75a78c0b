# `make run` and `make test` work on a fresh clone: they create .venv, install,
# train the model when it is missing or stale, then serve / test.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: install model run test bench check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The bundle records the hash of training_data/: retrain only when it no longer matches.
model: $(STAMP)
	$(BIN)/logmedic train --if-needed

run: model
	$(BIN)/logmedic serve --host $(HOST) --port $(PORT)

test: model
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/logmedic check

bench: model
	$(BIN)/python bench/engine.py

clean:
	rm -rf build $(VENV) .pytest_cache
