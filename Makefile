# Phonotheca: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
DEMO_DIR ?= demo-archive
DEMO_TRACKS ?= 100000

.PHONY: install system-deps demo test bench lint clean

install: system-deps $(VENV)/.installed

# Re-run pip only when the package's build inputs change (pyproject.toml, and setup.py with
# the one compiled module); idempotent otherwise.
$(VENV)/.installed: pyproject.toml setup.py src/phonotheca/_sha256pair.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Debian packages the tests use (real peers and validators), installed only if missing.
system-deps:
	@bash scripts/install-debian-packages.sh

# Stopped by Ctrl-C or SIGTERM, the demo says so in one line and exits 0 (while serving)
# or 130 (before: run it again to go on); neither is a failure to report again as
# "Error 130". (On Ctrl-C in a terminal make gets the signal too and says "Interrupt".)
demo: install
	@set +e; $(PY) -m phonotheca.demo --dir $(DEMO_DIR) --tracks $(DEMO_TRACKS); rc=$$?; \
	if [ $$rc -eq 130 ]; then exit 0; fi; exit $$rc

# pytest exits 5 when it collected no test: that is neither a pass nor a flaky failure,
# so say it plainly and fail.
test: install
	@set +e; $(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - failing on purpose"; exit 1; fi; \
	exit $$rc

# Long: builds a 10 M-track catalog (reused by search and plan_catalog) and 256 M-track
# planner arrays. Each script prints its figures beside a baseline measured in the run.
bench: install
	$(PY) bench/ingest.py --tracks 2000000 --tracks 10000000
	$(PY) bench/search.py
	$(PY) bench/plan.py --tracks 256000000
	$(PY) bench/plan_catalog.py
	$(PY) bench/musicbrainz.py
	$(PY) bench/scan.py
	$(PY) bench/hashing.py
	$(PY) bench/build.py
	$(PY) bench/transcode.py
	$(PY) bench/serve.py
	$(PY) bench/fetch.py
	$(PY) bench/resume.py
	$(PY) bench/locator.py --entries 10000000 --http --from-catalog 3000000

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
