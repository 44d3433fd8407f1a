# RewardLab. Two commands do all the set-up on a fresh machine:
#   make demo   install, migrate, load the demo project, start web + worker + beat (Ctrl-C stops them all)
#   make test   install what the tests need (Chromium included) and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8000
# torch is pinned to the CPU wheel on disk; anything newer would pull GBs of CUDA packages.
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check -c requirements/constraints.txt

.PHONY: install install-test browser demo serve test test-fast lint migrate clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check --upgrade pip

$(VENV)/.installed-base: requirements/base.txt requirements/constraints.txt | $(VENV)/bin/python
	$(PIP_INSTALL) -r requirements/base.txt
	@touch $@

$(VENV)/.installed-test: requirements/test.txt $(VENV)/.installed-base
	$(PIP_INSTALL) -r requirements/test.txt
	@touch $@

install: $(VENV)/.installed-base

install-test: $(VENV)/.installed-test browser

# Browser tests drive Debian's Chromium (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; }

migrate: install
	$(PY) manage.py migrate --noinput

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	PORT=$(PORT) PY=$(PY) bash scripts/demo.sh

test: install-test
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: install-test
	$(VENV)/bin/ruff check .

clean:
	rm -rf var/ .pytest_cache
