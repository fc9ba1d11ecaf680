# Two commands: `make book` builds the book, `make test` runs every check.
# Both create a local virtual environment (.venv) and install what they need.
#
#   make book                             # the HTML theme is downloaded (needs internet)
#   make book BOOK_THEME=/path/book-theme # the folder of a local copy of the theme
#   make serve                            # view _build/html on http://127.0.0.1:8000/

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Single-threaded BLAS: numpy/scipy's OpenBLAS with 2 threads has been seen running
# hundreds of times slower while another process is busy on a 2-core machine.
export OPENBLAS_NUM_THREADS := 1
# Notebooks turn NUTS progress bars off in non-interactive runs.
export CI ?= true

.PHONY: install book serve test test-unit test-book bench clean

# A local copy of the site theme for building the HTML offline (scripts/build_book.py reads
# it from the environment); empty: downloaded at build time.
BOOK_THEME ?=
export BOOK_THEME
PORT ?= 8000

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[book,test]"
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/python scripts/build_book.py

# Pages use absolute URLs: serve the folder, do not open its files.
serve:
	@test -f _build/html/index.html || { echo "no _build/html/index.html: run make book first" >&2; exit 1; }
	$(PYTHON) -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

# Two pytest processes side by side, each printing its report when it ends. The book's tests
# build the book once (every notebook executed, compiled as `make book` compiles it) and check
# what it built: pages, posterior agreement, the site in a browser. The unit tests run most of
# their programs once, so compiling them is most of their cost: XLA's backend optimisation is
# off there. Plain `pytest` runs both in one process, with XLA's defaults.
test: $(STAMP)
	@echo "Unit tests and the book's tests run side by side; each prints its report when it ends."
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-unit test-book

test-unit: $(STAMP)
	XLA_FLAGS="$$XLA_FLAGS --xla_backend_optimization_level=0" $(BIN)/python -m pytest tests/unit

test-book: $(STAMP)
	$(BIN)/python -m pytest tests/integration

# Times the models (a few minutes) and rewrites benchmarks/results.json, which the
# performance page renders; benchmarks/sparse.py then adds the sparse GPs' key to it.
# Run it on an otherwise idle machine.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e ".[bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/sparse.py

# Samples every posterior the book publishes from NUTS again with Stan (crosscheck/*.stan,
# through pystan) and compares it with the chapter's artifact (a notebook whose artifact is
# missing is executed first); rewrites crosscheck/results.json, which the verification page
# renders, and fails on any disagreement. Compiling the Stan programs takes minutes. Without
# a C++ compiler it says so and skips, as `make bench` skips Stan.
.PHONY: crosscheck
crosscheck: $(BENCH_STAMP)
	$(BIN)/python crosscheck/run.py

# The commit hooks of .pre-commit-config.yaml over the whole tree: ruff (fix and format),
# nbstripout, actionlint, with the tools of .venv.
.PHONY: lint
lint: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pre-commit run --all-files

clean:
	rm -rf _build notebooks/artifacts

# Checks that every external link of the book resolves (needs internet; a broken link is
# an error, and --strict turns errors into a non-zero exit). The weekly workflow runs it.
.PHONY: linkcheck
linkcheck: $(STAMP)
	$(BIN)/python -m jupyter_book build --site --check-links --strict

# Runs every notebook of the table of contents in the reader's environment, as a reader who
# installs only binder/environment.yml gets it: a fresh virtual environment with its pip
# packages, pyrox_lite installed by binder/postBuild (no dependencies), and nbclient to
# execute. A package that only the book's own environment brings fails here. Needs internet
# (pip); the weekly reader workflow runs it. NOTEBOOKS=... runs only those.
READER_ENV := _build/reader-env
NOTEBOOKS ?=

.PHONY: reader-env-check
reader-env-check:
	rm -rf $(READER_ENV)
	$(PYTHON) -m venv $(READER_ENV)
	$(READER_ENV)/bin/python -m pip install --upgrade pip
	$(READER_ENV)/bin/python binder/run_notebooks.py --requirements > $(READER_ENV)/requirements.txt
	$(READER_ENV)/bin/python -m pip install -r $(READER_ENV)/requirements.txt nbclient
	PATH="$(CURDIR)/$(READER_ENV)/bin:$$PATH" bash binder/postBuild
	$(READER_ENV)/bin/python binder/run_notebooks.py $(NOTEBOOKS)
