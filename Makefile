# The single entry point. `make book` builds the book, `make test` runs the tests;
# each first sets up what it needs (virtual environment, packages, data).
PYTHON ?= python3
VENV ?= .venv
BOOK_ROOT ?= .
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
INSTALLED := $(VENV)/.requirements-installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: book book-cached test setup data clean

## book: execute every chapter and build the HTML (errors and warnings are fatal)
book: setup
	$(JB) build $(BOOK_ROOT) --all -W --keep-going

## book-cached: fast rebuild while writing; re-runs only chapters whose cells changed
book-cached: setup
	sed 's/execute_notebooks: force/execute_notebooks: cache/' _config.yml > _config.cached.yml
	$(JB) build . --config _config.cached.yml -W --keep-going

## test: run the test suite
test: setup
	$(PY) -m pytest

setup: $(INSTALLED) data

$(INSTALLED): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: Python >= 3.11 is needed; '$(PYTHON)' is older." >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV) && \
	  echo "venv failed; installing Debian's python3-venv" && \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

data: $(INSTALLED)
	bash scripts/ensure-data.sh $(PY)

clean:
	rm -rf _build _config.cached.yml
