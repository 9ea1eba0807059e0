# Two entry points, both idempotent: `make run` (the main job) and `make test`.
PYTHON ?= $(shell command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup tools run test figures clean

setup: $(STAMP) tools

# h2load, wrk and nginx for `lbsim bench` (Debian packages; apt-get only when one is missing and we are root).
# Best effort: without them the bench says what to install, and nothing else needs them. Then Chromium and its
# driver for the console's browser tests (tests/test_console.py), the same way. Then the metering's
# C message callback is built with cc (cached; without a compiler the meter uses its Python one).
tools: $(STAMP)
	$(BIN)/python -c 'from simulator.tools.bench import ensure_tools; ensure_tools(install=True)'
	$(BIN)/python -c 'from simulator.tools.bench import ensure_tools, BROWSER_PACKAGES; ensure_tools(install=True, need=tuple(BROWSER_PACKAGES), packages=BROWSER_PACKAGES)'
	$(BIN)/python -c 'from simulator.metering import native; print("metering message callback:", native.KIND)'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,load,notebooks,browser,vendor-sdks]'
	touch $(STAMP)

run: setup
	$(BIN)/lbsim run

# One pytest worker per core (at most 4), each taking whole files, so that a module's lab starts once:
# on CI's 2 cores the suite takes about half its serial time. `.venv/bin/python -m pytest` alone runs serially.
test: setup
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile

# The figures of README.md and docs/notebooks.md: both notebooks executed headless on fresh measurements
# (the full sweep, a few minutes), writing their PNGs and *_conclusions.md into docs/figures/; the executed
# copies go to lbsim-notebooks/ (git-ignored).
figures: setup
	LBSIM_CWD=$(CURDIR) LBSIM_NOTEBOOK_OUT=docs/figures $(BIN)/jupyter nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout=1800 --output-dir lbsim-notebooks notebooks/traffic_vs_billed.ipynb
	LBSIM_CWD=$(CURDIR) LBSIM_NOTEBOOK_OUT=docs/figures $(BIN)/jupyter nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout=1800 --output-dir lbsim-notebooks notebooks/policy_matrix.ipynb

clean:
	rm -rf $(VENV)
