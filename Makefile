# Two commands: `make book` builds the book, `make test` runs every check.
# Both create a local virtual environment (.venv) and install what they need.
#
#   make book                             # the HTML theme is downloaded (needs internet)
#   make book BOOK_THEME=/path/book-theme # a local copy of the theme: folder or .tar.gz
#   make serve                            # view _build/html on http://127.0.0.1:8000/

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Single-threaded BLAS: numpy/scipy's OpenBLAS with 2 threads has been seen running
# hundreds of times slower while another process is busy on a 2-core machine.
export OPENBLAS_NUM_THREADS := 1
# Lets the Jupyter server that executes notebooks start even when run as root.
export JUPYTER_CONFIG_DIR := $(CURDIR)/book_config
# Notebooks turn NUTS progress bars off in non-interactive runs.
export CI ?= true

.PHONY: install book serve test bench clean

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

# Unit tests, with one build of the book (every notebook executed once) running beside them,
# then the checks of what it built: pages, posterior agreement, the site in a browser.
test: $(STAMP)
	$(BIN)/python -m pytest

# Times the models (a few minutes) and rewrites benchmarks/results.json, which the
# performance page renders. Run it on an otherwise idle machine.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e ".[bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py

# Samples every posterior the book publishes from NUTS again with Stan (crosscheck/*.stan,
# through pystan) and compares it with the chapter's artifact (a notebook whose artifact is
# missing is executed first); rewrites crosscheck/results.json, which the verification page
# renders, and fails on any disagreement. Compiling the Stan programs takes minutes. Without
# a C++ compiler it says so and skips, as `make bench` skips Stan.
.PHONY: crosscheck
crosscheck: $(BENCH_STAMP)
	$(BIN)/python crosscheck/run.py

clean:
	rm -rf _build notebooks/artifacts

# Checks that every external link of the book resolves (needs internet; a broken link is
# an error, and --strict turns errors into a non-zero exit). The weekly workflow runs it.
.PHONY: linkcheck
linkcheck: $(STAMP)
	$(BIN)/python -m jupyter_book build --site --check-links --strict
