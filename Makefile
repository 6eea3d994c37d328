# The two commands of the README: `make quickstart` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= lightning_logs/quickstart

.PHONY: setup quickstart test test-fast lint clean

setup:
	@bash scripts/setup.sh

quickstart: setup
	$(PY) -m ssvrl quickstart --out $(OUT)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/uv pip install --python $(PY) -q ruff mypy
	$(VENV)/bin/ruff check ssvrl tests examples && $(VENV)/bin/mypy ssvrl

clean:
	rm -rf runs lightning_logs
