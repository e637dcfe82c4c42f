# Two jobs for a fresh machine: `make demo` (the main job) and `make test`.
# Both create, or reuse, the virtual environment .venv at the repository root.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE
export HF_HUB_DISABLE_TELEMETRY ?= 1

.PHONY: venv demo test test-slow test-all lint clean gpu-check

$(STAMP): pyproject.toml requirements/torch.txt requirements/dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements/dev.txt
	$(BIN)/python -m pip install -q -e '.[train,export,onnx,viz,app,dev]'
# olah (a Hub mirror the download tests run against) in a venv of its own: its server
# dependencies stay out of the product's environment.
	@test -x $(VENV)/olah/bin/python || $(PYTHON) -m venv $(VENV)/olah
	$(VENV)/olah/bin/python -m pip install -q olah==0.5.4
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m training demo --out runs/demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

test-all: test test-slow

# The GPU check (scripts/gpu_check.py): bench-train, DDP, a CUDA fit, the ONNX GPU checks; one
# table, and gpu-check.json. It installs nothing: by default the venv's Python if there is one,
# else PYTHON; on a GPU machine without our venv: make gpu-check PYTHON=python3
GPU_CHECK_PYTHON := $(if $(filter command line environment,$(origin PYTHON)),$(PYTHON),$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)))

gpu-check:
	HF_HUB_OFFLINE=1 $(GPU_CHECK_PYTHON) scripts/gpu_check.py --out gpu-check.json

# Style that a tool keeps: the same check CI runs.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf runs build dist *.egg-info .pytest_cache
