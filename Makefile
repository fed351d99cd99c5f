# murmur: `make demo` runs the main job on embedded defaults, `make test` runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU wheel of PyTorch; a GPU user installs the CUDA build of torch first (see README).
TORCH ?= torch==2.13.0

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[serve,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/murmur demo --out demo

test: $(STAMP)
	$(BIN)/ruff check murmur tests benchmarks
	$(BIN)/python -m pytest -q -ra tests

lint: $(STAMP)
	$(BIN)/ruff check murmur tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/data_pipeline.py

clean:
	rm -rf demo .pytest_cache
