"""What a run reports while it trains: ``RUN_DIR/metrics.jsonl`` (+ TensorBoard
through Accelerate's trackers), the rank-0 progress bar (a line every few
seconds when the output is not a terminal), and samples-per-second throughput."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from slt_llm import distributed as dist_utils

from slt_llm.run_layout import METRICS_FILE, metrics_path


# ------------------------------------------------------------------------ metrics
class MetricsLogger:
    """``RUN_DIR/metrics.jsonl``: one JSON object per logged step (rank 0 writes).

    Each line has at least ``step``, ``loss``, ``lr``, ``samples_per_s``, plus
    whatever else is passed (``epoch``, ``tokens``, ``grad_norm``,
    ``dev_bleu``...). Also forwarded to Accelerate's trackers (TensorBoard when
    installed). ``truncate_after(step)`` drops lines of a previous run beyond a
    resumed checkpoint so the file stays one consistent history.
    """

    def __init__(self, run_dir: str | Path, accelerator=None):
        self.path = metrics_path(run_dir)
        self.accelerator = accelerator
        self.is_main = accelerator.is_main_process if accelerator is not None else dist_utils.is_main()
        if self.is_main:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        if not self.is_main or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue
        self.path.write_text("".join(x + "\n" for x in kept))

    def log(self, step: int, **values) -> None:
        if not self.is_main:
            return
        record = {"step": int(step)}
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            if isinstance(v, (np.floating, np.integer)):
                v = v.item()
            record[k] = v
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.accelerator is not None and self.accelerator.trackers:
            self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"},
                                 step=step)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = metrics_path(run_dir)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def progress_bar(total: int, initial: int = 0, enabled: bool = True, desc: str = "train"):
    """Progress of a training run on rank 0 (``slt_llm.progress``: a tqdm bar on a terminal,
    a line every few seconds otherwise); silent on other ranks or when ``enabled`` is false."""
    from slt_llm.progress import progress_bar as _bar

    return _bar(total=total, initial=initial, desc=desc, unit="step", enabled=enabled and dist_utils.is_main())


class Throughput:
    """Samples per second between two ``rate()`` calls (wall clock)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.samples = 0

    def add(self, n: int) -> None:
        self.samples += n

    def rate(self) -> float:
        now = time.perf_counter()
        r = self.samples / max(1e-9, now - self.t0)
        self.t0, self.samples = now, 0
        return r


# ----------------------------------------------------------------- skipped samples
def name_skipped(skipped: list, first: int = 2, width: int = 160) -> str:
    """``'ID' (FILE: problem), 'ID2' (...) and N more`` for ``skipped`` = [(id, message), ...]
    (what a step log line says of the bad samples it skipped: named, not only counted)."""
    def one(item) -> str:
        sid, msg = item
        msg = str(msg).splitlines()[0] if str(msg) else "unreadable"
        return f"{sid!r} ({msg[:width] + '...' if len(msg) > width else msg})"

    said = ", ".join(one(x) for x in skipped[:first])
    return said + (f" and {len(skipped) - first} more" if len(skipped) > first else "")
