# Two commands on a fresh machine: `make demo` runs the lab's quick-start grid and writes its
# report; `make test` runs the README's test command. Each creates or reuses the project's
# virtual environment (.venv) and installs what it needs from this checkout, again only when
# a pyproject.toml (or this Makefile) changed: a stamp per target in .venv holds their hash.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
DEMO_DIR ?= reports/digits
DEMO_GRID := --arch model1,model2,model3 --reg none,l2,dropout,batchnorm --dataset digits \
    --epochs 1
PYTEST_ARGS ?=
LINT_PATHS := src tests plugins benchmarks

# demo: the core package and the extras plugin, nothing optional; test: what the suite needs
DEMO_INSTALL := -e . -e plugins/regbench-extras
TEST_INSTALL := -e ".[test,ray,jax,mlflow]" -e plugins/regbench-extras
INSTALL_INPUTS := pyproject.toml plugins/regbench-extras/pyproject.toml Makefile
HASH = $(shell cat $(INSTALL_INPUTS) | sha256sum | cut -d' ' -f1)

# every recipe runs inside the environment, as after `source .venv/bin/activate`
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export MPLBACKEND ?= Agg

.PHONY: help demo test lint install-demo install-test

help:
	@echo "make demo   the quick-start grid (3 architectures x 4 regularizers, digits) and its report"
	@echo "make test   the test suite, both tiers (PYTEST_ARGS='-m \"not slow\"' for the fast one)"
	@echo "make lint   ruff, ruff format --check, mypy and the import-layers contract"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	python -m pip install -q --upgrade pip

# $(1): the stamp's name; $(2): pip's arguments; $(3): another stamp that also satisfies it
define install
	@stamp=$(VENV)/.installed-$(1); \
	if [ "$$(cat $$stamp 2>/dev/null)" = "$(HASH)" ] \
	    || { [ -n "$(3)" ] && [ "$$(cat $(VENV)/.installed-$(3) 2>/dev/null)" = "$(HASH)" ]; }; then \
	    echo "$(VENV): $(1) dependencies up to date"; \
	else \
	    echo "$(VENV): installing $(2)"; \
	    rm -f $$stamp; \
	    python -m pip install -q $(2); \
	    echo "$(HASH)" > $$stamp; \
	fi
endef

install-demo: $(VENV)/bin/python
	$(call install,demo,$(DEMO_INSTALL),test)

install-test: $(VENV)/bin/python
	$(call install,test,$(TEST_INSTALL))

# a grid with a failed run (exit 1) still gets its report, then fails the target
demo: install-demo
	@status=0; \
	echo "regbench run $(DEMO_GRID) --experiment $(DEMO_DIR)"; \
	regbench run $(DEMO_GRID) --experiment $(DEMO_DIR) || status=$$?; \
	[ $$status -le 1 ] || exit $$status; \
	regbench report $(DEMO_DIR) > /dev/null; \
	echo "report: $(abspath $(DEMO_DIR))/report.html"; \
	exit $$status

test: install-test
	python -m pytest -q $(PYTEST_ARGS)

lint: install-test
	ruff check $(LINT_PATHS)
	ruff format --check $(LINT_PATHS)
	mypy
	lint-imports
