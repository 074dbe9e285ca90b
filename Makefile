# picotflm: `make` (install if needed, run the default recipe) and `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RECIPE ?= int8
RUNS   ?= runs
# Progress bars only draw on a terminal anyway; in CI say so explicitly for clean logs.
PROGRESS := $(if $(CI),--no-progress,)

.PHONY: all run install test clean distclean

all: run

# (Re)install when the venv is missing or pyproject.toml changed.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/picotflm run $(RECIPE) --runs-dir $(RUNS) $(PROGRESS)
	@echo "report: $(RUNS)/$(RECIPE)/report.md"

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(RUNS) build .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
