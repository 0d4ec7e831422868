"""Benchmark: one stage-1 step and one stage-2 LoRA step (and a QLoRA step where
bitsandbytes runs) at the demo's shapes, against the floor measured in the same run.

    .venv/bin/python eval/bench_step.py --llm {tiny,smollm2} [--repeats 5] [--steps 4] [--qlora] [--profile]

What is timed: the trainers' own ``train_step`` (``Stage1Trainer.train_step``:
forward, the stage-1 objective, backward, clip, AdamW, schedule;
``Stage2Trainer.train_step``: ``token_loss_step`` over the SLT model with LoRA)
on batches already collated in memory (the demo's recipes
``demo_stage1.yaml`` / ``demo_stage2.yaml`` plus ``slt_llm.demo``'s SmolLM2
deltas, on clips of the frozen phoenix profile at the demo's size, 96 px). Data
loading is not in the step: the trainers overlap it in a worker.

The floor: the FLOPs the step NEEDS divided by the GEMM rate this machine
reaches in this run (CPU: fp32 2048^3 ``torch.mm`` on all threads, the steps in
fp32 as the CPU demo runs; CUDA: bf16 8192^3, the steps in bf16 autocast with a
bf16 LLM, as ``eval/gpu_check.sh`` runs it; ``--precision`` sets both: a bf16 step on the
CPU is held against the CPU's bf16 GEMM rate), measured before and after the arms;
the mean is used, both are printed. FLOPs are
counted from the shapes by ``torch.utils.flop_counter.FlopCounterMode`` on one
forward pass per batch (matmuls, convolutions, attention; element-wise work is
not counted: it is what the ratio charges as overhead), split by module:

* trainable modules (encoder, heads, projector, LoRA adapters): 3x forward
  (forward, input gradient, weight gradient);
* the frozen LLM base: 2x forward (forward and the input gradient the visual
  tokens need; no weight gradient);

the same counter also records the FLOPs the step actually EXECUTED (forward +
backward), printed beside it, so a reader sees backward work beyond the need.

Each arm runs ``--warmup`` discarded steps, then ``--repeats`` repeats of
``--steps`` steps over the same fixed batches; the figure is the median
per-step time of the repeats, the worst repeat is printed beside it. The last
line: ``RESULT stage1_s=... stage1_floor_s=... stage1_ratio=... stage2_s=...
stage2_floor_s=... stage2_ratio=... [qlora_s=... qlora_ratio=...] llm=...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def gemm_rate(n: int = 2048, reps: int = 5, device: str = "cpu", dtype=None) -> float:
    """FLOP/s of an n^3 matmul (median of ``reps`` after one discarded warm-up)."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(reps + 1):
        sync()
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        sync()
        if i:
            times.append(time.perf_counter() - t)
    return 2.0 * n**3 / statistics.median(times)


