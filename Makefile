# Two entry points, both idempotent: `make run` (the main job) and `make test`.
PYTHON ?= $(shell command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,notebooks]'
	touch $(STAMP)

run: setup
	$(BIN)/lbsim run

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
