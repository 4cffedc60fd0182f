# Two commands do all set-up on a fresh machine:
#   make book   - build the HTML book, executing every chapter (_build/html/index.html)
#   make test   - unit tests, nbval on every chapter, a strict offline book build and a
#                 browser test of every built page
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
FMNIST_SYSTEM := /usr/share/datasets/fashion-mnist
# Debian packages the book needs: offline data, a browser for the page test, npm for vendoring.
APT_PACKAGES := dataset-fashion-mnist chromium npm
export PYTHONHASHSEED := 0

.PHONY: setup system book book-offline vendor test test-unit test-notebooks test-book \
        test-html assignments grade clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	# d2l pins numpy 1.23 and friends that break current Python: install it alone.
	$(PY) -m pip install -q --no-deps d2l==1.0.3
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed system

# Debian packages, installed when missing and we are root; without them the chapters download
# Fashion-MNIST through torchvision and the browser test cannot run.
system:
	@missing=""; \
	[ -d $(FMNIST_SYSTEM) ] || missing="$$missing dataset-fashion-mnist"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (install them with apt-get)"; fi; \
	fi

book: setup
	$(BIN)/jupyter-book build . --all -W --keep-going
	@echo "open _build/html/index.html"

vendor: setup
	$(PY) tools/vendor.py

# Same pages with MathJax and the widgets library vendored: a downloaded copy works offline.
book-offline: setup
	$(PY) tools/book_offline.py

test-unit: setup
	$(BIN)/pytest -q tests

test-notebooks: setup
	$(BIN)/pytest -q --nbval-lax --nbval-current-env chapters

# The strict build (-W: a failing cell fails it) is the offline build, so that the browser
# test below opens the pages it made and chapters execute only once here.
test-book: setup
	$(PY) tools/book_offline.py

test-html: setup
	@grep -q "_static/mathjax/tex-mml-chtml.js" _build/html/intro.html 2>/dev/null || $(PY) tools/book_offline.py
	$(PY) tools/browser_test.py --expect-widgets chapters/02_receptive_fields.html

test: test-unit test-notebooks test-book test-html

assignments: setup
	$(PY) tools/assignments.py

grade: setup
	@test -n "$(SUBMISSION)" || { echo "usage: make grade SUBMISSION=path/to/NN_name.ipynb" >&2; exit 2; }
	$(PY) tools/grade.py "$(SUBMISSION)"

clean:
	rm -rf _build _vendor
