# Two commands do everything on a fresh machine:
#   make run    install into .venv (first time) and run the default capacity sweep
#   make test   install into .venv (first time) and run the test suite
#   make coverage  the test suite under coverage, subprocesses included, then the line report
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test coverage lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,gymnax]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m augnes_jax.sweep $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The report is printed even when a test fails; the test status is the target's status.
coverage: $(STAMP)
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest -n 0 $(PYTEST_ARGS); status=$$?; \
	$(PY) -m coverage combine --quiet && $(PY) -m coverage report || exit $$?; exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check augnes_jax tests benchmarks examples

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b; done

clean:
	rm -rf $(VENV) build *.egg-info
