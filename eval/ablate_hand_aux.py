"""Ablation: do BeyondGloss's hand auxiliaries help? (stage 1 then stage 2, synthetic corpus)

    .venv/bin/python eval/ablate_hand_aux.py [--out runs/hand_aux] [--seeds 0 1 2 3]

On the synthetic corpus the encoder sees the HAND CROPS only (``use_hands=true``,
``use_keypoints=false``, ``use_full=false``), so whatever the model knows of the
handshape must come from the crop CNN. Four arms, the same seeds, data, budget
and schedule; only stage 1's loss differs:

- ``base``  alignment loss only (GFSLT-VLP-style InfoNCE to the frozen LLM's sentences);
- ``desc``  + 0.5 x description contrastive loss (``slt-llm describe`` descriptions
            from the keypoints, embedded by the same frozen LLM);
- ``hand``  + 0.3 x masked L2 of the encoder's per-frame hand head to the built-in
            keypoint teacher (``slt-llm hand-teacher`` sidecars, D = 63);
- ``both``  + both (BeyondGloss's total loss).

Stage 2 (projector + LoRA on the tiny LLM) starts from each arm's stage-1 encoder
(the hand arms keep their hand head: it is part of the encoder); its final model
translates the TEST split (greedy): BLEU-4 (sacrebleu); stage-1 TEST video-to-text
R@1 from the best-on-DEV stage-1 model. Per arm: mean over seeds and the paired
difference to ``base`` (same seed) with a 95% t interval. The corpus, LLM,
descriptions, sidecars, decoded clips and text embeddings are made once under
--out. Last line ``RESULT base_bleu=... desc_bleu=... hand_bleu=... both_bleu=...
both_minus_base_ci_low=...``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

ARMS = ("base", "desc", "hand", "both")
HEAD_DIM = 63  # the built-in teacher's D (21 points x 3)


def encoder_overrides(a) -> list:
    return [
        f"data.clip.max_frames={a.max_frames}", "data.clip.full_size=32", f"data.clip.hand_size={a.hand_size}",
        f"data.clip.max_fps={a.max_fps}", "encoder.use_hands=true", "encoder.use_full=false",
        "encoder.use_keypoints=false", f"encoder.hand_channels={json.dumps(a.hand_channels)}",
        f"encoder.dim={a.dim}", "encoder.num_layers=1", "encoder.num_heads=4", "encoder.temporal_stride=2",
        "encoder.dropout=0.1",
    ]


def _t975(df: int) -> float:
    """Two-sided 95% Student t critical value."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
             10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
    if df in table:
        return table[df]
    keys = sorted(table)
    return table[max(k for k in keys if k <= df)] if df < 30 else 1.96


