"""``slt-llm analyze --run RUN_DIR --out plot.png [--json stats.json] [--pairs N]``

The paper's preliminary analysis, for any dataset: how the similarity of
NEGATIVE pairs (video i, sentence of sample j, i != j) moved across a stage-1
run's reference checkpoints.

Input: a stage-1 run directory with K >= 2 reference checkpoints
(``RUN_DIR/reference/ref_KK``, saved by every arm of ``slt-llm vlp``). The
trajectories are read from ``RUN_DIR/reference/trajectories.safetensors`` when
the run computed them (pair-selection runs), else computed here from the
checkpoints and the run's training manifest (one encoder pass per checkpoint,
then saved for next time).

Pairs analysed: each anchor's top-M candidates (the pairs pair selection works
on: similar at the first or the last checkpoint); pairs whose two sentences are
identical are left out (they are positives in disguise, not negatives).

Groups (the same rule as ``contrastive.selection``; ``high`` means a similarity
>= ``selection.high_level`` of the run's config): high-to-low (learned to
separate), low-to-high (hard negatives), high-to-high (likely false negatives),
low-to-low (easy). delta = s_last - s_first.

Outputs: a PNG with three panels: (1) the trajectories of ``--pairs`` sampled
pairs (thin lines coloured by group; bold lines are each group's mean over ALL
analysed pairs), (2) the share of pairs in each group, (3) a histogram of delta
stacked by group; and optionally a JSON with the counts, shares (summing to 1),
delta statistics and the sampled trajectories. Cost: O(N*M*K) memory and time
once the trajectories exist.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from slt_llm.errors import InputError

GROUPS = ("high-to-low", "low-to-high", "high-to-high", "low-to-low")
COLORS = {"high-to-low": "#1f77b4", "low-to-high": "#d62728", "high-to-high": "#9467bd", "low-to-low": "#7f7f7f"}


def assign_groups(first: np.ndarray, last: np.ndarray, high_level: float) -> np.ndarray:
    """Group index per pair (into ``GROUPS``) from the first and last similarities."""
    hi0, hi1 = first >= high_level, last >= high_level
    g = np.full(first.shape, 3, dtype=np.int64)  # low-to-low
    g[hi0 & ~hi1] = 0
    g[~hi0 & hi1] = 1
    g[hi0 & hi1] = 2
    return g


def pair_table(cand: np.ndarray, sims: np.ndarray, texts: Optional[list] = None):
    """Flatten (N,M) candidates + (N,M,K) trajectories into valid negative pairs:
    returns ``(rows (P,), cols (P,), traj (P,K))`` (padding entries < 0 and self pairs dropped,
    pairs with identical sentences dropped when ``texts`` is given)."""
    n, m = cand.shape
    rows = np.repeat(np.arange(n), m)
    cols = cand.reshape(-1).astype(np.int64)
    traj = sims.reshape(n * m, -1).astype(np.float32)
    keep = (cols >= 0) & (cols != rows) & np.isfinite(traj).all(1)
    if texts is not None:
        t = np.asarray(texts, dtype=object)
        keep &= t[rows] != t[np.clip(cols, 0, None)]
    return rows[keep], cols[keep], traj[keep]


def analyze(cand: np.ndarray, sims: np.ndarray, *, high_level: float, texts: Optional[list] = None,
            pairs: int = 200, seed: int = 0, epochs: Optional[list] = None) -> dict:
    """Statistics of the trajectories (see module docstring). ``epochs``: the training epoch of
    each reference checkpoint (x axis). Returns a JSON-able dict."""
    rows, cols, traj = pair_table(np.asarray(cand), np.asarray(sims), texts)
    if traj.shape[0] == 0:
        raise ValueError("no negative pair to analyse")
    k = traj.shape[1]
    groups = assign_groups(traj[:, 0], traj[:, -1], high_level)
    delta = traj[:, -1] - traj[:, 0]
    counts = {g: int((groups == i).sum()) for i, g in enumerate(GROUPS)}
    total = int(traj.shape[0])
    rng = np.random.default_rng(seed)
    pick = rng.choice(total, size=min(pairs, total), replace=False)
    return {
        "num_pairs": total, "K": int(k), "high_level": float(high_level),
        "epochs": list(epochs) if epochs is not None else list(range(1, k + 1)),
        "counts": counts, "shares": {g: counts[g] / total for g in GROUPS},
        "delta": {"mean": float(delta.mean()), "std": float(delta.std()),
                  "quantiles": {str(q): float(np.quantile(delta, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}},
        "group_mean_trajectory": {g: traj[groups == i].mean(0).tolist() for i, g in enumerate(GROUPS)
                                  if counts[g]},
        "sampled": [{"video": int(rows[p]), "text": int(cols[p]), "group": GROUPS[groups[p]],
                     "sims": [round(float(x), 4) for x in traj[p]]} for p in pick],
        "_delta": delta, "_groups": groups,
    }


def plot(stats: dict, out: str | os.PathLike, title: str = "") -> None:
    """Write the three-panel PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = stats["epochs"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1.6, 0.9, 1.2]})
    ax = axes[0]
    for s in stats["sampled"]:
        ax.plot(x, s["sims"], color=COLORS[s["group"]], alpha=0.25, lw=0.8)
    for g, mean in stats["group_mean_trajectory"].items():
        ax.plot(x, mean, color=COLORS[g], lw=3, label=f"{g} (mean)")
    ax.axhline(stats["high_level"], color="k", ls="--", lw=0.8)
    ax.text(x[0], stats["high_level"], " high/low threshold", va="bottom", fontsize=8)
    ax.set_xlabel("training epoch of the reference checkpoint")
    ax.set_ylabel("cosine similarity  s(video i, sentence j)")
    ax.set_title(f"{len(stats['sampled'])} sampled negative pairs")
    ax.set_xticks(x)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)

    ax = axes[1]
    shares = [100 * stats["shares"][g] for g in GROUPS]
    bars = ax.bar(range(4), shares, color=[COLORS[g] for g in GROUPS])
    for b, s, g in zip(bars, shares, GROUPS):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{s:.1f}%\n({stats['counts'][g]})",
                ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(4), [g.replace("-to-", "\u2192") for g in GROUPS], fontsize=9)
    ax.set_ylabel("% of candidate negative pairs")
    ax.set_ylim(0, max(shares) * 1.25 + 1)
    ax.set_title(f"groups ({stats['num_pairs']} pairs)")

    ax = axes[2]
    delta, groups = stats["_delta"], stats["_groups"]
    bins = np.linspace(float(delta.min()), float(delta.max()) + 1e-6, 41)
    ax.hist([delta[groups == i] for i in range(4)], bins=bins, stacked=True,
            color=[COLORS[g] for g in GROUPS], label=list(GROUPS))
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("delta = s_last - s_first")
    ax.set_ylabel("pairs")
    ax.set_title(f"delta (mean {stats['delta']['mean']:+.3f})")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def load_run_trajectories(run_dir: str | os.PathLike):
    """``(cand (N,M), sims (N,M,K), texts (N,), epochs (K,), cfg)`` of a stage-1 run.

    Reads the saved trajectories or computes them from the reference checkpoints
    (InputError when the run has none, or fewer than two)."""
    import torch

    from slt_llm.config import Stage1Config, load_config
    from slt_llm.training import stage1

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise InputError(run, "not a stage-1 run directory (no config.yaml)")
    cfg = load_config(Stage1Config, str(run / "config.yaml"))
    refs = stage1.reference_dirs(run)
    if len(refs) < 2:
        raise InputError(run, f"run has {len(refs)} reference checkpoint(s) under {stage1.REFERENCE_DIR}/; "
                              "the analysis needs K >= 2 (train with selection.ref_epochs >= 2 * ref_interval)")
    epochs = [(int(d.name.split("_")[1]) + 1) * cfg.selection.ref_interval for d in refs]
    traj_path = run / stage1.REFERENCE_DIR / stage1.TRAJ_FILE
    texts, ds, text_idx, text_llm = stage1.training_set_for_analysis(cfg)
    if traj_path.is_file():
        traj = stage1.load_trajectories(traj_path)
    else:
        traj = stage1.compute_trajectories(refs, ds, text_idx, text_llm, cfg.selection,
                                           batch_size=cfg.train.batch_size, num_workers=cfg.data.num_workers)
        stage1.save_trajectories(traj, traj_path)
    cand, sims = stage1.trajectory_arrays(traj)
    if cand.shape[0] != len(texts):
        raise InputError(traj_path, f"trajectories cover {cand.shape[0]} samples, the training set has "
                                    f"{len(texts)}; delete the file to recompute")
    return np.asarray(cand), np.asarray(sims), texts, epochs, cfg


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slt-llm analyze", description=__doc__.split("\n\n")[1])
    p.add_argument("--run", required=True, help="stage-1 run directory (train.run_dir)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--json", default=None, help="statistics JSON to write")
    p.add_argument("--pairs", type=int, default=200, help="sampled pairs drawn in the trajectory panel")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cand, sims, texts, epochs, cfg = load_run_trajectories(a.run)
    stats = analyze(cand, sims, high_level=cfg.selection.high_level, texts=texts, pairs=a.pairs, seed=a.seed,
                    epochs=epochs)
    plot(stats, a.out, title=f"negative-pair similarity trajectories: {a.run}  "
                             f"(K={stats['K']}, selection={cfg.selection.selection})")
    public = {k: v for k, v in stats.items() if not k.startswith("_")}
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(public, indent=1))
    print("groups: " + "  ".join(f"{g}={100 * public['shares'][g]:.1f}%" for g in GROUPS)
          + f"  ({public['num_pairs']} pairs, K={public['K']}, mean delta {public['delta']['mean']:+.3f})")
    return 0
