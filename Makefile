# primec: `make demo` sets up and runs the end-to-end demo; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean docs

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -e '.[dev]'
	$(PIP) install -c constraints.txt --no-deps spikingjelly norse nirtorch
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/primec demo --out demo-out

test: $(STAMP)
	$(PY) tools/check_imports.py
	$(PY) -m pytest -q -n 2

lint: $(STAMP)
	$(VENV)/bin/ruff check primec passes backends tests bench tools
	$(VENV)/bin/ruff format --check primec passes backends tests bench tools
	$(PY) tools/check_sizes.py

docs: $(STAMP)
	$(PY) -m primec.cli_docs > docs/cli.md

clean:
	rm -rf $(VENV) demo-out
	rm -rf backends/simulator/__pycache__/primec-kernels-*
