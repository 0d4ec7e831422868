"""Go/no-go 1 of the pair-selection experiment: does the similarity trajectory carry signal on the
frozen phoenix corpus, or is it seed noise? And does it point at the false negatives?

    .venv/bin/python eval/ps_signal.py --corpus runs/phoenix_full/corpus --llm runs/phoenix_full/llm \
        [--out runs/ps_signal] [--seeds 1,2] [--epochs 3] [--batch 16] [--top-m 32]

Two REFERENCE RUNS (the random arm, as SCL-SLT trains its reference model) on the frozen phoenix
profile's 7,096 training clips with the paper's global batch of 16 (so the batch-to-corpus ratio
and the near-neighbour density are the paper's), differing only in their seed, each exporting a
reference checkpoint after every epoch from the first on (K = ``--epochs``). For each run, every
training video and every training sentence is embedded at the first and the last checkpoint and
the DENSE N x N similarity is formed (N = 7,096: 201 MB a matrix; no candidate pre-selection),
standardised per checkpoint over all N(N-1) negative pairs, and the pair score is the library's
delta = z^{K-1} - z^0 (``selection.score_pairs``). Reported:

- ``delta_rank_corr``: Spearman correlation of delta between the two seeds over all negative pairs
  (a 4M-pair uniform sample); ``delta_rank_corr_topm``: over the pairs pair selection actually
  scores (each anchor's top-M candidates of seed A, M = ``--top-m``); near 0 means the score is
  noise on this corpus and the PS arms should stop there (issue 17's go/no-go 1);
- the same for z^{K-1} (the plain last similarity: what hard-negative mining would use), so the
  trajectory's own information can be told from the level's;
- oracle: the generator's paraphrase groups (manifest ``group``) mark the TRUE false negatives;
  among the top-M candidates, the ROC AUC with which delta, z^{K-1} and z^0 separate them from
  true negatives, for all false negatives and for the paraphrases only (same meaning, different
  text: the ones an exact-text rule cannot mask).

Frozen parts: the model is the demo's stage-1 model with the keypoint stream only (``--encoder
keypoints``; crops and full frame off) to fit CPU time; the text side is the corpus's tiny LLM.
Scaled: pooled similarity, no translation loss, 3 epochs (the paper's reference model is the
joint fine-grained one, trained longer). Resumable: a finished run is reused. Last line::

    RESULT delta_rank_corr=... delta_rank_corr_topm=... zlast_rank_corr_topm=... fn_auc_delta=...
    fn_auc_zlast=... para_auc_delta=... para_auc_zlast=... seeds=... minutes=...
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
os.environ.setdefault("DS_ACCELERATOR", "cpu")

ROOT = Path(__file__).resolve().parents[1]
KEYPOINTS = ["encoder.use_hands=false", "encoder.use_full=false", "encoder.keypoint_hidden=128", "encoder.dim=64",
             "encoder.num_layers=1", "encoder.num_heads=4", "vlp.embed_dim=64"]


def _rank(x):
    import numpy as np

    r = np.empty(len(x), np.float64)
    r[np.argsort(x, kind="stable")] = np.arange(len(x), dtype=np.float64)
    return r


def spearman(a, b) -> float:
    """Spearman's rho (ties broken by order: the scores are continuous)."""
    import numpy as np

    ra, rb = _rank(np.asarray(a)), _rank(np.asarray(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def auc(score, label) -> float:
    """ROC AUC of ``score`` for ``label`` (Mann-Whitney U); nan without both classes."""
    import numpy as np

    label = np.asarray(label, bool)
    n1, n0 = int(label.sum()), int((~label).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = _rank(np.asarray(score)) + 1.0
    return float((r[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def train_reference(seed: int, a, out: Path) -> Path:
    from slt_llm.config import Stage1Config, load_config
    from slt_llm.training.stage1 import train_vlp

    run = out / f"reference_seed{seed}"
    if (run / "result.json").is_file() and len(list((run / "reference").glob("ref_*"))) >= a.epochs:
        return run
    overrides = [f"data.train_manifest={Path(a.corpus) / 'train.jsonl'}", "data.dev_manifest=null",
                 f"data.cache_dir={a.clip_cache}", f"llm.path={a.llm}", f"vlp.text_cache_dir={out / 'text_cache'}",
                 f"train.run_dir={run}", f"train.seed={seed}", f"train.epochs={a.epochs}", f"train.batch_size={a.batch}",
                 "selection.selection=random", f"selection.ref_epochs={a.epochs}", "selection.ref_interval=1",
                 "train.eval_every=0", "train.save_every=0", "train.log_every=100", "train.progress=false",
                 "optim.warmup_steps=50"]
    if a.encoder == "keypoints":
        overrides += KEYPOINTS
    cfg = load_config(Stage1Config, str(ROOT / "slt_llm" / "configs" / "demo_stage1.yaml"), overrides)
    t = time.time()
    train_vlp(cfg, overwrite=True)
    print(f"reference run seed {seed}: {a.epochs} epochs in {time.time() - t:.0f}s", flush=True)
    return run


def dense_scores(run: Path, a, texts: list, out: Path):
    """(z_first, z_last) dense (N, N) float32 of one reference run (rows videos, columns samples'
    sentences), standardised over the off-diagonal pairs as ``Trajectories`` does."""
    import numpy as np
    import torch

    from slt_llm.config import Stage1Config, load_config
    from slt_llm.contrastive.reference import embed_dataset_sharded
    from slt_llm.contrastive.retrieval import unique_sentences
    from slt_llm.data.dataset import SLTDataset
    from slt_llm.data.manifest import read_manifest
    from slt_llm.models.text_embed import TextEmbedder
    from slt_llm.models.vlp import VLPModel

    cfg = load_config(Stage1Config, str(run / "config.yaml"))
    refs = sorted((run / "reference").glob("ref_*"))
    ds = SLTDataset(read_manifest(Path(a.corpus) / "train.jsonl"), cfg.data.clip, cache_dir=a.clip_cache)
    uniq, idx = unique_sentences(texts)
    t_llm = TextEmbedder(a.llm, pooling=cfg.vlp.pooling, cache_dir=out / "text_cache").embed(uniq)
    zs = []
    for d in (refs[0], refs[-1]):
        m = VLPModel.from_pretrained(d)
        v = embed_dataset_sharded(m, ds, 64, 1)  # (N, E) in dataset order
        t = m.embed_texts(t_llm)[idx]  # (N, E)
        s = (v.float() @ t.float().T).numpy()  # (N, N)
        n = s.shape[0]
        off = ~np.eye(n, dtype=bool)
        mu, sd = float(s[off].mean()), float(s[off].std())
        zs.append(((s - mu) / sd).astype(np.float32))
        del s
    return zs[0], zs[1], len(refs)


def main(argv=None) -> int:
    import numpy as np
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="runs/phoenix_full/corpus", help="a render of the frozen phoenix profile")
    p.add_argument("--llm", default="runs/phoenix_full/llm", help="the text side (the corpus's tiny LLM)")
    p.add_argument("--clip-cache", default=None, help="clip cache (default: the corpus folder's sibling clip_cache)")
    p.add_argument("--out", default="runs/ps_signal")
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--epochs", type=int, default=3, help="epochs = reference checkpoints K (one per epoch)")
    p.add_argument("--batch", type=int, default=16, help="global batch (the paper's 16)")
    p.add_argument("--top-m", type=int, default=32)
    p.add_argument("--encoder", default="keypoints", choices=["keypoints", "demo"])
    p.add_argument("--pairs", type=int, default=4_000_000, help="uniform sample of negative pairs for the global rho")
    a = p.parse_args(argv)
    a.clip_cache = a.clip_cache or str(Path(a.corpus).parent / "clip_cache")
    t0 = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from slt_llm.synth.corpus import read_records
    from slt_llm.synth.profiles import PHOENIX_SEED, PHOENIX_TEXT_HASH, text_hash

    recs = read_records(a.corpus)
    h = text_hash(recs)
    if h != PHOENIX_TEXT_HASH:
        raise SystemExit(f"{a.corpus} is not the frozen phoenix profile (text_hash {h[:12]}..., frozen "
                         f"{PHOENIX_TEXT_HASH[:12]}...)")
    print(f"profile_seed={PHOENIX_SEED} profile_hash={h}", flush=True)
    train = recs["train"]
    texts = [r["text"] for r in train]
    group = np.array([r["group"] for r in train])
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = [train_reference(s, a, out) for s in seeds]

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    scores = []
    for run in runs:
        z0, zl, k = dense_scores(run, a, texts, out)
        scores.append((z0, zl))
        print(f"{run.name}: K={k} checkpoints embedded", flush=True)
    n = len(texts)
    rng = np.random.default_rng(0)
    i = rng.integers(0, n, a.pairs)
    j = rng.integers(0, n, a.pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    (z0a, zla), (z0b, zlb) = scores[0], scores[1]
    da, db = zla[i, j] - z0a[i, j], zlb[i, j] - z0b[i, j]
    rho_all = spearman(da, db)
    rho_last_all = spearman(zla[i, j], zlb[i, j])
    # the pairs PS scores: each anchor's top-M candidates of seed A by max(z0, zlast), never itself
    m = a.top_m
    key = np.maximum(z0a, zla)
    np.fill_diagonal(key, -np.inf)
    cand = np.argpartition(-key, m, axis=1)[:, :m]  # (N, M)
    rows = np.repeat(np.arange(n), m)
    cols = cand.reshape(-1)
    dA = zla[rows, cols] - z0a[rows, cols]
    dB = zlb[rows, cols] - z0b[rows, cols]
    rho_top = spearman(dA, dB)
    rho_last_top = spearman(zla[rows, cols], zlb[rows, cols])
    # oracle false negatives among the candidates: same meaning (group); paraphrases: and another text
    same = group[rows] == group[cols]
    texts_arr = np.array(texts, dtype=object)
    para = same & (texts_arr[rows] != texts_arr[cols])
    fn_auc = {name: auc(x, same) for name, x in (("delta", dA), ("zlast", zla[rows, cols]), ("zfirst", z0a[rows, cols]))}
    sub = ~same | para  # paraphrase-only positives against true negatives
    para_auc = {name: auc(x[sub], para[sub]) for name, x in (("delta", dA), ("zlast", zla[rows, cols]),
                                                            ("zfirst", z0a[rows, cols]))}
    minutes = (time.time() - t0) / 60
    res = {"n": n, "k": a.epochs, "batch": a.batch, "top_m": m, "pairs": int(len(i)),
           "candidate_pairs": int(len(rows)), "oracle_fn_candidates": int(same.sum()),
           "paraphrase_candidates": int(para.sum()), "delta_rank_corr": rho_all, "zlast_rank_corr": rho_last_all,
           "delta_rank_corr_topm": rho_top, "zlast_rank_corr_topm": rho_last_top, "fn_auc": fn_auc,
           "para_auc": para_auc, "minutes": minutes}
    (out / "signal.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print(f"RESULT delta_rank_corr={rho_all:.4f} delta_rank_corr_topm={rho_top:.4f} "
          f"zlast_rank_corr_topm={rho_last_top:.4f} fn_auc_delta={fn_auc['delta']:.4f} "
          f"fn_auc_zlast={fn_auc['zlast']:.4f} para_auc_delta={para_auc['delta']:.4f} "
          f"para_auc_zlast={para_auc['zlast']:.4f} seeds={len(seeds)} minutes={minutes:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
