# One entry point for everything: `make demo` for instructors, `make test` for CI.
# Every target creates the virtual environment it needs when it is missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Tests never touch the network; the built-in model stands in for distilgpt2.
TEST_ENV := HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: help venv sandbox browser postgres bench-scale demo grade autograde grade-export bench test lint notebooks test-colab colab-snapshot test-pythons constraints clean

help:
	@echo "make demo [WORKERS=n]  grade a sample class end to end and print the grade table"
	@echo "make grade SUBMISSIONS=dir [WORKERS=n]  grade a folder of <student>.ipynb (n workers)"
	@echo "                  (NO_SANDBOX=1 where bubblewrap cannot run: then nothing is isolated)"
	@echo "make autograde [WORKERS=n]   grade everything in autograder/submitted in parallel"
	@echo "make grade-export            refresh the CSVs and feedback (after manual grading)"
	@echo "                  (SCHEDULER=tcp://host:8786: on that Dask cluster's workers;"
	@echo "                   every grading command: COURSE=folder, default autograder/;"
	@echo "                   ROSTER=canvas-export.csv maps student ids for grades-canvas.csv)"
	@echo "make bench       serial nbgrader vs parallel grading, phase costs, memory"
	@echo "make bench-scale 200 submissions: local pool vs a Dask cluster, Amdahl projection"
	@echo "make test        create .venv if needed, lint, run the whole test suite"
	@echo "make notebooks   regenerate notebooks/ and solutions/ from autograder/source/"
	@echo "make test-colab  the solution notebook on Google Colab's 2026-08 and 2026-01 runtimes"
	@echo "make test-pythons  check_global_vars's tests on Python 3.10, 3.12, 3.13"
	@echo "make clean       remove virtual environments and generated nbgrader folders"

venv: $(STAMP)

# The grader runs every student kernel in a bubblewrap sandbox: installed here when this
# is a Debian/Ubuntu machine and we are root, otherwise one line says what to install.
BWRAP_HINT := bubblewrap (bwrap) is missing: install it (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap), or grade with --no-sandbox
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq bubblewrap >/dev/null)) \
	    && echo "installed bubblewrap (the grading sandbox)"; \
	  else echo "$(BWRAP_HINT)"; fi; }

# The feedback page is checked in a real browser: Debian's headless Chromium, installed
# here when we are root with apt (otherwise those tests skip and say so).
BROWSER_HINT := chromium is missing: install it (Debian/Ubuntu: sudo apt-get install chromium) to run the feedback page's browser tests
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq chromium >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null)) \
	    && echo "installed chromium (the feedback page's browser tests)"; \
	  else echo "$(BROWSER_HINT)"; fi; }

# The PostgreSQL gradebook is tested against a real server: Debian's postgresql package,
# installed here when we are root with apt (otherwise those tests skip and say so).
POSTGRES_HINT := PostgreSQL's server is missing: install it (Debian/Ubuntu: sudo apt-get install postgresql) to run the PostgreSQL gradebook tests
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq postgresql >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null)) \
	    && echo "installed postgresql (the PostgreSQL gradebook tests)"; \
	  else echo "$(POSTGRES_HINT)"; fi; }

$(STAMP): pyproject.toml requirements-dev.txt constraints.txt autograder/pyproject.toml | sandbox
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-r requirements-dev.txt -e '.[offline]' -e './autograder[cluster]'
	touch $@

# nbgrader runs `alembic` from PATH when it creates a gradebook
demo: $(STAMP) sandbox
	PATH="$(CURDIR)/$(BIN):$$PATH" TOKENIZERS_PARALLELISM=false $(BIN)/python -m lmlogits_grader.demo \
		$(if $(WORKERS),--workers $(WORKERS))

# every grading command takes the course folder: COURSE=path (default autograder/)
COURSE ?= autograder
GRADE_OPTIONS = --course "$(COURSE)" $(if $(WORKERS),--workers $(WORKERS)) \
	$(if $(SCHEDULER),--scheduler "$(SCHEDULER)") \
	$(if $(NO_SANDBOX),--no-sandbox) $(if $(ROSTER),--canvas-roster "$(ROSTER)")

grade: $(STAMP) sandbox
	$(if $(SUBMISSIONS),,$(error give the folder of notebooks: make grade SUBMISSIONS=path/to/folder))
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m lmlogits_grader.grade_folder "$(SUBMISSIONS)" \
		$(GRADE_OPTIONS)

# grade what is already in $(COURSE)/submitted (e.g. after `nbgrader zip_collect`)
autograde: $(STAMP) sandbox
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m lmlogits_grader.grade_folder --from-submitted \
		$(GRADE_OPTIONS)

