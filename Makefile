# The README's two commands: `make run` (the main job) and `make test` (the test suite).
# Both create .venv from requirements.lock on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: run test postgres bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

run: $(VENV)/.installed  ## train the tutorial agent (make run ARGS="agent.model.units=64")
	$(PY) -m sweep $(ARGS)

postgres:  ## PostgreSQL's server for the distributed tests (Debian's package), if missing
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

test: $(VENV)/.installed postgres  ## lint, then the test suite
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q $(ARGS)

bench: $(VENV)/.installed
	$(PY) bench/throughput.py $(ARGS)

clean:
	rm -rf $(VENV)
