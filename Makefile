# The whole set-up is two commands: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi
HOST ?= 127.0.0.1
PORT ?= 5000
STRIPE_PORT ?= 8420
export STRIPE_API_BASE ?= http://$(HOST):$(STRIPE_PORT)
export PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)

.PHONY: run test install translations lint clean bench

$(BIN)/activate:
	python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

translations: install
	$(BIN)/pybabel --quiet compile -d reservations/translations

# The seeded demo on SQLite at http://127.0.0.1:5000/, paying through localstripe
# (a fake Stripe on 127.0.0.1:8420: card 4242 4242 4242 4242, any future date, any CVC),
# with the job scheduler beside it. Ctrl-C stops all three.
# Development mode keeps config.py's development secrets; anything else (a bare
# `gunicorn wsgi:app` or `flask ...`) is production and refuses them.
run: export APP_ENV := development
run: install translations
	$(BIN)/flask db upgrade
	$(BIN)/flask seed-demo
	@trap 'trap - INT TERM EXIT; kill 0' INT TERM EXIT; \
	$(BIN)/python -m reservations.payments.localstripe_server --host $(HOST) --port $(STRIPE_PORT) \
	    --webhook-url $(PUBLIC_BASE_URL)/webhooks/stripe & \
	$(BIN)/flask jobs run & \
	$(BIN)/flask run --host $(HOST) --port $(PORT)

# Browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-ipafont-gothic; \
	else \
	  echo "The browser tests need Debian's Chromium: sudo apt-get install chromium fonts-ipafont-gothic" >&2; exit 1; \
	fi

# The whole suite, on SQLite and PostgreSQL (TEST_PG_ADMIN_URL, default the local server),
# browser tests included, on PYTEST_WORKERS processes (pytest-xdist; 0 runs it in this one process).
# Each worker has its own databases, localstripe and live servers. Work is handed out test by test
# to whichever worker is free (worksteal), so the long tests do not pile up on one.
PYTEST_WORKERS ?= 2
PYTEST_DIST ?= worksteal
test: install translations $(CHROMIUM)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) $(PYTEST_ARGS)

# The benchmarks of issue 11 against PostgreSQL (TEST_PG_ADMIN_URL, default the local server), one after
# another; each prints one JSON line of figures and appends it to bench/results/<date>-<host>.jsonl
# (commit that file). BENCHES=... runs some of them; a missing script is skipped. See bench/README.md.
BENCHES ?= rush calendar_pages expiry finance_export lottery_draw
bench: install translations
	@export BENCH_RESULTS=bench/results/$$(date +%F)-$$(hostname).jsonl; status=0; \
	for name in $(BENCHES); do \
	  if [ -f bench/$$name.py ]; then \
	    echo "== bench/$$name.py" >&2; start=$$(date +%s); \
	    $(BIN)/python bench/$$name.py || status=1; \
	    echo "== bench/$$name.py: $$(( $$(date +%s) - start )) s" >&2; \
	  fi; \
	done; \
	echo "lines appended to $$BENCH_RESULTS" >&2; exit $$status

lint: install
	$(BIN)/ruff check reservations tests bench

clean:
	rm -rf $(VENV) instance .pytest_cache
