# The two commands a new machine needs: `make run` (the local stack) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: run test lint bench clean screenshots

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# mypy sees the package `infraudit` (the folder src/) through this link (pyproject's [tool.mypy]).
MYPY_LINK := $(VENV)/mypy-path/infraudit

$(MYPY_LINK): $(STAMP)
	mkdir -p $(dir $(MYPY_LINK))
	ln -sfn $(CURDIR)/src $(MYPY_LINK)

run: $(STAMP)
	$(BIN)/infraudit up

# Debian's Chromium, which the Settings page's browser tests drive through Playwright (never
# `playwright install`: nothing may download a browser build). Installed when missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell test "$$(id -u)" -eq 0 || echo sudo)

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) apt-get install -y chromium

test: $(STAMP) $(CHROMIUM) $(MYPY_LINK)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup

lint: $(STAMP) $(MYPY_LINK)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The benchmark's own packages (Celery, redis, matplotlib): the `bench` extra, installed once.
BENCH_STAMP := $(VENV)/.bench-installed
# `make bench BENCH_ARGS=--quick` checks the harness in a few minutes (into build/bench-quick/).
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# A few minutes of events through the real stack on loopback; rewrites its numbers in
# docs/reliability.md (tests/load.py says what it checks). Not part of `make test`.
.PHONY: load
load: $(STAMP)
	$(BIN)/python -m tests.load

# The README's pictures of Settings → Webhooks, taken again on the real stack (docs/img/).
screenshots: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m scripts.screenshots

clean:
	rm -rf $(VENV) .infraudit .pytest_cache .ruff_cache .mypy_cache