# after manual grading: the CSVs and the feedback again
grade-export: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m lmlogits_grader.grade_folder --export-only \
		$(GRADE_OPTIONS)

bench: $(STAMP) sandbox
	$(TEST_ENV) LMLOGITS_MODEL=tiny $(BIN)/python benchmarks/bench_autograde.py

# a class of 200 on the local pool and on a Dask cluster (dask CLI, 127.0.0.1), Amdahl
bench-scale: $(STAMP) sandbox
	$(TEST_ENV) LMLOGITS_MODEL=tiny $(BIN)/python benchmarks/bench_scale.py

lint: $(STAMP)
	$(BIN)/ruff check .

# two pytest processes: the grading tests mostly wait (kernels starting, time limits),
# so two of them share the two cores (tests/conftest.py groups the tests)
TEST_PROCESSES ?= 2
test: lint sandbox browser postgres
	$(TEST_ENV) $(BIN)/python -m pytest -n $(TEST_PROCESSES)

notebooks: $(STAMP)
	$(BIN)/python -m lmlogits_grader.generate

# Google Colab's runtimes, one requirements file each (requirements-colab-<snapshot>.txt,
# whose first line names its Python): the latest published snapshot first. For each one,
# `make test-colab` builds .venv-colab-<snapshot> with that Python (from pyenv or PATH),
# checks with pip's dry-run report that installing lmlogits-course there changes no
# preinstalled package, then runs the solution notebook and the offline model's tests.
COLAB_SNAPSHOTS ?= 2026-08 2026-01
test-colab:
	@for snapshot in $(COLAB_SNAPSHOTS); do \
	  $(MAKE) --no-print-directory colab-snapshot SNAPSHOT=$$snapshot || exit 1; \
	done

colab-snapshot:
	$(if $(SNAPSHOT),,$(error name the snapshot: make colab-snapshot SNAPSHOT=2026-08))
	@set -e; file=requirements-colab-$(SNAPSHOT).txt; venv=.venv-colab-$(SNAPSHOT); \
	v=$$(sed -n 's/^# python: //p' $$file); \
	py=$$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python 2>/dev/null | tail -1); \
	[ -n "$$py" ] || py=$$(command -v python$$v || true); \
	if [ -z "$$py" ]; then echo "Colab $(SNAPSHOT) needs Python $$v, which this machine lacks"; exit 1; fi; \
	echo "== Colab $(SNAPSHOT): Python $$v ($$py), $$file"; \
	if ! cmp -s $$file $$venv/.installed; then \
	  rm -rf $$venv; $$py -m venv $$venv; \
	  $$venv/bin/python -m pip install --quiet --disable-pip-version-check -r $$file; \
	  $$venv/bin/python -m pip install --dry-run --quiet --disable-pip-version-check \
	    --report $$venv/pip-report.json .; \
	  $$venv/bin/python tests/pip_report_check.py $$venv/pip-report.json; \
	  $$venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[offline]'; \
	  cp $$file $$venv/.installed; \
	fi; \
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PATH="$(CURDIR)/$$venv/bin:$$PATH" \
	  LMLOGITS_CACHE="$(CURDIR)/.cache/lmlogits-colab-$(SNAPSHOT)" \
	  $$venv/bin/python -m pytest -p no:cacheprovider -m colab \
	  tests/test_tiny_model.py tests/test_solution_notebook.py

# check_global_vars reads bytecode, which changes between Python versions: run its tests
# on every other CPython 3.10-3.13 this machine has (pyenv or PATH); skip those absent.
PYTHONS ?= 3.10 3.12 3.13
test-pythons:
	@for v in $(PYTHONS); do \
	  py=$$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python 2>/dev/null | tail -1); \
	  [ -n "$$py" ] || py=$$(command -v python$$v || true); \
	  if [ -z "$$py" ]; then echo "Python $$v: not on this machine, skipped"; continue; fi; \
	  test -x .venv-py$$v/bin/python || $$py -m venv .venv-py$$v || exit 1; \
	  .venv-py$$v/bin/python -m pip install --quiet --disable-pip-version-check pytest==9.2.0 \
	    && .venv-py$$v/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
	    -e . || exit 1; \
	  echo "Python $$v ($$py):"; \
	  .venv-py$$v/bin/python -m pytest -q -p no:cacheprovider -o addopts= \
	    --doctest-modules tests/test_globals_check.py lmlogits/globals_check.py || exit 1; \
	done

constraints: $(STAMP)
	( echo "# Every package of the development environment (pip freeze). Regenerate: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable ) > constraints.txt

clean:
	rm -rf $(VENV) .venv-colab-* .venv-py3.* build autograder/grades.csv autograder/release autograder/submitted \
		autograder/autograded autograder/feedback autograder/gradebook.db
