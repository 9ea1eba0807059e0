# Two entry points, both idempotent: `make run` (the main job) and `make test`.
PYTHON ?= $(shell command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup tools run test clean

setup: $(STAMP) tools

# h2load, wrk and nginx for `lbsim bench` (Debian packages; apt-get only when one is missing and we are root).
# Best effort: without them the bench says what to install, and nothing else needs them. Then the metering's
# C message callback is built with cc (cached; without a compiler the meter uses its Python one).
tools: $(STAMP)
	$(BIN)/python -c 'from simulator.tools.bench import ensure_tools; ensure_tools(install=True)'
	$(BIN)/python -c 'from simulator.metering import native; print("metering message callback:", native.KIND)'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,notebooks,vendor-sdks]'
	touch $(STAMP)

run: setup
	$(BIN)/lbsim run

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
