#!/usr/bin/env bash
# `make gpu-smoke`: the smoke pipeline on a machine with at least 2 CUDA GPUs.
#
#   1. install the vLLM extra into .venv (vllm 0.11.0 brings its own CUDA torch 2.8.0)
#   2. prep the bundled samples, build the tiny model
#   3. train smoke_tiny on 2 GPUs with DeepSpeed ZeRO-2 through the launcher (torchrun + swiftkit worker)
#   4. swiftkit check, then swiftkit infer --backend vllm on the val split
#   5. swiftkit serve (pt backend on loopback, with an API key) and one real chat completion over HTTP
#   6. the GRPO smoke with vLLM colocate rollouts on the GPUs (SFT warm-up on CPU, then smoke_grpo on cuda)
#   7. smoke_tiny again with DeepSpeed ZeRO-3 on the GPUs (ms-swift's own zero3 preset, as on GPU recipes)
#
# What only GPUs can run is here: vLLM tensor parallel (step 4), colocate rollouts on CUDA (step 6), ZeRO-3 with
# NCCL (step 7). Server-mode rollouts (`swift rollout`, NCCL weight sync) are not covered yet: they need a rollout
# server on its own GPU. On a CPU machine preflight refuses both tensor parallel and server mode in one line.
#
# Everything lands under $GPU_SMOKE_DIR (default runs-gpu-smoke/); the figures are printed at the end.
# Environment: GPUS (default 2), GPU_SMOKE_DIR, SKIP_INSTALL=1 to reuse an installed vLLM.
set -euo pipefail
cd "$(dirname "$0")/.."

GPUS="${GPUS:-2}"
OUT="${GPU_SMOKE_DIR:-runs-gpu-smoke}"
PY=.venv/bin/python
SK=.venv/bin/swiftkit

have_gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if [ "$have_gpus" -lt "$GPUS" ]; then
  echo "gpu-smoke: needs $GPUS CUDA GPUs, found $have_gpus (run \`make smoke\` on CPU instead)" >&2
  exit 1
fi

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  echo "== install .[vllm]"
  .venv/bin/pip install -q -e '.[vllm]'
fi

echo "== prep + tiny model"
"$SK" prep-all --src-dir datasets_prep/samples --out "$OUT/data" --sources muice --no-progress
"$SK" tiny-model "$OUT/models/tiny-qwen2"

echo "== train smoke_tiny on $GPUS GPUs, DeepSpeed ZeRO-2"
start=$(date +%s)
"$SK" train smoke_tiny --gpus "$GPUS" --runs-root "$OUT/runs" \
  --set model="$PWD/$OUT/models/tiny-qwen2" \
  --set "data.train=[$PWD/$OUT/data/muice/train.jsonl]" \
  --set "data.val=[$PWD/$OUT/data/muice/val.jsonl]" \
  --set launch.device=cuda --set launch.deepspeed=zero2
train_s=$(( $(date +%s) - start ))
RUN=$(ls -d "$OUT"/runs/smoke_tiny/v* | sort -V | tail -1)
echo "run: $RUN (train ${train_s}s)"

echo "== check"
"$SK" check "$RUN"

echo "== infer (vLLM, $GPUS-way tensor parallel) on the val split"
start=$(date +%s)
"$SK" infer "$RUN" --val --backend vllm --max-new-tokens 64 --gpu-memory-utilization 0.5
infer_s=$(( $(date +%s) - start ))

echo "== serve (loopback, API key) + one chat completion"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
KEY="gpu-smoke-$RANDOM$RANDOM"
"$PY" - "$RUN" "$PORT" "$KEY" <<'EOF'
import sys
from swiftkit.deploy.serve import start_server
run, port, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(f"{run}/serve.log", "w") as log:
    server = start_server(run, port=port, api_key=key, backend="pt", log=log)
    try:
        server.wait_ready(timeout=600)
        status, body = server.chat([{"role": "user", "content": "你是谁？"}], api_key=key)
        print("serve:", status, body["choices"][0]["message"]["content"] if status == 200 else body)
        refused, _ = server.chat([{"role": "user", "content": "你是谁？"}])
        print("serve without key:", refused)
        assert status == 200 and refused != 200
    finally:
        server.stop()
EOF

echo "== GRPO smoke, vLLM colocate on $GPUS GPUs"
start=$(date +%s)
"$SK" smoke-grpo --data-dir "$OUT/data" --model-dir "$OUT/models/tiny-qwen2" --runs-root "$OUT/runs" \
  --set launch.device=cuda --set launch.nproc_per_node="$GPUS" \
  --set grpo.rollout.backend=vllm_colocate --set grpo.rollout.gpu_memory_utilization=0.3
echo "grpo smoke: $(( $(date +%s) - start ))s"

echo "== train smoke_tiny on $GPUS GPUs, DeepSpeed ZeRO-3"
"$SK" train smoke_tiny --gpus "$GPUS" --runs-root "$OUT/runs" \
  --set model="$PWD/$OUT/models/tiny-qwen2" \
  --set "data.train=[$PWD/$OUT/data/muice/train.jsonl]" \
  --set "data.val=[$PWD/$OUT/data/muice/val.jsonl]" \
  --set launch.device=cuda --set launch.deepspeed=zero3 --set max_steps=20

echo "== figures"
"$PY" - "$RUN" "$train_s" "$infer_s" <<'EOF'
import json, sys
from pathlib import Path
from swiftkit.run.rundir import train_losses
run, train_s, infer_s = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
losses = train_losses(run)
rows = [json.loads(l) for l in (run / "infer" / "val.jsonl").read_text().splitlines()]
exact = sum(r["response"] == r["labels"] for r in rows)
print(f"train wall {train_s}s, loss {losses[0]:.3f} -> {losses[-1]:.3f}; vLLM infer wall {infer_s}s, "
      f"{len(rows)} val answers ({exact} identical to the reference; val is unseen data)")
print("check:", json.loads((run / "check_report.json").read_text())["ok"])
EOF
