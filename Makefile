# Two commands do all set-up on a fresh machine:
#   make book   - build the HTML book, executing every chapter (_build/html/index.html)
#   make test   - unit tests, nbval on every chapter, and a strict book build
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
FMNIST_SYSTEM := /usr/share/datasets/fashion-mnist
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0

.PHONY: setup data book test test-unit test-notebooks test-book clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	# d2l pins numpy 1.23 and friends that break current Python: install it alone.
	$(PY) -m pip install -q --no-deps d2l==1.0.3
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed data

# Fashion-MNIST offline from Debian when we may install it; otherwise torchvision downloads it.
data:
	@if [ ! -d $(FMNIST_SYSTEM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null)) \
	  && echo "installed Fashion-MNIST into $(FMNIST_SYSTEM)" || echo "could not install dataset-fashion-mnist; chapters will download Fashion-MNIST"; \
	fi

book: setup
	$(BIN)/jupyter-book build . --all -W --keep-going
	@echo "open _build/html/index.html"

test-unit: setup
	$(BIN)/pytest -q tests

test-notebooks: setup
	$(BIN)/pytest -q --nbval-lax --nbval-current-env chapters

test-book: setup
	$(BIN)/jupyter-book build . --all -W --keep-going

test: test-unit test-notebooks test-book

clean:
	rm -rf _build
