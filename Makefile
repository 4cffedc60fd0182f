# Two commands do all set-up on a fresh machine:
#   make book   - build the HTML book, executing every chapter (_build/html/index.html); the
#                 pages load nothing from the network (MathJax and widgets vendored)
#   make test   - unit tests, nbval on every chapter, reader notebooks up to date, a strict
#                 book build, a browser test of every page, and the reader-environment test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
FMNIST_SYSTEM := /usr/share/datasets/fashion-mnist
# Debian packages the book needs: offline data, a browser for the page test, npm for vendoring,
# a CJK font so that the Sources page's Chinese titles render in the browser test, and
# bubblewrap, the sandbox that grades students' notebooks (make grade).
APT_PACKAGES := dataset-fashion-mnist chromium npm fonts-noto-cjk bubblewrap
export PYTHONHASHSEED := 0

.PHONY: setup system book book-offline vendor notebooks test test-unit test-notebooks \
        test-book test-html test-reader assignments grade gpu-check gpu-wheels clean

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
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-noto-cjk"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (install them with apt-get)"; fi; \
	fi

# One HTML build: MathJax and the widget manager are vendored from npm into _vendor/ and
# served from _static/, so the published pages and a downloaded _build/html work offline.
book: setup
	$(PY) tools/book_offline.py
	@echo "open _build/html/index.html"

book-offline: book

vendor: setup
	$(PY) tools/vendor.py

# notebooks/NN_name.ipynb: each chapter with its glued numbers in the text (committed; the
# Colab and download buttons open them). Run after executing a chapter.
notebooks: setup
	$(PY) tools/reader_notebooks.py

# Two workers, each test file on one (module fixtures stay in one process); the notebooks
# below run one at a time: each chapter uses both cores itself.
TEST_WORKERS ?= 2
test-unit: setup
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile tests

test-notebooks: setup
	$(BIN)/pytest -q --nbval-lax --nbval-current-env intro.ipynb chapters
	$(PY) tools/reader_notebooks.py --check

# The strict build (-W: a warning or a missing glue value fails it) renders the outputs that
# test-notebooks has just executed and checked, so chapters do not execute a third time here.
test-book: setup
	$(PY) tools/book_offline.py --execute off

test-html: setup
	@grep -q "_static/mathjax/tex-mml-chtml.js" _build/html/intro.html 2>/dev/null || $(PY) tools/book_offline.py --execute off
	$(PY) tools/browser_test.py --expect-widgets chapters/02_receptive_fields.html \
	  --expect-widgets chapters/04_accounting.html \
	  --expect-widgets chapters/06_what_vgg_sees.html

# Every reader notebook on a Colab stand-in: the wheel in a copy of .venv without the build
# tools, run from an empty folder; and a student notebook's checks (tools/reader_env.py).
test-reader: setup
	$(PY) tools/reader_env.py

test: test-unit test-notebooks test-book test-html test-reader

# CHECK=1 also grades every teacher version with otter (executes each chapter again).
assignments: setup
	$(PY) tools/assignments.py $(if $(CHECK),--check)

# One notebook (SUBMISSION=) or every file under a folder (SUBMISSIONS=), each in a sandbox
# (tools/grade.py): otter's Docker containers when a daemon answers, else bubblewrap.
# GRADE_ARGS passes more: --jobs 2, --seconds 900, --memory 6, --out DIR, --no-sandbox.
grade: setup
	@if [ -n "$(SUBMISSIONS)" ]; then \
	  $(PY) tools/grade.py --class "$(SUBMISSIONS)" $(GRADE_ARGS); \
	elif [ -n "$(SUBMISSION)" ]; then \
	  $(PY) tools/grade.py "$(SUBMISSION)" $(GRADE_ARGS); \
	else \
	  echo "usage: make grade SUBMISSIONS=path/to/folder  (or SUBMISSION=path/to/NN_name.ipynb)" >&2; \
	  exit 2; \
	fi

# On a GPU machine (no network, no .venv: its own python3), as docs/GPU.md says:
#   make gpu-check GPU_ARGS="--wheels .whl --data-root data/fashion-mnist --out $OUT"
# Here: make gpu-check DRY_RUN=1 checks the same plumbing on the CPU (tests/test_gpu_check.py).
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PYTHON) tools/gpu_check.py $(if $(DRY_RUN),--dry-run) $(GPU_ARGS)

# Wheels for the GPU machine (Python 3.12, x86_64) into .whl/, to carry with the working tree.
GPU_WHEEL_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
                       --platform manylinux2014_x86_64 --platform any
gpu-wheels: setup
	rm -rf .whl
	$(PY) -m pip download -q -d .whl --only-binary=:all: --python-version 3.12 \
	    $(GPU_WHEEL_PLATFORMS) -r tools/gpu-requirements.txt
	$(PY) -m pip download -q -d .whl --no-deps d2l==1.0.3
	@du -sh .whl

clean:
	rm -rf _build _vendor
