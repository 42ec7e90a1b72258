#!/usr/bin/env bash
# The wheels `make gpu-bench` needs beyond the GPU machine's own torch, transformers, peft and accelerate (it has no
# network): liger-kernel only (pure Python; its triton comes with CUDA torch). Run here, where PyPI is reachable; the
# folder (git-ignored) then travels with the working tree (carry benchmarks/wheelhouse). --no-deps: nothing else.
set -euo pipefail
DEST="${1:-benchmarks/wheelhouse}"
PIP="${PIP:-pip}"
LIGER="liger-kernel==0.8.5"
mkdir -p "$DEST"
"$PIP" download --quiet --no-deps --only-binary=:all: --dest "$DEST" "$LIGER"
du -sh "$DEST"
ls -l "$DEST"
