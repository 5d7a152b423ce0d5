# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test browser lint typecheck unit integration loadtest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "LiveCart needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## Run the app on embedded defaults: SQLite in ./livecart.db and a private Redis in ./.livecart/.
run: $(STAMP)
	$(BIN)/livecart serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

## Lint, type-check and run every test (integration tests need Redis and PostgreSQL, see README), in
## TEST_WORKERS parallel workers (pytest-xdist; each has its own Redis and PostgreSQL database, see
## docs/testing.md). Most tests wait on servers, sockets and timers, so more workers than cores pays.
TEST_WORKERS ?= 3
test: $(STAMP) browser lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

## The browser tests (tests/e2e/) drive Debian's chromium; Playwright's own browser download is not used.
## A Chinese font too: the pages are zh-CN first, and their screenshots (docs/*.png) must show it.
browser:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)
	fc-list :lang=zh | grep -q . || (apt-get update && apt-get install -y fonts-wqy-microhei)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

## The headless locust profile (loadtests/profile.py) against a fresh `livecart serve`; ARGS passes options,
## e.g. `make loadtest ARGS="--workers 2 -u 1000 -r 100 -t 60s"` or `ARGS="--target https://shop.example.com"`.
loadtest: $(STAMP)
	$(BIN)/python loadtests/profile.py $(ARGS)

bench: $(STAMP)
	$(BIN)/python loadtests/bench_buy.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
