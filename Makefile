# The single entry point. `make book` builds the book, `make test` runs the tests;
# each first sets up what it needs (virtual environment, packages, data).
PYTHON ?= python3
VENV ?= .venv
BOOK_ROOT ?= .
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
INSTALLED := $(VENV)/.requirements-installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# uv installs the pinned packages, much faster than pip (parallel downloads, wheels
# linked from its cache, bytecode compiled on every core); it reads PyPI or
# UV_INDEX_URL, not pip's configuration, so where it fails pip installs them.
UV := uv==0.13.*

# _config.yml with the repository's address (FITBOOK_REPOSITORY_URL, else the
# GitHub `origin` remote) and its buttons, or without buttons: scripts/book_config.py.
BOOK_CONFIG = $(BOOK_ROOT)/_build/_config.book.yml
CACHED_CONFIG := _build/_config.cached.yml
EXECUTED_CONFIG = $(BOOK_ROOT)/_build/_config.executed.yml
# One chapter alone: links to chapters outside its partial table of contents and
# citations of the references page cannot resolve, so those two warnings are off.
CHAPTER_CONFIG := _build/_config.chapter.yml

.PHONY: book book-cached chapter test setup data graphviz clean book-config

## book: execute every chapter and build the HTML (errors and warnings are fatal)
# scripts/execute_book.py empties the jupyter-cache and executes every chapter into
# it (those that measure speed alone, the others two at a time); the build then
# renders the cached outputs, and executes again only a chapter that failed.
book: setup book-config
	$(PY) scripts/execute_book.py $(BOOK_ROOT)
	sed 's/execute_notebooks: force/execute_notebooks: cache/' $(BOOK_CONFIG) \
	  > $(EXECUTED_CONFIG)
	$(JB) build $(BOOK_ROOT) --config $(EXECUTED_CONFIG) --all -W --keep-going

## book-cached: fast rebuild while writing; re-runs only chapters whose cells changed
book-cached: setup $(CACHED_CONFIG)
	$(JB) build . --config $(CACHED_CONFIG) -W --keep-going

## chapter: build the opening pages plus one chapter, e.g. make chapter CHAPTER=book/data
chapter: setup $(CHAPTER_CONFIG)
	@test -n "$(CHAPTER)" || { echo "usage: make chapter CHAPTER=book/NAME" >&2; exit 1; }
	mkdir -p _build/chapters
	printf 'format: jb-book\nroot: book/intro\nchapters:\n%s\n' \
	  "$$(printf '  - file: %s\n' book/setup book/data $(filter-out book/setup book/data,$(CHAPTER)))" \
	  > _build/chapters/$(notdir $(CHAPTER))_toc.yml
	$(JB) build . --config $(CHAPTER_CONFIG) --toc _build/chapters/$(notdir $(CHAPTER))_toc.yml \
	  --path-output _build/chapters/$(notdir $(CHAPTER)) -W --keep-going

# Written before every build: the address may change without any file changing.
book-config: $(INSTALLED)
	$(PY) scripts/book_config.py $(BOOK_ROOT)/_config.yml $(BOOK_CONFIG)

$(CACHED_CONFIG): book-config
	mkdir -p _build
	sed 's/execute_notebooks: force/execute_notebooks: cache/' $(BOOK_CONFIG) > $@

$(CHAPTER_CONFIG): $(CACHED_CONFIG)
	sed 's/suppress_warnings: \[\]/suppress_warnings: [ref.doc, bibtex.key_not_found]/' \
	  $(CACHED_CONFIG) > $@

## test: run the test suite (two processes: most tests keep one core busy)
test: setup
	$(PY) -m pytest -n 2

setup: $(INSTALLED) data graphviz

$(INSTALLED): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: Python >= 3.11 is needed; '$(PYTHON)' is older." >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV) && \
	  echo "venv failed; installing Debian's python3-venv" && \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip '$(UV)'
	$(PY) -m uv pip install --quiet --compile-bytecode --python $(PY) -r requirements.txt \
	  || { echo "uv could not install requirements.txt; installing it with pip" >&2 && \
	       $(PY) -m pip install --quiet -r requirements.txt; }
	touch $@

data: $(INSTALLED)
	bash scripts/ensure-data.sh $(PY)

## graphviz: Debian's Graphviz, whose `dot` keras.utils.plot_model runs (if missing)
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  echo "Installing Debian's graphviz (for keras.utils.plot_model) ..." && \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq graphviz; }

clean:
	rm -rf _build

# Checks of the built book, run by .ci/run after `make book`.
.PHONY: browser-deps linkcheck browser-check

## browser-deps: Debian's Chromium and ChromeDriver for the browser check (if missing)
browser-deps:
	@test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || { \
	  echo "Installing Debian's chromium and chromium-driver ..." && \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq chromium chromium-driver; }

## linkcheck: every internal link and anchor of _build/html resolves (offline)
linkcheck: $(INSTALLED)
	$(PY) .ci/linkcheck.py _build/html

## browser-check: open every page of _build/html in headless Chromium
browser-check: $(INSTALLED) browser-deps
	timeout 180 $(PY) .ci/browser_check.py _build/html
