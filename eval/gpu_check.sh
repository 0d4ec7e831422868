#!/usr/bin/env bash
# GPU check, one short script for a CUDA machine (nothing is downloaded):
#   bash eval/gpu_check.sh            # from the repository root, venv active or PY=...
# 1. one QLoRA training step of the full SLT model at Qwen2.5-7B shape (random weights
#    from a config), gradient checkpointing, batch 4 x (128 video + 32 text tokens):
#    peak GPU memory (target <= 24 GB)                              -> eval/gpu_check.py qlora7b
# 2. batched `translate` vs a per-video loop with SmolLM2 on the GPU -> eval/bench_translate.py
# 3. bf16 stage-1 and stage-2 smoke runs on CUDA (demo recipes, tiny synthetic corpus, SmolLM2)
# 4. step vs floor: a stage-1 step, a stage-2 LoRA step and a QLoRA step with SmolLM2 at the demo's
#    shapes in bf16, against the GPU's bf16 GEMM rate measured in the same run -> eval/bench_step.py
# Last line: RESULT qlora_7b_peak_gb=... translate_ratio=... stage1_ratio=... stage2_ratio=... qlora_ratio=...
# Work files under $WORK (default runs/gpu_check; the 7B checkpoint is ~15 GB there).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
WORK=${WORK:-runs/gpu_check}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=${PYTHONPATH:-$PWD}
mkdir -p "$WORK"
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device')"
$PY -c "import torch; print('device:', torch.cuda.get_device_name(0), torch.__version__)"
last() { grep '^RESULT' "$1" | tail -1; }
val() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; }

echo "== [1/4] QLoRA step at Qwen2.5-7B shape"
$PY eval/gpu_check.py qlora7b --work "$WORK" --batch 4 --video-tokens 128 --text-tokens 32 2>&1 | tee "$WORK/qlora7b.log"
PEAK=$(val "$(last "$WORK/qlora7b.log")" qlora_7b_peak_gb)
rm -rf "$WORK/qwen25_7b_random"  # 15 GB

echo "== [2/4] batched translate vs per-video loop, SmolLM2 on the GPU"
[ -f "$WORK/smollm2/slt_import.json" ] || $PY -m slt_llm.cli import-llm smollm2 --out "$WORK/smollm2" --overwrite
$PY eval/gpu_check.py smollm2-model --llm "$WORK/smollm2" --out "$WORK/smollm2_slt"
$PY eval/bench_translate.py --model "$WORK/smollm2_slt" --device cuda --work "$WORK/bench_translate" \
  --n 48 --batch-size 16 --max-new-tokens 16 --repeats 3 2>&1 | tee "$WORK/translate.log"
RATIO=$(val "$(last "$WORK/translate.log")" ratio)

echo "== [3/4] bf16 stage-1 and stage-2 smoke runs on CUDA"
C="$WORK/corpus"
[ -f "$C/train.jsonl" ] || $PY -m slt_llm.cli synth --out "$C" --n-train 32 --n-dev 8 --n-test 8 --size 96
DATA="data.train_manifest=$C/train.jsonl data.dev_manifest=$C/dev.jsonl data.cache_dir=$WORK/clip_cache llm.path=$WORK/smollm2"
$PY -m slt_llm.cli vlp --config slt_llm/configs/demo_stage1.yaml $DATA train.run_dir="$WORK/stage1" \
  train.mixed_precision=bf16 train.batch_size=8 train.epochs=3 train.max_steps=4 selection.ref_epochs=2 \
  train.progress=false 2>&1 | tail -5
$PY -m slt_llm.cli train --config slt_llm/configs/demo_stage2.yaml $DATA train.run_dir="$WORK/stage2" \
  train.init_encoder="$WORK/stage1/model" train.mixed_precision=bf16 llm.dtype=bfloat16 train.batch_size=4 \
  train.max_steps=4 train.eval_every=4 train.dev_limit=4 train.progress=false 2>&1 | tail -5
test -f "$WORK/stage2/model/meta.json"
echo "bf16 smoke runs: stage 1 and stage 2 finished on CUDA"

echo "== [4/4] step vs floor (bf16 GEMM rate of this GPU), SmolLM2 at the demo's shapes"
$PY eval/bench_step.py --llm smollm2 --work "$WORK/bench_step" --qlora --repeats 5 --steps 4 2>&1 \
  | grep -v '^\s*warnings.warn' | tee "$WORK/step.log"
STEP=$(last "$WORK/step.log")

echo "RESULT qlora_7b_peak_gb=${PEAK} translate_ratio=${RATIO} stage1_ratio=$(val "$STEP" stage1_ratio)" \
  "stage2_ratio=$(val "$STEP" stage2_ratio) qlora_ratio=$(val "$STEP" qlora_ratio) step_gemm_gflops=$(val "$STEP" gemm_gflops)"
