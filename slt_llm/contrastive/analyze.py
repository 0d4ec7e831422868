"""``slt-llm analyze --run RUN_DIR --out plot.png [--json stats.json] [--pairs N] [--high-z Z | --high-quantile Q]``

The paper's preliminary analysis, for any dataset: how the similarity of
NEGATIVE pairs (video i, sentence of sample j, i != j) moved across a stage-1
run's reference checkpoints.

Input: a stage-1 run directory with K >= 2 reference checkpoints
(``RUN_DIR/reference/ref_KK``, saved by every arm of ``slt-llm vlp``; a
pair-selection run with the separate protocol uses its reference run's). The
trajectories are read from ``RUN_DIR/reference/trajectories.npz`` when
the run computed them (pair-selection runs), else computed here from the
checkpoints and the run's training manifest (one encoder pass per checkpoint,
then saved for next time).

Pairs analysed: each anchor's top-M candidates (the pairs pair selection works
on: similar at the first or the last checkpoint).

Groups (``contrastive.selection.score_pairs``, the rule pair selection uses;
``high`` means a standardised similarity z = (s - mu_k) / sd_k >= ``selection.high_z``
of the run's config, mu_k and sd_k being the mean and spread of ALL negative
pairs at checkpoint k, so the global drift does not move pairs between groups;
or an absolute cosine >= ``selection.high_level`` when high_z is null):
high-to-low (learned to separate), low-to-high (hard negatives), high-to-high
(likely false negatives), low-to-low (easy). delta = z_last - z_first (the
drift-free pair score; the raw s_last - s_first is reported too). Group shares
are also given per checkpoint (first checkpoint vs checkpoint k). Pairs
whose sentences are identical (after normalisation) are kept and counted per
group: they are false negatives by construction, and where they land shows
whether the trajectories can find them.

Outputs: a PNG with three panels: (1) the trajectories of ``--pairs`` sampled
pairs (thin lines coloured by group; bold lines are each group's mean over ALL
analysed pairs, dotted green the positive pairs' mean, dashed the "high" threshold
per checkpoint), (2) the group shares per checkpoint (first vs k), (3) a histogram
of delta stacked by group; and optionally a JSON with the counts, shares (summing to 1),
delta statistics and the sampled trajectories. Cost: O(N*M*K) memory and time
once the trajectories exist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from slt_llm.errors import InputError

GROUPS = ("high_to_low", "low_to_high", "high_to_high", "low_low")  # = selection.GROUP_NAMES
COLORS = {"high_to_low": "#1f77b4", "low_to_high": "#d62728", "high_to_high": "#9467bd", "low_low": "#8c8c8c"}
LABELS = {"high_to_low": "high\u2192low", "low_to_high": "low\u2192high", "high_to_high": "high\u2192high",
          "low_low": "low\u2192low"}


def analyze(traj, *, high_level: float = 0.5, high_z: Optional[float] = None,
            high_quantile: Optional[float] = None, texts: Optional[list] = None, pairs: int = 200, seed: int = 0,
            epochs: Optional[list] = None) -> dict:
    """Statistics of a run's candidate trajectories (a ``Trajectories``), grouped by
    ``selection.score_pairs`` (the same rule pair selection uses). ``texts``: the sentence of
    each training index, to count pairs whose sentences are identical after normalisation
    (false negatives by construction). ``epochs``: training epoch of each checkpoint (x axis).
    Returns a JSON-able dict (plus ``_delta``/``_groups`` arrays for the plot)."""
    from slt_llm.contrastive import selection as sel_mod

    assert tuple(sel_mod.GROUP_NAMES) == GROUPS
    sc = sel_mod.score_pairs(traj, high_z=high_z, high_level=high_level, high_quantile=high_quantile)
    cand = traj.cand.numpy().astype(np.int64)
    sims = traj.traj.float().numpy()
    n, m, k = sims.shape
    rows = np.repeat(np.arange(n), m)
    cols = cand.reshape(-1)
    flat = sims.reshape(n * m, k)
    groups = sc.group.reshape(-1).astype(np.int64)
    delta = sc.delta.reshape(-1)
    total = int(flat.shape[0])
    if total == 0:
        raise ValueError("no candidate pair to analyse")
    counts = {g: int((groups == i).sum()) for i, g in enumerate(GROUPS)}
    out = {
        "num_pairs": total, "num_anchors": int(n), "top_m": int(m), "K": int(k), "high_level": float(high_level),
        "group_rule": sc.rule, "high_z": high_z, "neg_mean": traj.neg_mean.tolist(), "neg_std": traj.neg_std.tolist(),
        "threshold_per_checkpoint": _thresholds(traj, sc, high_z, high_level),
        "shares_over_checkpoints": _shares_over_checkpoints(traj, sc, sel_mod),
        "raw_delta": {"mean": float((sims[..., -1] - sims[..., 0]).mean()),
                      "std": float((sims[..., -1] - sims[..., 0]).std())},
        "epochs": list(epochs) if epochs is not None else list(range(1, k + 1)),
        "counts": counts, "shares": {g: counts[g] / total for g in GROUPS},
        "delta": {"mean": float(delta.mean()), "std": float(delta.std()),
                  "quantiles": {str(q): float(np.quantile(delta, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}},
        "group_mean_trajectory": {g: flat[groups == i].mean(0).tolist() for i, g in enumerate(GROUPS) if counts[g]},
        "positive_mean_trajectory": traj.positive.float().mean(0).tolist(),
    }
    if texts is not None:
        cid, _ = sel_mod.sentence_clusters(texts)
        dup = cid[rows] == cid[cols]
        out["identical_sentence_pairs"] = {g: int((dup & (groups == i)).sum()) for i, g in enumerate(GROUPS)}
    rng = np.random.default_rng(seed)
    pick = rng.choice(total, size=min(pairs, total), replace=False)
    out["sampled"] = [{"video": int(rows[p]), "text": int(cols[p]), "group": GROUPS[groups[p]],
                       "sims": [round(float(x), 4) for x in flat[p]]} for p in pick]
    out["_delta"], out["_groups"] = delta, groups
    return out


def _thresholds(traj, sc, high_z, high_level) -> list:
    """The "high" threshold of each checkpoint as a raw similarity (for the plot)."""
    if sc.rule == "z":
        return [float(mu + high_z * sd) for mu, sd in zip(traj.neg_mean, traj.neg_std)]
    if sc.rule == "quantile":
        return [float(np.quantile(traj.traj[..., k].float().numpy(), 0.5)) for k in range(traj.num_checkpoints)]
    return [float(high_level)] * traj.num_checkpoints


def _shares_over_checkpoints(traj, sc, sel_mod) -> list:
    """Group shares of the candidate pairs between the first checkpoint and each later one."""
    t = traj.traj.float().numpy()
    out = []
    for k in range(1, traj.num_checkpoints):
        if sc.rule == "absolute":
            a, b = t[..., 0], t[..., k]
        else:
            a = (t[..., 0] - traj.neg_mean[0]) / traj.neg_std[0]
            b = (t[..., k] - traj.neg_mean[k]) / traj.neg_std[k]
        thr = sc.thresholds if sc.rule != "quantile" else (float(np.quantile(a, 0.5)), float(np.quantile(b, 0.5)))
        g = sel_mod.assign_groups(a, b, thr[0], thr[1] if sc.rule != "quantile" else thr[1])
        counts = np.bincount(g.reshape(-1), minlength=4)
        out.append({name: float(c) / max(1, int(counts.sum())) for name, c in zip(GROUPS, counts)})
    return out


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
        ax.plot(x, mean, color=COLORS[g], lw=3, label=f"{LABELS[g]} (mean of {stats['counts'][g]})")
    ax.plot(x, stats["positive_mean_trajectory"], color="#2ca02c", lw=3, ls=":", label="positive pairs (mean)")
    thr = stats.get("threshold_per_checkpoint") or [stats["high_level"]] * len(x)
    ax.plot(x, thr, color="k", ls="--", lw=0.8)
    ax.text(x[0], thr[0], " high/low threshold", va="bottom", fontsize=8)
    ax.set_xlabel("training epoch of the reference checkpoint")
    ax.set_ylabel("cosine similarity  s(video i, sentence j)")
    ax.set_title(f"{len(stats['sampled'])} sampled negative pairs")
    ax.set_xticks(x)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)

    ax = axes[1]
    over = stats.get("shares_over_checkpoints") or [stats["shares"]]
    xs = x[1:] if len(over) == len(x) - 1 else list(range(1, len(over) + 1))
    bottom = np.zeros(len(over))
    for g in GROUPS:
        vals = np.array([100 * o[g] for o in over])
        ax.bar(range(len(over)), vals, bottom=bottom, color=COLORS[g], label=LABELS[g])
        for i, (v, b0) in enumerate(zip(vals, bottom)):
            if v >= 4:
                ax.text(i, b0 + v / 2, f"{v:.0f}%", ha="center", va="center", fontsize=7, color="w")
        bottom += vals
    ax.set_xticks(range(len(over)), [f"{x[0]}→{e}" for e in xs], fontsize=8)
    ax.set_xlabel("first checkpoint → checkpoint (epochs)")
    ax.set_ylabel("% of candidate negative pairs")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"group shares ({stats['num_pairs']} pairs, rule {stats.get('group_rule', 'absolute')})")

    ax = axes[2]
    delta, groups = stats["_delta"], stats["_groups"]
    bins = np.linspace(float(delta.min()), float(delta.max()) + 1e-6, 41)
    ax.hist([delta[groups == i] for i in range(4)], bins=bins, stacked=True,
            color=[COLORS[g] for g in GROUPS], label=[LABELS[g] for g in GROUPS])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("delta = z_last - z_first (drift removed)")
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
    """``(Trajectories, texts (N,), epochs (K,), cfg)`` of a stage-1 run.

    Reads the saved trajectories or computes them from the reference checkpoints
    (InputError when the run has none, or fewer than two)."""
    from slt_llm import run_layout as layout
    from slt_llm.config import Stage1Config, load_config
    from slt_llm.contrastive.reference import (token_states_for_analysis, trajectories_from_references,
                                               training_set_for_analysis)
    from slt_llm.contrastive.trajectories import Trajectories

    run = Path(run_dir)
    if not layout.config_path(run).is_file():
        raise InputError(run, f"not a stage-1 run directory (no {layout.CONFIG_FILE})")
    cfg = load_config(Stage1Config, str(layout.config_path(run)))
    refs = layout.reference_dirs(run)
    sel = cfg.selection
    if not refs and sel.selection == "ps" and sel.protocol == "separate":  # the checkpoints of its reference run
        refs = layout.reference_dirs(sel.reference_run or layout.reference_run_dir(run))
    if len(refs) < 2:
        raise InputError(run, f"run has {len(refs)} reference checkpoint(s) under {layout.REFERENCE_DIR}/; "
                              "the analysis needs K >= 2 (train with selection.ref_epochs >= 2 * ref_interval)")
    epochs = [(int(d.name.split("_")[1]) + 1) * cfg.selection.ref_interval for d in refs]
    traj_path = layout.trajectories_path(run)
    texts_path = layout.texts_path(run)
    traj_path.parent.mkdir(parents=True, exist_ok=True)
    if traj_path.is_file() and texts_path.is_file():
        traj = Trajectories.load(traj_path)
        texts = json.loads(texts_path.read_text())
    else:
        texts, ds, text_idx, text_llm = training_set_for_analysis(cfg)
        traj = trajectories_from_references(refs, ds, text_idx, text_llm, cfg.selection,
                                            batch_size=cfg.train.batch_size, num_workers=cfg.data.num_workers,
                                            text_tokens=token_states_for_analysis(cfg, texts))
        traj.save(traj_path)
    if traj.num_samples != len(texts):
        raise InputError(traj_path, f"trajectories cover {traj.num_samples} samples, the training set has "
                                    f"{len(texts)}; delete the file to recompute")
    return traj, texts, epochs, cfg


def analyze_run(run_dir: str | os.PathLike, out: str | os.PathLike, *, json_path: Optional[str | os.PathLike] = None,
                pairs: int = 200, seed: int = 0, high_z: Optional[float] = None,
                high_quantile: Optional[float] = None) -> dict:
    """``slt-llm analyze``: the analysis of a stage-1 run (:func:`load_run_trajectories`,
    :func:`analyze`; ``high_z`` / ``high_quantile`` override the run's ``selection`` settings),
    its plot written to ``out`` and, with ``json_path``, its statistics as JSON. Returns the
    statistics (without the private ``_`` entries)."""
    traj, texts, epochs, cfg = load_run_trajectories(run_dir)
    hz = high_z if high_z is not None else cfg.selection.high_z
    hq = high_quantile if high_quantile is not None else cfg.selection.high_quantile
    stats = analyze(traj, high_level=cfg.selection.high_level, high_z=hz,
                    high_quantile=hq, texts=texts, pairs=pairs, seed=seed,
                    epochs=epochs)
    plot(stats, out, title=f"negative-pair similarity trajectories: {run_dir}  "
                           f"(K={stats['K']}, selection={cfg.selection.selection})")
    public = {k: v for k, v in stats.items() if not k.startswith("_")}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(public, indent=1))
    return public
