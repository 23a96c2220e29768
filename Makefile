# maskvid_edu — the two commands of the README, and a few more.
#
#   make book   build the environment, execute every notebook (CPU profile), build the HTML book
#   make test   build the environment, run unit tests + nbval over every notebook + build the
#               HTML book from the committed outputs
#   make lab    JupyterLab on the book
#
# The environment is a local virtual environment (.venv) reused between runs; it is rebuilt
# when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.maskvid-installed
BUILD  := book/_build
# Every notebook in the book runs its CPU preset unless told otherwise.
export MASKVID_PROFILE ?= cpu
export PYTHONHASHSEED := 0
# Where the book's source lives online (https://github.com/OWNER/REPO): adds launch buttons.
BOOK_REPOSITORY ?=

.PHONY: env book test unit nbval book-stored notebooks zoo lab minkowski clean

env: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is needed, found " + sys.version' 
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	@# test-only reference for the VQGAN encoder layout; its declared needs (lightning, omegaconf)
	@# are not used by the two modules the tests import, so it goes in without them.
	$(PY) -m pip install --quiet --no-deps taming-transformers-rom1504==0.0.6
	@touch $@

# The main job: execute the notebooks as a reader would (fresh kernel, CPU preset) and build
# the static HTML book from the executed copies.
book: env
	$(PY) book/book_config.py --execute force --repository "$(BOOK_REPOSITORY)" $(BUILD)/book_config.yml
	$(VENV)/bin/jupyter-book build book --config $(BUILD)/book_config.yml --path-output $(BUILD)/executed -W -n --keep-going
	@echo "Book built: open $(abspath $(BUILD)/executed/_build/html/index.html)"

test: book-stored unit nbval

unit: env
	$(PY) -m pytest -q -ra tests

nbval: env
	$(PY) -m pytest -q -ra --nbval-lax --nbval-cell-timeout=300 -p no:cacheprovider --ignore=$(BUILD) book  # the chapters, not the copies a book build leaves in _build

# The book as committed (stored outputs, nothing executed), with warnings as errors.
book-stored: env
	$(PY) book/book_config.py --execute off --repository "$(BOOK_REPOSITORY)" $(BUILD)/stored_config.yml
	$(VENV)/bin/jupyter-book build book --config $(BUILD)/stored_config.yml --path-output $(BUILD)/stored -W -n --keep-going
	@echo "Book (stored outputs) built: $(abspath $(BUILD)/stored/_build/html/index.html)"

# Refresh the committed outputs of every notebook (maintainers, before committing a chapter).
# Consecutive prints of a cell are merged into one output (one box in the HTML), and each
# chapter's first cell gets its measured run time (tests/test_notebook_style.py checks both).
notebooks: env
	MASKVID_PROFILE=cpu PYTHONHASHSEED=0 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 book/*.ipynb
	$(VENV)/bin/jupyter nbconvert --to notebook --inplace --coalesce-streams book/*.ipynb
	$(PY) book/run_times.py book/*.ipynb

# Optional sparse backend: builds MinkowskiEngine 0.5.4 (CPU) against the pinned torch into a
# cache outside the repo (~/.cache/maskvid_edu/wheels) and installs it here. Needs Debian's
# libopenblas-dev. CUDA users: see `python -m maskvid_edu.minkowski_build --help`.
minkowski: env
	$(PY) -m maskvid_edu.minkowski_build

# Train the course model zoo (maskvid_edu/configs/zoo) into data/zoo; resumes an interrupted build.
# Several hours on 2 CPU cores for the whole zoo; `maskvid-edu zoo build NAME` builds one.
zoo: env
	$(VENV)/bin/maskvid-edu zoo build

lab: env
	$(VENV)/bin/jupyter lab book

clean:
	rm -rf $(BUILD) .pytest_cache
