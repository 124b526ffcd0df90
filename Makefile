# Two commands on a fresh machine: `make demo` (the main job on the embedded default) and `make test`.
# Both create .venv and install the pinned set first; nothing else needs to be set up by hand.
PYTHON ?= python3.11
VENV ?= .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml constraints.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

.PHONY: install demo dev lint test bench
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dfx demo

dev: $(STAMP)
	$(VENV)/bin/dfx dev

# Formatter, linter and type checker, as configured in pyproject.toml; CI runs this before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy dfx_pipelines

# Four workers on two cores: most of a test's time is waiting (sandboxes, subprocesses, PostgreSQL).
# Tests spread one by one; a module's tests that share a module-scoped sandbox stay on one worker
# (--dist loadgroup with the groups the root conftest.py marks).
test: $(STAMP)
	$(VENV)/bin/pytest -n 4 --dist loadgroup

bench: $(STAMP)
	$(VENV)/bin/python -m bench
