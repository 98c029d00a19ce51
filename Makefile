# The README's two commands: `make run` (the main job: the default sweep) and `make test`.
# Both create .venv from requirements.lock on first use.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=

QUICK  := tests/test_config.py tests/test_cli.py tests/test_space.py tests/test_secrets.py \
          tests/test_stats.py tests/test_docs.py tests/test_plots_html.py

.PHONY: run train test quick postgres chromium check-ui bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

run: $(VENV)/.installed  ## the default sweep (make run ARGS="sweep.n_trials=10")
	$(PY) -m sweep multirun $(ARGS)

train: $(VENV)/.installed  ## train one agent (make train ARGS="agent.model.units=64")
	$(PY) -m sweep train $(ARGS)

postgres:  ## PostgreSQL's server for the distributed tests (Debian's package), if missing
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

chromium:  ## Debian's Chromium for the browser check of the MLflow UI, if missing
	@command -v chromium >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

check-ui: $(VENV)/.installed chromium  ## a tiny sweep, `sweep ui`, headless Chromium: screenshots
	$(PY) tests/check_ui.py $(ARGS)

test: $(VENV)/.installed postgres chromium  ## lint, then the test suite
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 3 --dist loadscope $(ARGS)  # three processes on 2 cores (the tests wait on child processes), a file each (conftest.py)

quick: $(VENV)/.installed  ## the quick lane: config, grammar, masking, statistics, plots; no training
	$(PY) -m pytest -q -n 3 --dist loadscope $(QUICK) $(ARGS)

bench: $(VENV)/.installed
	$(PY) bench/throughput.py $(ARGS)

clean:
	rm -rf $(VENV)
