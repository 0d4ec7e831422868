"""Benchmark: trajectories + scoring for N random unit vectors, against the matmul floor.

    .venv/bin/python eval/bench_pair_selection.py [--n 100000] [--d 256] [--k 5] [--m 64] [--batch 256]

Each measurement runs in a fresh subprocess (so peak memory is that process's
own ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which sees torch's
allocations, unlike tracemalloc):
  * floor: ONE full blockwise N x N x d product (one checkpoint scanned into a
    reused (b, N) buffer, nothing else), same block size b as the real run;
  * trajectories + scoring: ``compute_trajectories`` over K checkpoints
    (inputs: K video + K text (N, d) float16 matrices generated in the child,
    counted in the peak) then ``score_pairs``; peak_mb is the child's maxrss
    after this step (python + torch + inputs + working memory);
  * epoch build: ``PairSelector`` on those trajectories (no texts) and one
    epoch of greedy global batches of size B (schedule log, epoch 2 of 5).
The two arms alternate, floor then trajectories, ``--repeats`` + 1 times; the first pair is a
discarded warm-up (page cache, allocator, CPU clocks); each kept repeat's ratio is its
trajectories time over the floor measured just before it, the figure is the median, the worst
repeat beside it. The last line is ``RESULT wall_s=... floor_s=... ratio=... ratio_worst=...
peak_mb=... epoch_build_s=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _inputs(n, d, k, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2 * k):
        x = torch.empty(n, d, dtype=torch.float16)
        for s in range(0, n, 16384):  # chunked: no full-size float32 temporary
            blk = torch.randn(min(16384, n - s), d, generator=g)
            x[s : s + len(blk)] = torch.nn.functional.normalize(blk, dim=1).half()
        out.append(x)
    return out[:k], out[k:]


def _child(args) -> dict:
    import numpy as np
    import torch

    from slt_llm.contrastive.trajectories import _as_tensor, compute_trajectories, group_size_for

    n, d, k, m = args.n, args.d, args.k, args.m
    g = group_size_for(n, min(m, n - 1))
    n_pad = -(-n // g) * g
    b = int(max(1, min(args.block, n, (args.memory_mb * 2**20) // (2 * n_pad * 4))))
    res = {"block_rows": b, "threads": torch.get_num_threads()}
    if args.child == "floor":
        videos, texts = _inputs(n, d, 1)
        t = _as_tensor(texts[0])
        buf = torch.empty(b, n, dtype=torch.float32)
        t0 = time.perf_counter()
        for i0 in range(0, n, b):
            v = _as_tensor(videos[0], slice(i0, min(n, i0 + b)))
            torch.mm(v, t.t(), out=buf[: len(v)])
        res["floor_s"] = time.perf_counter() - t0
        res["peak_mb"] = _maxrss_mb()
        return res
    videos, texts = _inputs(n, d, k)
    res["inputs_mb"] = 2 * k * n * d * 2 / 2**20
    res["rss_before_mb"] = _maxrss_mb()
    from slt_llm.config import SelectionConfig
    from slt_llm.contrastive.selection import PairSelector, score_pairs

    t0 = time.perf_counter()
    traj = compute_trajectories(videos, texts, top_m=m, block_size=args.block, memory_mb=args.memory_mb)
    res["traj_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    scores = score_pairs(traj, high_z=1.0)
    res["score_s"] = time.perf_counter() - t1
    res["wall_s"] = time.perf_counter() - t0
    res["peak_mb"] = _maxrss_mb()
    res["shares"] = scores.shares()
    del videos, texts, scores
    t2 = time.perf_counter()
    sel = PairSelector(traj, None, SelectionConfig(top_m=m, schedule="log"))
    res["selector_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    batches = sel.build_epoch(2, 5, args.batch, seed=0)
    res["epoch_build_s"] = time.perf_counter() - t3
    assert np.array_equal(np.unique(batches), np.arange(n))
    res["num_batches"] = int(batches.shape[0])
    rng = np.random.default_rng(0)
    rand = rng.permutation(n)[: (n // args.batch) * args.batch].reshape(-1, args.batch)
    res["batch_score_ps"] = float(np.mean([sel.batch_score(x) for x in batches[:20]]))
    res["batch_score_random"] = float(np.mean([sel.batch_score(x) for x in rand[:20]]))
    res["peak_after_selection_mb"] = _maxrss_mb()
    return res


def _run_child(kind: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, *argv], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"bench child {kind} failed ({out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--m", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--block", type=int, default=4096)
    p.add_argument("--memory-mb", type=float, default=512.0, help="scan-buffer budget (two (b, N) float32 buffers)")
    p.add_argument("--repeats", type=int, default=2, help="kept (floor, trajectories) pairs after one discarded")
    p.add_argument("--child", choices=["floor", "traj"], default=None)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    fwd = [f"--n={args.n}", f"--d={args.d}", f"--k={args.k}", f"--m={args.m}", f"--batch={args.batch}",
           f"--block={args.block}", f"--memory-mb={args.memory_mb}"]
    print(f"N={args.n} d={args.d} K={args.k} M={args.m} B={args.batch} cpu_count={os.cpu_count()}", flush=True)
    import statistics

    pairs = []
    for r in range(args.repeats + 1):  # alternating; pair 0 is the discarded warm-up
        f = _run_child("floor", fwd)
        t = _run_child("traj", fwd)
        tag = "warm-up, discarded" if r == 0 else f"repeat {r}/{args.repeats}"
        print(f"{tag}: floor (one blockwise N x N x d product, b={f['block_rows']} rows/block) {f['floor_s']:.2f}s, "
              f"trajectories + scoring {t['wall_s']:.2f}s: {t['wall_s'] / f['floor_s']:.2f}x", flush=True)
        if r:
            pairs.append((f, t))
    ratios = [t["wall_s"] / f["floor_s"] for f, t in pairs]
    ratio, worst = statistics.median(ratios), max(ratios)
    floor = {"floor_s": statistics.median(f["floor_s"] for f, _ in pairs)}
    tr = max((t for _, t in pairs), key=lambda t: t["peak_mb"]) | {
        "wall_s": statistics.median(t["wall_s"] for _, t in pairs)}
    print(f"trajectories + scoring {tr['wall_s']:.2f}s median ({ratio:.2f}x floor, median of {len(ratios)}; worst "
          f"{worst:.2f}x; scanning all K checkpoints in full would be {args.k}x)")
    print(f"peak RSS {tr['peak_mb']:.0f} MB (process total incl. {tr['inputs_mb']:.0f} MB float16 inputs; "
          f"{tr['rss_before_mb']:.0f} MB before the run)")
    print("group shares (high_z=1.0): " + ", ".join(f"{k}={v:.3f}" for k, v in tr["shares"].items()))
    print(f"selector build {tr['selector_s']:.2f}s; one epoch of {tr['num_batches']} greedy batches of "
          f"{args.batch}: {tr['epoch_build_s']:.2f}s; mean batch score (sum of drift-free delta) PS(alpha=log(3)/log(5)) "
          f"{tr['batch_score_ps']:.4f} vs random {tr['batch_score_random']:.4f}")
    print(f"RESULT wall_s={tr['wall_s']:.2f} floor_s={floor['floor_s']:.2f} ratio={ratio:.2f} ratio_worst={worst:.2f} "
          f"peak_mb={tr['peak_mb']:.0f} epoch_build_s={tr['epoch_build_s']:.2f}")
    return 0


if __name__ == "__main__":
    from slt_llm.allocator import reexec_with_kept_memory

    reexec_with_kept_memory()  # as `slt-llm` runs: freed memory reused (slt_llm.allocator; SLT_LLM_MALLOC=system: off)
    sys.exit(main())