def paired(a: list, b: list) -> tuple:
    """Mean of a - b over seeds and its 95% t interval (nan interval with one seed)."""
    d = [x - y for x, y in zip(a, b)]
    m = statistics.mean(d)
    if len(d) < 2:
        return m, float("nan"), float("nan")
    h = _t975(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    return m, m - h, m + h


def prepare(out: Path, a) -> dict:
    """Corpus, tiny LLM, descriptions of the training split, teacher sidecars (made once)."""
    from slt_llm.data.describe import describe_samples, write_descriptions
    from slt_llm.data.hand_teacher import keypoint_teacher, sidecar_path, write_sidecar
    from slt_llm.data.manifest import read_manifest
    from slt_llm.data.pose import read_pose
    from slt_llm.synth.corpus import generate
    from slt_llm.models.tiny_llm import build_tiny_llm, corpus_texts

    corpus, llm = out / "corpus", out / "llm"
    t = time.time()
    if not (corpus / "test.jsonl").is_file():
        generate(corpus, n_train=a.n_train, n_dev=a.n_dev, n_test=a.n_test, seed=0, dup_rate=a.dup_rate,
                 size=a.size, vocab=a.vocab, progress=False)
        print(f"corpus: {a.n_train}/{a.n_dev}/{a.n_test} samples at {a.size} px in {time.time() - t:.0f}s", flush=True)
    if not (llm / "config.json").is_file():
        t = time.time()
        texts, held = corpus_texts(corpus, extra=2000, seed=0)
        build_tiny_llm(llm, family="llama", texts=texts, heldout=held, steps=a.llm_steps, seed=0, progress=False)
        print(f"tiny LLM: {a.llm_steps} pre-training steps in {time.time() - t:.0f}s", flush=True)
    desc = out / "descriptions.jsonl"
    if not desc.is_file():
        t = time.time()
        rows, errors = describe_samples(read_manifest(corpus / "train.jsonl"))
        if errors:
            raise RuntimeError(f"describe failed: {errors[0]}")
        write_descriptions(desc, rows)
        print(f"descriptions: {len(rows)} in {time.time() - t:.1f}s, {len({r['description'] for r in rows})} "
              f"distinct; e.g. {rows[0]['description'][:300]!r}", flush=True)
    hands = out / "hands"
    if not (hands / ".done").is_file():
        t = time.time()
        n = 0
        for s in read_manifest(corpus / "train.jsonl"):
            k = keypoint_teacher(read_pose(s.pose), s.pose)
            write_sidecar(sidecar_path(s.video, hands), k.left, k.right, k.left_mask, k.right_mask, k.fps)
            n += 1
        (hands / ".done").write_text(str(n))
        print(f"teacher sidecars: {n} in {time.time() - t:.1f}s", flush=True)
    return {"corpus": corpus, "llm": llm, "descriptions": desc, "hands": hands}


def arm_overrides(arm: str, paths: dict) -> list:
    o = []
    if arm in ("desc", "both"):
        o += [f"data.descriptions={paths['descriptions']}"]
    if arm in ("hand", "both"):
        o += ["data.hand_teacher=true", f"data.hands_dir={paths['hands']}", f"encoder.hand_head_dim={HEAD_DIM}"]
    return o


def run_arm(arm: str, seed: int, paths: dict, out: Path, a) -> dict:
    from slt_llm import metrics as metrics_mod
    from slt_llm.config import SLTConfig, Stage1Config, load_config
    from slt_llm.contrastive.retrieval import evaluate_retrieval
    from slt_llm.inference.translate import translate
    from slt_llm.models.text_embed import TextEmbedder
    from slt_llm.models.vlp import VLPModel
    from slt_llm.training.stage1 import train_vlp
    from slt_llm.training.stage2 import train_slt

    corpus, llm = paths["corpus"], paths["llm"]
    run1, run2 = out / f"{arm}_seed{seed}" / "stage1", out / f"{arm}_seed{seed}" / "stage2"
    done = out / f"{arm}_seed{seed}" / "result.json"
    if done.is_file():
        rec = json.loads(done.read_text())
        print(json.dumps(rec), flush=True)
        return rec
    enc = encoder_overrides(a) + (["encoder.hand_head_dim=%d" % HEAD_DIM] if arm in ("hand", "both") else [])
    common = [f"data.train_manifest={corpus / 'train.jsonl'}", f"data.cache_dir={out / 'clip_cache'}",
              f"llm.path={llm}", f"train.seed={seed}", "train.save_every=0", "train.progress=false",
              "train.log_every=5"]
    cfg1 = load_config(Stage1Config, None, enc + common + [
        f"data.dev_manifest={corpus / 'dev.jsonl'}", f"vlp.text_cache_dir={out / 'text_cache'}",
        f"train.run_dir={run1}", f"train.epochs={a.epochs1}", f"train.batch_size={a.batch1}",
        "train.eval_every=0", f"selection.selection={a.selection}", "selection.ref_epochs=2",
        "selection.ref_interval=1", "selection.top_m=16", f"vlp.embed_dim={a.dim}", "optim.lr_encoder=1e-3",
        "optim.lr_head=1e-3", "optim.warmup_steps=10"] + [x for x in arm_overrides(arm, paths)
                                                            if not x.startswith("encoder.")])
    t = time.time()
    r1 = train_vlp(cfg1)
    s1 = time.time() - t
    model = VLPModel.from_pretrained(run1 / "model")
    emb = TextEmbedder(str(llm), pooling=cfg1.vlp.pooling, cache_dir=out / "text_cache")
    retr = evaluate_retrieval(model, corpus / "test.jsonl", cfg1.data.clip, text_embedder=emb,
                              cache_dir=str(out / "clip_cache"))
    del model
    cfg2 = load_config(SLTConfig, None, enc + common + [
        "data.dev_manifest=null", f"train.run_dir={run2}", f"train.init_encoder={run1 / 'model'}",
        f"train.epochs={a.epochs2}", f"train.batch_size={a.batch2}", "train.eval_every=0",
        "train.max_new_tokens=24", "llm.use_lora=true", "llm.lora_r=8", "llm.lora_alpha=16",
        f"optim.lr_encoder={a.lr2_encoder}", f"optim.lr_projector={a.lr2}", f"optim.lr_lora={a.lr2}",
        "optim.warmup_steps=20"])
    t = time.time()
    r2 = train_slt(cfg2)
    s2 = time.time() - t
    hyp = out / f"{arm}_seed{seed}" / "test_hyp.jsonl"
    hyp.unlink(missing_ok=True)
    translate(run2 / "model", corpus / "test.jsonl", hyp, batch_size=16, max_new_tokens=24, progress=False)
    m = metrics_mod.evaluate_files(hyp, corpus / "test.jsonl")
    losses = [json.loads(l) for l in (run1 / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in losses if "loss" in r][-1]
    rec = {"arm": arm, "seed": seed, "test_bleu4": round(float(m["bleu4"]), 2),
           "test_v2t_r1": retr["v2t"]["r1"], "best_dev_r1": r1["best_dev_r1"], "stage1_steps": r1["steps"],
           "stage2_steps": r2["steps"], "stage1_loss_last": last.get("loss"),
           "stage1_loss_desc_last": last.get("loss_desc"), "stage1_loss_hand_last": last.get("loss_hand"),
           "stage2_final_loss": r2["final_loss"], "stage1_s": round(s1, 1), "stage2_s": round(s2, 1)}
    done.write_text(json.dumps(rec, indent=1))
    print(json.dumps(rec), flush=True)
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/hand_aux")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-dev", type=int, default=30)
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--dup-rate", type=float, default=0.3)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--vocab", type=int, default=20,
                   help="content words of the grammar (at the full 58, 300 clips leave stage 2 at its BLEU floor)")
    p.add_argument("--llm-steps", type=int, default=300)
    p.add_argument("--max-frames", type=int, default=32)
    p.add_argument("--max-fps", type=float, default=8)
    p.add_argument("--hand-size", type=int, default=24)
    p.add_argument("--hand-channels", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--selection", default="random", choices=["random", "random_fn", "ps"])
    p.add_argument("--epochs1", type=int, default=4)
    p.add_argument("--batch1", type=int, default=32)
    p.add_argument("--epochs2", type=int, default=5)
    p.add_argument("--batch2", type=int, default=16)
    p.add_argument("--lr2", type=float, default=2e-3, help="stage-2 projector and LoRA learning rate")
    p.add_argument("--lr2-encoder", type=float, default=5e-4)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the 2-core machine is shared; one thread avoids oversubscription
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print("settings: " + json.dumps(vars(a)), flush=True)
    paths = prepare(out, a)
    recs = [run_arm(arm, seed, paths, out, a) for seed in a.seeds for arm in a.arms]
    (out / "runs.json").write_text(json.dumps(recs, indent=1))

    by = {arm: sorted((r for r in recs if r["arm"] == arm), key=lambda r: r["seed"]) for arm in a.arms}
    print("\narm    test BLEU-4 per seed           mean    d vs base [95% CI]        test v2t R@1 mean  d R@1 [95% CI]")
    summary = {}
    for arm in a.arms:
        bl = [r["test_bleu4"] for r in by[arm]]
        r1 = [r["test_v2t_r1"] for r in by[arm]]
        summary[arm] = {"bleu": statistics.mean(bl), "r1": statistics.mean(r1)}
        line = f"{arm:<6} {' '.join(f'{x:6.2f}' for x in bl):<30} {summary[arm]['bleu']:6.2f}"
        if arm != "base" and "base" in by:
            d, lo, hi = paired(bl, [r["test_bleu4"] for r in by["base"]])
            dr, lor, hir = paired(r1, [r["test_v2t_r1"] for r in by["base"]])
            summary[arm].update(d_bleu=(d, lo, hi), d_r1=(dr, lor, hir))
            line += f"  {d:+6.2f} [{lo:+6.2f}, {hi:+6.2f}]   {summary[arm]['r1']:6.2f}         {dr:+6.2f} [{lor:+6.2f}, {hir:+6.2f}]"
        else:
            line += f"  {'':26}   {summary[arm]['r1']:6.2f}"
        print(line)
    s1 = statistics.mean(r["stage1_s"] for r in recs)
    s2 = statistics.mean(r["stage2_s"] for r in recs)
    print(f"mean wall per run: stage 1 {s1:.0f}s, stage 2 {s2:.0f}s; total {time.time() - t0:.0f}s "
          "(2-core CPU shared with other jobs)")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    g = lambda arm, k="bleu": summary.get(arm, {}).get(k, float("nan"))  # noqa: E731
    lo = summary.get("both", {}).get("d_bleu", (float("nan"),) * 3)[1]
    print(f"RESULT base_bleu={g('base'):.2f} desc_bleu={g('desc'):.2f} hand_bleu={g('hand'):.2f} "
          f"both_bleu={g('both'):.2f} both_minus_base_ci_low={lo:.2f} base_r1={g('base', 'r1'):.2f} "
          f"both_r1={g('both', 'r1'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
