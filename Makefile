# Two commands do all the set-up on a fresh machine:  make demo  and  make test.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-dev
FOCUS_VENV := .venv-focus
AS_OF   ?= 2026-11-15
# One BLAS/OpenMP thread per process: statsmodels and LightGBM run 10-100x slower on 2 shared
# cores when their thread pools oversubscribe; parallelism comes from pipeline.parallel instead.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= 1

.PHONY: venv demo test test-quick lint bench system-deps focus-validator clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Headless Chromium + ChromeDriver for the HTML report test (Debian packages; needs root or sudo).
system-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver (Debian packages)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

## The official FOCUS validator needs Python >= 3.12: it lives in its own venv.
$(FOCUS_VENV)/.installed:
	python3.12 -m venv $(FOCUS_VENV) 2>/dev/null || PYENV_VERSION=3.12 python3.12 -m venv $(FOCUS_VENV)  # pyenv shim: pick its 3.12
	$(FOCUS_VENV)/bin/python -m pip install -q --upgrade pip
	$(FOCUS_VENV)/bin/python -m pip install -q 'focus-validator==2.2.1' 'pyarrow<18'
	touch $@

focus-validator: $(FOCUS_VENV)/.installed

## Generate the sample, ingest it, run the monthly job (forecasts, report, MLflow versions).
demo: venv
	$(BIN)/phasecast synth --out data/sample
	$(BIN)/phasecast ingest --billing data/sample/billing --usage data/sample/usage.csv --labor data/sample/labor.csv
	$(BIN)/phasecast run-monthly --as-of $(AS_OF) --budgets data/sample/budgets.csv

## The whole suite, slow tests included (what CI runs): two workers, each taking whole test files
## (module fixtures are built once; most of the time is single-threaded model fits and subprocesses).
TEST_WORKERS ?= 2
test: venv system-deps focus-validator
	PHASECAST_FOCUS_VALIDATOR=$(abspath $(FOCUS_VENV))/bin/focus-validator $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-quick: venv
	$(BIN)/python -m pytest -m "not slow"

lint: venv
	$(BIN)/ruff check pipeline features tests
	$(BIN)/ruff format --check pipeline features tests
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m tests.benchmarks.run
