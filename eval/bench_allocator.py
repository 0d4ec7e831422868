"""Benchmark: the C allocator under the stage-1 CNN step (why ``slt-llm`` keeps glibc's default).

    .venv/bin/python eval/bench_allocator.py [--steps 160] [--repeats 2] [--preload /path/libjemalloc.so]

Half of a CPU stage-1 step is the demo encoder's two small CNNs over every valid frame
(docs/perf/step.md). Their activations are 10-60 MB tensors, allocated and freed dozens of
times a step. glibc serves such blocks with a fresh ``mmap`` and unmaps them on ``free``, so
the kernel page-faults and zero-fills every one of them again on every step. This benchmark
measures what that costs and what keeping freed memory in the process would do:

* ``glibc``: glibc's default (``SLT_LLM_MALLOC=system``);
* ``kept``: what ``slt-llm`` runs, ``slt_llm.allocator.KEPT_TUNABLES`` in ``GLIBC_TUNABLES``
  (large blocks from the heap, the heap never trimmed, no thread cache: freed blocks are
  reused, not re-faulted);
* ``kept_with_tcache``: the same with glibc's thread cache on (why ``tcache_count=0``: the
  small remainders ``posix_memalign`` splits off stay cached, in use, between freed large
  blocks, which then never coalesce);
* ``preload`` (with ``--preload PATH``): a caching allocator (jemalloc, tcmalloc) via
  ``LD_PRELOAD``, the way Intel's PyTorch CPU tuning guide runs.

Workload, the same in every arm (seeded): the demo's hand CNN (16-32-64 channels, 32 px,
two crops per frame) and full-frame CNN (8-16-32, 48 px) as ``slt_llm.models.encoder.SmallCNN``
builds them, forward + backward + AdamW, ``--steps`` steps whose frame counts are drawn from
[1000, 1800] (the demo's batches: every batch has a different number of valid frames). Each
arm runs in a fresh process; the first ``--warmup`` steps of a process are discarded; the
arms alternate ``--repeats`` times. Per arm: the median step time over the repeats (the worst
repeat's median beside it), the resident set size at the end (``/proc/self/statm``) and its
growth over the second half of the run (MB per step: a positive slope that does not flatten
is memory that is never given back). Last line: ``RESULT glibc_step_s=... kept_step_s=...
speedup=... glibc_rss_mb=... kept_rss_mb=... rss_ratio=... kept_rss_slope_mb=...``
(plus ``preload_*`` fields with ``--preload``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

def _arms_env() -> dict:
    from slt_llm.allocator import KEPT_TUNABLES

    kept = ":".join(f"{k}={v}" for k, v in KEPT_TUNABLES.items())
    with_tcache = ":".join(f"{k}={v}" for k, v in KEPT_TUNABLES.items() if k != "glibc.malloc.tcache_count")
    return {
        "glibc": {"GLIBC_TUNABLES": "", "SLT_LLM_MALLOC": "system"},  # glibc's default
        "kept": {"GLIBC_TUNABLES": kept},  # what slt-llm runs (slt_llm.allocator.KEPT_TUNABLES)
        "kept_with_tcache": {"GLIBC_TUNABLES": with_tcache},  # the same without tcache_count=0
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _child(steps: int, warmup: int, seed: int) -> dict:
    import random

    import torch

    from slt_llm.models.encoder import SmallCNN

    torch.manual_seed(seed)
    rng = random.Random(seed)
    hand, full = SmallCNN([16, 32, 64]), SmallCNN([8, 16, 32])
    opt = torch.optim.AdamW(list(hand.parameters()) + list(full.parameters()), lr=1e-3)
    times, rss = [], []
    for _ in range(steps):
        frames = rng.randint(1000, 1800)
        crops = torch.randint(0, 256, (2 * frames, 3, 32, 32), dtype=torch.uint8)
        frames_px = torch.randint(0, 256, (frames, 3, 48, 48), dtype=torch.uint8)
        t0 = time.perf_counter()
        loss = hand(crops.float().div_(255)).square().mean() + full(frames_px.float().div_(255)).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        rss.append(_rss_mb())
    kept = times[warmup:]
    half = len(rss) // 2
    slope = (rss[-1] - rss[half]) / max(1, len(rss) - 1 - half)
    return {"step_s": statistics.median(kept), "rss_mb": rss[-1], "rss_slope_mb": slope,
            "rss_first_mb": rss[0]}


def _run(arm: str, env: dict, a) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", f"--steps={a.steps}", f"--warmup={a.warmup}", f"--seed={a.seed}"],
        capture_output=True, text=True, env={**os.environ, **env, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"bench_allocator: arm {arm} failed ({out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--warmup", type=int, default=5, help="discarded steps at the start of each process")
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of every arm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preload", default=None, help="a caching allocator's .so for an LD_PRELOAD arm")
    p.add_argument("--arms", default="kept,kept_with_tcache", help="comma list of kept, kept_with_tcache (glibc always runs)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.steps, a.warmup, a.seed)))
        return 0
    arms = {k: v for k, v in _arms_env().items() if k == "glibc" or k in a.arms.split(",")}
    if a.preload:
        if not os.path.isfile(a.preload):
            raise SystemExit(f"bench_allocator: --preload {a.preload}: no such file")
        arms["preload"] = {"LD_PRELOAD": a.preload, "GLIBC_TUNABLES": "", "SLT_LLM_MALLOC": "system"}
    print(f"steps {a.steps} (first {a.warmup} discarded), repeats {a.repeats}, cpu_count {os.cpu_count()}, "
          f"arms {list(arms)}", flush=True)
    runs: dict[str, list] = {k: [] for k in arms}
    for r in range(a.repeats):
        for arm, env in arms.items():
            res = _run(arm, env, a)
            runs[arm].append(res)
            print(f"repeat {r + 1}/{a.repeats} {arm}: {res['step_s']:.3f} s/step median, RSS {res['rss_first_mb']:.0f} "
                  f"-> {res['rss_mb']:.0f} MB, second-half growth {res['rss_slope_mb']:+.1f} MB/step", flush=True)
    fields = []
    base = statistics.median(x["step_s"] for x in runs["glibc"])
    base_rss = statistics.median(x["rss_mb"] for x in runs["glibc"])
    for arm in arms:
        s = statistics.median(x["step_s"] for x in runs[arm])
        worst = max(x["step_s"] for x in runs[arm])
        rss = statistics.median(x["rss_mb"] for x in runs[arm])
        slope = statistics.median(x["rss_slope_mb"] for x in runs[arm])
        print(f"{arm}: {s:.3f} s/step (worst repeat {worst:.3f}), {base / s:.2f}x glibc's speed; RSS {rss:.0f} MB "
              f"({rss / base_rss:.2f}x glibc's), growth {slope:+.1f} MB/step over the second half", flush=True)
        fields += [f"{arm}_step_s={s:.4f}", f"{arm}_worst_s={worst:.4f}", f"{arm}_rss_mb={rss:.0f}",
                   f"{arm}_rss_slope_mb={slope:.2f}"]
        if arm != "glibc":
            fields += [f"{'speedup' if arm == 'kept' else arm + '_speedup'}={base / s:.3f}",
                       f"{'rss_ratio' if arm == 'kept' else arm + '_rss_ratio'}={rss / base_rss:.3f}"]
    print("RESULT " + " ".join(fields))
    return 0


if __name__ == "__main__":
    sys.exit(main())