def prepare(work: Path, llm: str, n_train: int, llm_dir: str | None = None) -> tuple[Path, Path]:
    """A phoenix-profile corpus (first ``n_train`` / 8 / 0 sentences, 96 px) and the LLM folder
    (``llm_dir`` when given: an existing LLM folder standing for ``llm``)."""
    from slt_llm.synth.corpus import generate

    corpus = work / "corpus"
    if not (corpus / ".done").exists():
        generate(corpus, profile="phoenix", n_train=n_train, n_dev=8, n_test=1, size=96,
                 workers=max(1, min(8, (os.cpu_count() or 1) // 2)), progress=False)
        (corpus / ".done").write_text("")
    if llm_dir:
        if not (Path(llm_dir) / "config.json").is_file():
            raise SystemExit(f"bench_step: --llm-dir {llm_dir}: no config.json there (an LLM folder is needed)")
        return corpus, Path(llm_dir)
    llm_dir = work / f"llm_{llm}"
    if not (llm_dir / ".done").exists():
        if llm == "tiny":
            from slt_llm.models.tiny_llm import make_tiny_llm

            make_tiny_llm(corpus, llm_dir, family="llama", steps=0)  # demo's shapes; weights do not change speed
        else:
            from slt_llm.models.gguf_import import import_gguf, smollm2_gguf

            import_gguf(smollm2_gguf(), llm_dir, overwrite=True)
        (llm_dir / ".done").write_text("")
    return corpus, llm_dir


def forward_flops(module, run) -> dict:
    """FLOPs per module name of one forward pass ``run()`` (no grad)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        run()
    return {k: sum(v.values()) for k, v in fc.get_flop_counts().items()}


def executed_flops(run) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        run()
    return int(fc.get_total_flops())


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_steps(step, batches: list, warmup: int, repeats: int, steps: int) -> list[float]:
    """Per-step seconds of each repeat (``steps`` steps cycling over ``batches``), after ``warmup`` discarded steps."""
    for i in range(warmup):
        step(batches[i % len(batches)])
    out = []
    for _ in range(repeats):
        _sync()
        t = time.perf_counter()
        for i in range(steps):
            step(batches[i % len(batches)])
        _sync()
        out.append((time.perf_counter() - t) / steps)
    return out


def profile_table(step, batches: list, rows: int = 18) -> tuple[str, float]:
    """torch.profiler over 2 steps: the table by self CPU time, on CUDA by self GPU time; and
    the GPU's busy seconds per step (the sum of its kernels' and copies' times, as the table's
    "Self CUDA time total" counts them: device events only, not the CPU ops that launched
    them), 0.0 without CUDA. Busy time against the unprofiled step time says whether the
    step is bound by the kernels or by the host launching them."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    n = min(2, len(batches))
    with profile(activities=acts) as prof:
        for b in batches[:n]:
            step(b)
        _sync()
    avg = prof.key_averages()
    if not cuda:
        return avg.table(sort_by="self_cpu_time_total", row_limit=rows), 0.0
    dev = [e for e in avg if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]
    busy = sum(e.self_device_time_total for e in dev) / 1e6 / n  # us -> s, per step
    head = f"{sum(e.count for e in dev) / n:.0f} GPU kernels and copies a step\n"
    try:
        return head + avg.table(sort_by="self_device_time_total", row_limit=rows), busy
    except Exception as e:  # a profiler without that sort key: the figures still count
        return head + f"(no GPU table: {type(e).__name__}: {e})\n" + avg.table(sort_by="self_cpu_time_total",
                                                                              row_limit=rows), busy


@contextlib.contextmanager
def prepared_trainer(config_cls, recipe: str, overrides: list, trainer_cls):
    """A trainer of the shipped ``recipe`` + ``overrides``, set up (its log lines to stderr) on a
    fresh accelerator, torn down afterwards."""
    from slt_llm.config import load_config
    from slt_llm.demo import _config_path
    from slt_llm.training import accelerator as accel

    cfg = load_config(config_cls, _config_path(recipe), overrides)
    acc = accel.setup_accelerator(cfg.train, cfg.optim, log_tensorboard=False)
    try:
        tr = trainer_cls(cfg, acc, overwrite=True)
        with contextlib.redirect_stdout(sys.stderr):
            tr.setup()
        yield tr
    finally:
        accel.teardown(acc)


def run_overrides(corpus: Path, llm_dir: Path, work: Path, run: str) -> list:
    """Both arms: the bench corpus and LLM, a throw-away run folder, nothing but steps (no dev
    evaluation, checkpoints or progress bar), data in this process."""
    return [f"data.train_manifest={corpus / 'train.jsonl'}", f"data.dev_manifest={corpus / 'dev.jsonl'}",
            f"data.cache_dir={work / 'clip_cache'}", f"llm.path={llm_dir}", f"train.run_dir={work / run}",
            "train.eval_every=0", "train.save_every=0", "train.progress=false", "data.num_workers=0"]


def _max_frames(batches: list) -> list:
    return [int(b["lengths"].max()) for b in batches]


def _top_name(counts: dict) -> str:
    return next(k for k in counts if k != "Global" and "." not in k)


def subtree_flops(counts: dict, prefix: str) -> float:
    """FLOPs of the module ``prefix`` and everything under it. A module's own count misses
    the children called directly, bypassing its forward (SLTModel runs the LLM's decoder and
    head, not the PeftModel wrapper), so this sums the outermost counted modules at or under it."""
    keys = [k for k in counts if k == prefix or k.startswith(prefix + ".")]
    outer = [k for k in keys if not any(k != o and k.startswith(o + ".") for o in keys)]
    return sum(counts[k] for k in outer)


def stage1_arm(corpus: Path, llm_dir: Path, work: Path, llm: str, a) -> dict:
    import torch

    from slt_llm.config import Stage1Config
    from slt_llm.contrastive.reference import clip_loader
    from slt_llm.data.dataset import batch_to_device
    from slt_llm.demo import SMOLLM2_STAGE1
    from slt_llm.training.stage1 import Stage1Trainer

    over = run_overrides(corpus, llm_dir, work, "run_s1") + ["selection.selection=random"] \
        + (SMOLLM2_STAGE1 if llm == "smollm2" else []) + precision_overrides(a, 1) + list(a.stage1)
    with prepared_trainer(Stage1Config, "demo_stage1.yaml", over, Stage1Trainer) as tr:
        idx, fn, _ = tr.sampler_for_epoch(0)
        batches = list(clip_loader(tr.ds, idx[: a.steps], 0))

        def step(b):
            tr.train_step(b, fn)

        model = tr.accelerator.unwrap_model(tr.model)

        def fwd(b):
            bb = batch_to_device(b, tr.device)
            rows = tr.text_idx[bb["index"].cpu()]
            text = dict(text=tr.text_llm[rows]) if tr.text_tok is None else dict(
                zip(("text", "text_mask"), tr.text_tok.padded(rows)))
            text = {k: v.to(tr.device) for k, v in text.items()}  # the cached text side lives on the CPU
            model(bb, **tr.objective.model_kwargs(bb, **text))

        need, execd = 0.0, 0.0
        for b in batches:
            c = forward_flops(model, lambda: fwd(b))
            need += 3 * c[_top_name(c)]  # every stage-1 module is trained
            execd += executed_flops(lambda: step(b))
        times = time_steps(step, batches, a.warmup, a.repeats, a.steps)
        table, busy = profile_table(step, batches) if a.profile else ("", 0.0)
        return dict(times=times, need=need / len(batches), executed=execd / len(batches), gpu_busy_s=busy,
                    batch=tr.tc.batch_size, frames=_max_frames(batches), table=table, threads=torch.get_num_threads())


def stage2_arm(corpus: Path, llm_dir: Path, work: Path, llm: str, a, qlora: bool = False) -> dict:
    import torch

    from slt_llm.config import SLTConfig
    from slt_llm.data.dataset import batch_to_device, collate_clips
    from slt_llm.demo import SMOLLM2_STAGE2
    from slt_llm.training.stage2 import Stage2Trainer

    over = run_overrides(corpus, llm_dir, work, "run_qlora" if qlora else "run_s2") \
        + (SMOLLM2_STAGE2 if llm == "smollm2" else []) + precision_overrides(a, 2) + list(a.stage2)
    if qlora:
        compute = "bfloat16" if a.precision == "bf16" else "float32"
        over += ["llm.load_in_4bit=true", f"llm.bnb_4bit_compute_dtype={compute}", "llm.bnb_4bit_quant_storage=uint8"]
    with prepared_trainer(SLTConfig, "demo_stage2.yaml", over, Stage2Trainer) as tr:
        bs = tr.tc.batch_size
        batches = [collate_clips([tr.train_ds[j] for j in range(i * bs, (i + 1) * bs)]) for i in range(a.steps)]

        def step(b):
            tr.train_step(iter([b]))

        model = tr.unwrapped
        need, execd = 0.0, 0.0
        for b in batches:
            c = forward_flops(model, lambda: model(batch_to_device(b, tr.device)))
            top = _top_name(c)
            llm_f = subtree_flops(c, f"{top}.llm")
            lora = sum(v for k, v in c.items() if k.startswith(f"{top}.llm.") and
                       (k.endswith("lora_A.default") or k.endswith("lora_B.default")))
            need += 3 * (c[top] - llm_f) + 2 * (llm_f - lora) + 3 * lora
            execd += executed_flops(lambda: step(b))
        times = time_steps(step, batches, a.warmup, a.repeats, a.steps)
        table, busy = profile_table(step, batches) if a.profile else ("", 0.0)
        return dict(times=times, need=need / len(batches), executed=execd / len(batches), gpu_busy_s=busy, batch=bs,
                    frames=_max_frames(batches), table=table, threads=torch.get_num_threads(), llm_fwd=llm_f,
                    lora_fwd=lora)


def precision_overrides(a, stage: int) -> list:
    """bf16 (the GPU recipes' precision): autocast + a bf16 LLM in stage 2; fp32: the CPU demo's."""
    if a.precision != "bf16":
        return []
    return ["train.mixed_precision=bf16"] + (["llm.dtype=bfloat16"] if stage == 2 else [])


def _report(name: str, r: dict, rate: float) -> tuple[float, float, float]:
    med, worst = statistics.median(r["times"]), max(r["times"])
    floor = r["need"] / rate
    print(f"{name}: {med:.3f} s/step median, worst repeat {worst:.3f} s (batch {r['batch']}, clip frames "
          f"{r['frames']}); needed {r['need'] / 1e9:.1f} GFLOP, executed {r['executed'] / 1e9:.1f} GFLOP "
          f"({r['executed'] / max(r['need'], 1):.2f}x the need); floor {floor:.3f} s -> ratio {med / floor:.2f} "
          f"(worst {worst / floor:.2f})", flush=True)
    if r.get("gpu_busy_s"):
        print(f"{name}: GPU kernels busy {r['gpu_busy_s'] * 1e3:.1f} ms of the {med * 1e3:.1f} ms step "
              f"({r['gpu_busy_s'] / med:.0%}; the rest is the host launching them)", flush=True)
    if r.get("table"):
        print(f"--- {name}: torch.profiler, 2 steps\n{r['table']}", flush=True)
    return med, floor, med / floor


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--llm", choices=["tiny", "smollm2"], default="tiny")
    p.add_argument("--work", default="runs/bench_step", help="corpus, LLM and throw-away run folders")
    p.add_argument("--llm-dir", default=None, help="an existing LLM folder for --llm (default: build or import it); "
                   "e.g. eval/gpu_check.py random-llm's SmolLM2 shape where the GGUF cannot travel")
    p.add_argument("--warmup", type=int, default=2, help="discarded steps per arm")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=4, help="steps per repeat (distinct batches)")
    p.add_argument("--qlora", action="store_true", help="also a QLoRA step (bitsandbytes NF4 base, fp32 compute)")
    p.add_argument("--arms", default="stage1,stage2", help="comma list of stage1, stage2")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table per arm")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: fp32 on CPU (floor: fp32 GEMM), bf16 on CUDA (floor: bf16 GEMM)")
    p.add_argument("--stage1", nargs="*", default=[], help="extra stage-1 config overrides")
    p.add_argument("--stage2", nargs="*", default=[], help="extra stage-2 config overrides")
    a = p.parse_args(argv)
    from slt_llm.allocator import in_force as kept_memory_in_force

    import torch

    cuda = torch.cuda.is_available()
    if not cuda:  # DeepSpeed, where installed, would otherwise look for a GPU first
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if a.precision == "auto":
        a.precision = "bf16" if cuda else "fp32"
    dev, gn = ("cuda", 8192) if cuda else ("cpu", 2048)
    gdtype = torch.bfloat16 if a.precision == "bf16" else torch.float32  # the floor in the steps' precision
    gname = f"{'bf16' if gdtype == torch.bfloat16 else 'fp32'} GEMM {gn}^3 on {dev}"
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus, llm_dir = prepare(work, a.llm, n_train=max(64, 32 * a.steps), llm_dir=a.llm_dir)
    arms = a.arms.split(",")
    print(f"llm={a.llm} torch threads {torch.get_num_threads()}, cpu_count {os.cpu_count()}, "
          f"avx512f={'avx512f' in Path('/proc/cpuinfo').read_text()}, kept_memory={kept_memory_in_force()}", flush=True)
    r1 = gemm_rate(gn, device=dev, dtype=gdtype)
    print(f"{gname} (before): {r1 / 1e9:.1f} GFLOP/s; steps in {a.precision}", flush=True)
    res = {}
    if "stage1" in arms:
        res["stage1"] = stage1_arm(corpus, llm_dir, work, a.llm, a)
    if "stage2" in arms:
        res["stage2"] = stage2_arm(corpus, llm_dir, work, a.llm, a)
    if a.qlora:
        try:
            res["qlora"] = stage2_arm(corpus, llm_dir, work, a.llm, a, qlora=True)
        except Exception as e:  # bitsandbytes without a backend for this machine: say so, keep the rest
            print(f"qlora: not measured ({type(e).__name__}: {str(e).splitlines()[0][:200]})", flush=True)
    r2 = gemm_rate(gn, device=dev, dtype=gdtype)
    rate = 0.5 * (r1 + r2)
    print(f"{gname} (after): {r2 / 1e9:.1f} GFLOP/s; floor uses the mean {rate / 1e9:.1f} GFLOP/s", flush=True)
    if "qlora" in res and "stage2" in res:
        # bitsandbytes' 4-bit matmuls are custom ops FlopCounterMode does not see: the QLoRA step
        # needs what the LoRA step on the same batches needs
        res["qlora"]["need"] = res["stage2"]["need"]
    fields = []
    for name, r in res.items():
        med, floor, ratio = _report(name, r, rate)
        fields += [f"{name}_s={med:.4f}", f"{name}_floor_s={floor:.4f}", f"{name}_ratio={ratio:.2f}",
                   f"{name}_worst_ratio={max(r['times']) / floor:.2f}"] \
            + ([f"{name}_gpu_busy={r['gpu_busy_s'] / med:.3f}"] if r.get("gpu_busy_s") else [])
    (work / f"result_{a.llm}.json").write_text(json.dumps(
        {k: {kk: vv for kk, vv in v.items() if kk != "table"} for k, v in res.items()} | {"gemm_flops": rate}, indent=1))
    print("RESULT " + " ".join(fields + [f"gemm_gflops={rate / 1e9:.1f}", f"llm={a.llm}", f"device={dev}",
                                         f"precision={a.precision}"]
                                + ([f"llm_dir={llm_dir}"] if a.llm_dir else [])))
    return 0


if __name__ == "__main__":
    from slt_llm.allocator import reexec_with_kept_memory

    reexec_with_kept_memory()  # as `slt-llm` runs: freed memory reused (slt_llm.allocator; SLT_LLM_MALLOC=system: off)
    sys.exit(main())
