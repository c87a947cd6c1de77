# Quickstart targets. Both set up .venv on first use (from requirements*.txt), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test test-fast demo doctor bench clean-venv

$(STAMP): requirements.txt requirements-test.txt requirements-export.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements-test.txt
	@touch $(STAMP)

setup: $(STAMP)

# The whole suite: the fast tests, then the ones marked slow (exit code 5 = none selected, which is fine).
test: setup
	$(PY) -m pytest tests -m "not slow"
	$(PY) -m pytest tests -m slow || [ $$? -eq 5 ]

test-fast: setup
	$(PY) -m pytest tests -m "not slow" -x -q

# `make demo CFG=stylegan3-t` trains another config; `make demo MINUTES=30` trains longer.
CFG     ?= stylegan2
MINUTES ?= 8
demo: setup
	$(PY) demo.py --cfg=$(CFG) --minutes=$(MINUTES)

doctor: setup
	$(PY) -m torch_utils.ops

bench: setup
	$(PY) bench/bench_ops.py

clean-venv:
	rm -rf $(VENV)
