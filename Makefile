# murmur: `make demo` runs the main job on embedded defaults, `make test` runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU wheel of PyTorch; a GPU user installs the CUDA build of torch first (see README).
TORCH ?= torch==2.13.0
# Test worker processes: each takes whole files, the longest first (tests/conftest.py); 0 runs the
# tests in pytest's own process.
TEST_WORKERS ?= 2

.PHONY: demo test lint bench clean venv browser postgres gpu-wheels

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[serve,dev,ads,gguf,lingua,ray,search,images]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/murmur demo --out demo

test: $(STAMP) browser postgres
	$(BIN)/ruff check murmur tests benchmarks
	$(BIN)/python -m pytest -q -ra --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# Debian's chromium for the web chat's browser test (the test is skipped where it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || { echo "chromium could not be installed: the browser test will be skipped"; [ -z "$$CI" ] || exit 1; }; \
	  else echo "chromium not installed (needs root and apt-get): the browser test will be skipped"; fi; }

# Debian's PostgreSQL for the campaign store's tests (they start their own server in a temp dir).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	      || { echo "postgresql could not be installed: its store tests will be skipped"; [ -z "$$CI" ] || exit 1; }; \
	  else echo "postgresql not installed (needs root and apt-get): its store tests will be skipped"; \
	    [ -z "$$CI" ] || exit 1; fi; }

lint: $(STAMP)
	$(BIN)/ruff check murmur tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/data_pipeline.py

# Wheels benchmarks/gpu_suite.sh installs on a CUDA machine with no internet (Python 3.12, x86_64):
# what murmur and pytest need beyond torch, transformers, tokenizers, safetensors, pyarrow and numpy.
GPU_WHEELS ?= typer click shellingham annotated-doc rich markdown-it-py mdurl pygments zstandard \
	pytest pluggy iniconfig pytest-timeout
gpu-wheels:
	rm -rf gpu-wheels.tmp && mkdir -p gpu-wheels.tmp
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --abi cp312 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d gpu-wheels.tmp $(GPU_WHEELS)
	rm -rf gpu-wheels && mv gpu-wheels.tmp gpu-wheels
	@du -sh gpu-wheels

clean:
	rm -rf demo .pytest_cache
