"""Ablation: does SCL-SLT pair selection beat random batches? (stage 1, synthetic corpus)

    .venv/bin/python eval/ablate_pair_selection.py [--out runs/ablation] [--seeds 0 1 2]

On a synthetic corpus with many repeated and near-repeated sentences
(``synth.generate(dup_rate=0.4)``) stage 1 is trained with the same budget
(epochs, global batch, schedule, optimizer steps) and the same seeds in three arms:

- ``random``     GFSLT-VLP baseline: random batches, plain InfoNCE;
- ``random_fn``  random batches + the text false-negative mask (isolates the mask);
- ``ps``         pair selection: the ``random`` run for ``ref_epochs`` epochs (K reference
                 checkpoints), trajectories, then greedy curriculum batches + the full mask.

Each run's best-on-DEV model is scored on the TEST split: video-to-text R@1 over
the unique test sentences. Also printed: the groups of PS's candidate pairs and
where the identical-sentence pairs fall (why PS does or does not help). The corpus,
the tiny LLM, the decoded clips and the text embeddings are cached under --out, so
a rerun only trains. Last line:
``RESULT random_r1_mean=... random_r1_std=... ps_r1_mean=... ps_r1_std=... ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

MODEL = [
    "data.clip.max_frames=16", "data.clip.full_size=32", "data.clip.hand_size=24", "data.clip.max_fps=8",
    "encoder.use_hands=false", "encoder.use_full=false", "encoder.keypoint_hidden=128",
    "encoder.dim=64", "encoder.num_layers=1", "encoder.num_heads=4", "encoder.temporal_stride=2",
    "encoder.dropout=0.1", "vlp.embed_dim=64", "optim.lr_encoder=1e-3", "optim.lr_head=1e-3",
    "optim.warmup_steps=10", "train.log_every=10", "train.save_every=0", "train.eval_every=0",
    "train.progress=false",
]


def _corpus_and_llm(out: Path, a) -> tuple[Path, Path]:
    from slt_llm.data.synth import generate
    from slt_llm.models.tiny_llm import build_tiny_llm, corpus_texts

    corpus, llm = out / "corpus", out / "llm"
    if not (corpus / "test.jsonl").is_file():
        t = time.time()
        generate(corpus, n_train=a.n_train, n_dev=a.n_dev, n_test=a.n_test, seed=0, dup_rate=a.dup_rate,
                 size=a.size)
        print(f"corpus: {a.n_train}/{a.n_dev}/{a.n_test} samples, dup_rate {a.dup_rate} in {time.time() - t:.0f}s",
              flush=True)
    if not (llm / "config.json").is_file():
        t = time.time()
        texts, held = corpus_texts(corpus, extra=2000, seed=0)
        build_tiny_llm(llm, family="llama", texts=texts, heldout=held, steps=a.llm_steps, seed=0, progress=False)
        print(f"tiny LLM: {a.llm_steps} pre-training steps in {time.time() - t:.0f}s", flush=True)
    return corpus, llm


def _train_texts_stats(corpus: Path) -> dict:
    texts = [json.loads(l)["text"] for l in (corpus / "train.jsonl").read_text().splitlines() if l.strip()]
    return {"train": len(texts), "unique": len(set(texts))}


def run_arm(arm: str, seed: int, corpus: Path, llm: Path, out: Path, a) -> dict:
    from slt_llm.config import Stage1Config, load_config
    from slt_llm.contrastive.retrieval import evaluate_retrieval
    from slt_llm.models.text_embed import TextEmbedder
    from slt_llm.models.vlp import VLPModel
    from slt_llm.training.stage1 import train_vlp

    run = out / f"{arm}_seed{seed}"
    cfg = load_config(Stage1Config, None, MODEL + [
        f"data.train_manifest={corpus / 'train.jsonl'}", f"data.dev_manifest={corpus / 'dev.jsonl'}",
        f"data.cache_dir={out / 'clip_cache'}", f"llm.path={llm}", f"vlp.text_cache_dir={out / 'text_cache'}",
        f"train.run_dir={run}", f"train.seed={seed}", f"train.epochs={a.epochs}", f"train.batch_size={a.batch}",
        f"selection.selection={arm}", f"selection.ref_epochs={a.ref_epochs}",
        f"selection.ref_interval={a.ref_interval}", f"selection.top_m={a.top_m}",
        f"selection.high_level={a.high_level}",
    ])
    t = time.time()
    res = train_vlp(cfg, overwrite=True)  # a re-run of the ablation replaces its arms
    wall = time.time() - t
    model = VLPModel.from_pretrained(run / "model")
    emb = TextEmbedder(llm, pooling=cfg.vlp.pooling, cache_dir=out / "text_cache")
    test = evaluate_retrieval(model, corpus / "test.jsonl", cfg.data.clip, text_embedder=emb,
                              cache_dir=str(out / "clip_cache"))
    rec = {"arm": arm, "seed": seed, "test_v2t_r1": test["v2t"]["r1"], "test_v2t_r5": test["v2t"]["r5"],
           "test_t2v_r1": test["t2v"]["r1"], "best_dev_r1": res["best_dev_r1"], "best_step": res["best_step"],
           "steps": res["steps"], "final_loss": res["final_loss"], "train_s": round(wall, 1),
           "selection_s": res["selection_s"]}
    print(json.dumps(rec), flush=True)
    return rec


def ps_groups(run: Path, high_level: float) -> dict:
    from slt_llm.contrastive.analyze import analyze, load_run_trajectories

    traj, texts, epochs, cfg = load_run_trajectories(run)
    st = analyze(traj, high_level=high_level, texts=texts, pairs=0, epochs=epochs)
    return {"shares": st["shares"], "identical_sentence_pairs": st["identical_sentence_pairs"],
            "num_pairs": st["num_pairs"], "positive_mean": st["positive_mean_trajectory"],
            "group_mean": st["group_mean_trajectory"]}


def _ms(xs: list) -> tuple[float, float]:
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=["random", "random_fn", "ps"])
    p.add_argument("--n-train", type=int, default=240)
    p.add_argument("--n-dev", type=int, default=40)
    p.add_argument("--n-test", type=int, default=80)
    p.add_argument("--dup-rate", type=float, default=0.4)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--llm-steps", type=int, default=0)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--ref-epochs", type=int, default=8)
    p.add_argument("--ref-interval", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--top-m", type=int, default=32)
    p.add_argument("--high-level", type=float, default=0.5)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the 2-core machine is shared; one thread avoids oversubscription
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    corpus, llm = _corpus_and_llm(out, a)
    print(f"train sentences: {_train_texts_stats(corpus)}; global batch {a.batch}, {a.epochs} epochs "
          f"(PS: {a.ref_epochs} reference epochs, K={a.ref_epochs // a.ref_interval})", flush=True)
    recs = [run_arm(arm, seed, corpus, llm, out, a) for seed in a.seeds for arm in a.arms]
    (out / "runs.json").write_text(json.dumps(recs, indent=1))

    print("\narm         test v2t R@1 (per seed)          mean +- std    test R@5 mean   train s (mean)")
    summary = {}
    for arm in a.arms:
        rs = [r for r in recs if r["arm"] == arm]
        m, s = _ms([r["test_v2t_r1"] for r in rs])
        m5, _ = _ms([r["test_v2t_r5"] for r in rs])
        summary[arm] = (m, s)
        per_seed = " ".join(f"{r['test_v2t_r1']:6.2f}" for r in rs)
        print(f"{arm:<11} {per_seed:<32} {m:6.2f} +- {s:5.2f}"
              f"   {m5:6.2f}          {statistics.mean(r['train_s'] for r in rs):6.1f}")
    if "ps" in a.arms:
        for seed in a.seeds:
            g = ps_groups(out / f"ps_seed{seed}", a.high_level)
            print(f"PS seed {seed}: groups " + " ".join(f"{k}={100 * v:.1f}%" for k, v in g["shares"].items())
                  + f" of {g['num_pairs']} candidate pairs; identical-sentence pairs per group "
                  + json.dumps(g["identical_sentence_pairs"]) + "; mean s(first->last) "
                  + json.dumps({k: [round(x, 3) for x in (v[0], v[-1])] for k, v in g["group_mean"].items()})
                  + f"; positives {g['positive_mean'][0]:.3f}->{g['positive_mean'][-1]:.3f}")
        ps_sel = statistics.mean(r["selection_s"] for r in recs if r["arm"] == "ps")
        print(f"PS extra cost (K embedding passes + selection): {ps_sel:.1f}s per run")
    base = summary.get("random", (float("nan"), 0))[0]
    ps = summary.get("ps", (float("nan"), 0))
    fn = summary.get("random_fn", (float("nan"), 0))
    ratio = ps[0] / base if base else float("nan")
    print(f"ratio ps/random R@1 = {ratio:.3f}; total wall {time.time() - t0:.0f}s "
          "(2-core CPU shared with other jobs)")
    print(f"RESULT random_r1_mean={base:.2f} random_r1_std={summary.get('random', (0, 0))[1]:.2f} "
          f"ps_r1_mean={ps[0]:.2f} ps_r1_std={ps[1]:.2f} random_fn_r1_mean={fn[0]:.2f} "
          f"random_fn_r1_std={fn[1]:.2f} ps_over_random={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
