"""Benchmark: synthetic corpus generation speed, and the dataset's clip cache.

Generates N training samples (128 px, 12 fps) into a temporary folder, then
reads them twice through ``SLTDataset`` with a cache folder: the first pass
decodes + crops every clip (the baseline, measured in the same run), the second
reads the cached ``.npz``. Prints per-sample times and the speed-up.

    .venv/bin/python eval/bench_synth_cache.py [--n 40] [--size 128]

Last line: ``RESULT synth_s_per_sample=... decode_s_per_sample=...
cached_s_per_sample=... cache_speedup=...``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--size", type=int, default=128)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    from slt_llm.config import ClipConfig
    from slt_llm.data.dataset import SLTDataset
    from slt_llm.synth.corpus import generate

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "corpus"
        generate(out, n_train=2, n_dev=0, n_test=0, seed=1, dup_rate=0.0, size=a.size)  # warm imports
        t = time.perf_counter()
        summary = generate(out, n_train=a.n, n_dev=0, n_test=0, seed=0, dup_rate=0.3, size=a.size)
        synth_s = (time.perf_counter() - t) / a.n
        frames = summary["frames"] / a.n
        print(f"synth: {a.n} samples, {frames:.1f} frames each, {synth_s * 1000:.1f} ms/sample")

        ds = SLTDataset(out / "train.jsonl", ClipConfig(), cache_dir=Path(tmp) / "cache")
        t = time.perf_counter()
        for i in range(len(ds)):
            assert "error" not in ds[i]
        decode_s = (time.perf_counter() - t) / len(ds)
        ds2 = SLTDataset(out / "train.jsonl", ClipConfig(), cache_dir=Path(tmp) / "cache")
        t = time.perf_counter()
        for i in range(len(ds2)):
            ds2[i]
        cached_s = (time.perf_counter() - t) / len(ds2)
        assert ds2.cache_hits == len(ds2)
        print(f"dataset, first pass (decode + crops, baseline): {decode_s * 1000:.1f} ms/sample")
        print(f"dataset, cached pass (npz):                      {cached_s * 1000:.1f} ms/sample")
        print(f"cache speed-up: {decode_s / cached_s:.1f}x")
    print(f"RESULT synth_s_per_sample={synth_s:.4f} decode_s_per_sample={decode_s:.4f} "
          f"cached_s_per_sample={cached_s:.4f} cache_speedup={decode_s / cached_s:.2f}")


if __name__ == "__main__":
    main()
