# Every target installs first when needed, so each works alone on a fresh clone.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint docs bench tables prefetch clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The compiled CPU estimator (backend cpp): built once per machine into ~/.cache/glai/extensions (a no-op when
# built; a failed build warns and leaves the torch backend in charge).
install: $(STAMP)
	-@$(BIN)/python -m glai.kernels.estimator

demo: install
	$(BIN)/python scripts/demo.py

test: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check .

# the documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or API reference fails
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: install
	$(BIN)/python scripts/bench_estimator.py

tables: install
	$(BIN)/python scripts/make_tables.py

# On a machine with internet (a cluster's login node): get what experiment EXP reads -- its offline stand-ins built
# under GLAI_DATA_ROOT from their public sources (glai/data/standins.py), hub weights and data into the standard
# caches -- and print the command that then runs offline. make prefetch EXP=offline/A2 (or ffn/dbpedia, A1)
EXP ?= A1
prefetch: install
	$(BIN)/python scripts/prefetch.py experiment=$(EXP)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache site
