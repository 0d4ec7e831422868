"""Does SCL-SLT pair selection work? Paired-seed arms on the frozen phoenix profile, in the
paper's joint setting (fine-grained similarity + translation loss), test BLEU-4 the endpoint.

    .venv/bin/python eval/ablate_pair_selection.py --corpus runs/phoenix_full/corpus --llm runs/phoenix_full/llm \
        [--out runs/ablation_phoenix] [--seeds 1,2,3,4,5] [--arms random,ps,oracle,shuffled,static,random_b]
        [--epochs 5] [--jobs 2] [--report]

Corpus: a render of the frozen ``phoenix`` profile (issue 16; refused otherwise): its 7,096
training clips with the paper's global batch of 16 (the paper's batch-to-corpus ratio, and the
profile's near-neighbour density and paraphrases), its 642 test clips for the endpoints.

Arms (one stage-1 run each per seed; the seed fixes model init, dropout and the random batch order,
identical across arms; every arm trains ``--epochs`` x 444 steps):

- ``random``    GFSLT-VLP's random batches. Also every PS arm's REFERENCE RUN: a reference
                checkpoint after every epoch from the first on (K = epochs);
- ``random_b``  the pilot: random batches with another batch order (``train.data_seed``), same
                init: what a change of batches alone moves the endpoint (the seed-to-seed spread
                of a paired difference), from which the number of seeds is computed;
- ``oracle``    random batches + the generator's meaning groups (manifest ``group``: identical
                sentences AND paraphrases) masked as false negatives: the positive control;
- ``ps``        pair selection (paper protocol: a fresh model on the random run's checkpoints),
                log schedule, candidates = EVERY unused sample (``selection.candidates=all``);
- ``shuffled``  the same with delta permuted across pairs (``selection.score=shuffled``): does the
                trajectory carry information beyond the batch composition's spread?
- ``static``    the same ordered by the last reference checkpoint's similarity
                (``selection.score=last``): a static hard-negative curriculum;
- ``hard`` / ``easy``  PS with that schedule (the paper: hard 12.41, log 25.30 BLEU-4);
- ``ps_oracle`` PS (log) with the oracle meaning groups masked as well: a second positive
                control, where false negatives are dense (PS gathers near neighbours into a batch;
                random batches of 16 of 7,096 hold 0.074 same-meaning pairs on average).

Endpoints, of the FINAL model of each run (no checkpoint selection: nothing is chosen on test,
and no dev pass is paid): test BLEU-4 (sacrebleu, 13a) of the jointly trained translation head
(greedy), and test R@1 (mean of video-to-text and text-to-video, fine similarity, unique test
sentences). For X minus random: the paired mean, its 95% t-interval and, when it is not above 0,
two one-sided tests of equivalence within +/-``--margin`` BLEU-4 (90% interval inside the margin).
Go/no-go 1 is recomputed on this setting: Spearman's rho of delta between the reference runs of
the first two seeds over 4M uniform negative pairs.

Scaled for a 2-core CPU (and said in docs/perf/ablation.md): the keypoint stream of the encoder
only (dim 64, one layer), 32 frames at <= 8 fps, the corpus's tiny Llama (0.5M parameters) as
the frozen LLM and translation decoder (no LoRA), ``--epochs`` 5. Everything frozen is cached
under --out (clips, text token states, each reference run's dense similarities); a finished
(arm, seed) keeps its record and is never rerun, so the script can be stopped and continued.
Last line::

    RESULT delta_rank_corr=... oracle_minus_random_bleu=... oracle_ci_low=... ps_minus_random_bleu=...
    ps_ci_low=... ps_ci_high=... shuffled_minus_random_bleu=... static_minus_random_bleu=...
    hard_bleu=... log_bleu=... seeds=... minutes=...
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
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[1]
MODEL = [
    "data.clip.max_frames=32", "data.clip.full_size=16", "data.clip.hand_size=16", "data.clip.max_fps=8",
    "data.preload=true", "data.num_workers=0", "encoder.use_hands=false", "encoder.use_full=false",
    "encoder.keypoint_hidden=128", "encoder.dim=64", "encoder.num_layers=1", "encoder.num_heads=4",
    "vlp.embed_dim=64",
]
JOINT = ["vlp.similarity=fine", "vlp.translation_weight=1.0", "llm.use_lora=false"]
TRAIN = ["optim.lr_encoder=1e-3", "optim.lr_head=1e-3", "optim.warmup_steps=100", "train.eval_every=0",
         "train.save_every=0", "train.log_every=100", "train.progress=false"]
CORE_ARMS = ("random", "oracle", "ps", "shuffled", "static")
ALL_ARMS = CORE_ARMS + ("random_b", "hard", "easy", "ps_oracle")
PS_ARMS = ("ps", "shuffled", "static", "hard", "easy", "ps_oracle")
# two-sided 97.5% and one-sided 95% / 80% quantiles of Student's t, df = 1..30 (no scipy here)
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]
T95 = [6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771, 1.761,
       1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706, 1.703, 1.701,
       1.699, 1.697]


def _t(table, df: int) -> float:
    return table[df - 1] if 1 <= df <= len(table) else (1.96 if table is T975 else 1.645)


def paired_ci(diffs: list) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% t-interval of a paired mean difference."""
    n = len(diffs)
    m = statistics.mean(diffs) if diffs else float("nan")
    if n < 2:
        return m, float("nan"), float("nan")
    half = _t(T975, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return m, m - half, m + half


def tost(diffs: list, margin: float) -> tuple[float, float, bool]:
    """Two one-sided tests at 5%: (90% interval low, high, equivalent within +/-margin)."""
    n = len(diffs)
    if n < 2:
        return float("nan"), float("nan"), False
    m, half = statistics.mean(diffs), _t(T95, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return m - half, m + half, (m - half > -margin and m + half < margin)


def seeds_needed(sd: float, effect: float, limit: int = 1000) -> int:
    """The smallest number n of paired seeds with ((t_{0.975, n-1} + z_{0.80}) sd / effect)^2 <= n:
    a two-sided 5% test with about 80% power for ``effect`` given the paired-difference SD ``sd``."""
    if not sd or not math.isfinite(sd):
        return 2
    for n in range(2, limit + 1):
        if ((_t(T975, n - 1) + 0.8416) * sd / effect) ** 2 <= n:
            return n
    return limit


def spearman(a, b) -> float:
    import numpy as np

    def rank(x):
        r = np.empty(len(x), np.float64)
        r[np.argsort(x, kind="stable")] = np.arange(len(x), dtype=np.float64)
        return r

    return float(np.corrcoef(rank(np.asarray(a)), rank(np.asarray(b)))[0, 1])


def make_trainer_cls(groups: list, out_hyp: Path, max_new_tokens: int, holder: dict):
    """A ``Stage1Trainer`` that skips the per-epoch dev pass, counts the oracle false-negative
    pairs each epoch's batches hold, and at the end scores the final model on the "dev"
    manifest (here: TEST) for retrieval (``holder["test"]``) and translation (``out_hyp``);
    ``holder["fn"]``: the counts."""
    import numpy as np
    import torch

    from slt_llm.training.stage1 import Stage1Trainer

    g = np.asarray(groups)

    class AblationTrainer(Stage1Trainer):
        fn_pairs_per_batch: list = []

        def sampler_for_epoch(self, epoch: int):
            batches, fn, phase = super().sampler_for_epoch(epoch)
            if self.world == 1 and len(batches):
                b = np.asarray(batches)
                same = (g[b][:, :, None] == g[b][:, None, :]).sum() - b.size
                self.fn_pairs_per_batch = self.fn_pairs_per_batch + [round(float(same) / 2 / len(b), 4)]
            return batches, fn, phase

        def end_epoch(self, num_batches, last_eval):
            super().end_epoch(num_batches, self.state.step)  # reference exports only; no dev pass

        def finish(self):
            from slt_llm.contrastive.reference import clip_loader
            from slt_llm.data.dataset import batch_to_device

            holder.update(test=self.evaluate(), fn=self.fn_pairs_per_batch)
            m = self.accelerator.unwrap_model(self.model).translation
            n, bs = len(self.dev_ds), 64
            hyps = {}
            with torch.no_grad():
                for batch in clip_loader(self.dev_ds, [list(range(s, min(s + bs, n))) for s in range(0, n, bs)], 0):
                    ids = batch["ids"]
                    out = m.generate(batch_to_device(batch, self.device), max_new_tokens=max_new_tokens)
                    hyps.update(zip(ids, out))
            self.hyps = hyps
            out_hyp.write_text("".join(json.dumps({"id": k, "translation": v}) + "\n" for k, v in hyps.items()))
            return super().finish()

    return AblationTrainer


def arm_overrides(arm: str, seed: int, out: Path, a) -> list:
    ref = [f"selection.ref_epochs={a.epochs}", "selection.ref_interval=1"]
    ps = ["selection.selection=ps", "selection.protocol=separate", "selection.candidates=all",
          f"selection.reference_run={out / f'random_seed{seed}'}"]
    return {
        "random": ["selection.selection=random", *ref],
        "random_b": ["selection.selection=random", "selection.ref_epochs=0", f"train.data_seed={seed + 1000}"],
        "oracle": ["selection.selection=random_fn", f"selection.fn_file={out / 'oracle_groups.json'}",
                   "selection.ref_epochs=0"],
        "ps": [*ps, "selection.schedule=log", "selection.score=delta"],
        "shuffled": [*ps, "selection.schedule=log", "selection.score=shuffled"],
        "static": [*ps, "selection.schedule=log", "selection.score=last"],
        "hard": [*ps, "selection.schedule=hard", "selection.score=delta"],
        "easy": [*ps, "selection.schedule=easy", "selection.score=delta"],
        "ps_oracle": [*ps, "selection.schedule=log", "selection.score=delta",
                      f"selection.fn_file={out / 'oracle_groups.json'}"],
    }[arm]


def run_arm(arm: str, seed: int, out: Path, a) -> dict:
    import sacrebleu
    import torch

    from slt_llm.config import Stage1Config, load_config
    from slt_llm.training.stage1 import train_vlp

    torch.set_num_threads(a.threads)
    run = out / f"{arm}_seed{seed}"
    rec_path = out / "records" / f"{arm}_seed{seed}.json"
    if rec_path.is_file():
        return json.loads(rec_path.read_text())
    corpus = Path(a.corpus)
    cfg = load_config(Stage1Config, str(ROOT / "slt_llm" / "configs" / "demo_stage1.yaml"), MODEL + JOINT + TRAIN + [
        f"data.train_manifest={corpus / 'train.jsonl'}", f"data.dev_manifest={corpus / 'test.jsonl'}",
        f"data.cache_dir={out / 'clip_cache'}", f"llm.path={a.llm}", f"vlp.text_cache_dir={out / 'text_cache'}",
        f"train.run_dir={run}", f"train.seed={seed}", f"train.epochs={a.epochs}", f"train.batch_size={a.batch}",
        *arm_overrides(arm, seed, out, a), *getattr(a, "overrides", [])])
    train_groups = [json.loads(x)["group"] for x in (corpus / "train.jsonl").read_text().splitlines() if x.strip()]
    hyp_path = out / "records" / f"{arm}_seed{seed}.test_translations.jsonl"
    hyp_path.parent.mkdir(parents=True, exist_ok=True)
    holder: dict = {}
    t = time.time()
    res = train_vlp(cfg, overwrite=True, trainer_cls=make_trainer_cls(train_groups, hyp_path, a.max_new_tokens, holder))
    wall = time.time() - t
    rows = {json.loads(x)["id"]: json.loads(x)["translation"] for x in hyp_path.read_text().splitlines() if x.strip()}
    refs = [json.loads(x) for x in (corpus / "test.jsonl").read_text().splitlines() if x.strip()]
    hyps = [rows.get(r["id"], "") for r in refs]
    bleu = sacrebleu.corpus_bleu(hyps, [[r["text"] for r in refs]], tokenize="13a").score
    test = holder["test"]
    rec = {"arm": arm, "seed": seed, "test_bleu4": bleu, "v2t_r1": test["v2t"]["r1"], "t2v_r1": test["t2v"]["r1"],
           "r1": 0.5 * (test["v2t"]["r1"] + test["t2v"]["r1"]), "steps": res["steps"],
           "final_loss": res["final_loss"], "train_s": round(wall, 1), "selection_s": res["selection_s"],
           "oracle_fn_pairs_per_batch": holder["fn"]}
    rec_path.write_text(json.dumps(rec))
    if arm != "random":  # only the reference runs keep their folder (checkpoints); the rest is records
        import shutil

        for d in ("model", "reference"):
            shutil.rmtree(run / d, ignore_errors=True)
    print(json.dumps(rec), flush=True)
    return rec


def deps_of(arm: str, seed: int) -> list:
    if arm == "ps":
        return [("random", seed)]
    if arm in PS_ARMS:  # after ps: the reference run's dense similarities exist (computed once)
        return [("ps", seed)]
    return []


def _task(arm: str, seed: int, out: Path, a) -> tuple[dict, float]:
    t = time.time()
    return run_arm(arm, seed, out, a), time.time() - t


def run_plan(plan: list, out: Path, a) -> dict:
    """Run (arm, seed) tasks ``a.jobs`` at a time in spawned processes, a task after its deps."""
    results = {}
    todo = []
    for arm, seed in plan:
        p = out / "records" / f"{arm}_seed{seed}.json"
        if p.is_file():
            results[(arm, seed)] = json.loads(p.read_text())
        elif not a.report:
            todo.append((arm, seed))
    if not todo:
        return results
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    running: dict = {}
    with ProcessPoolExecutor(max_workers=a.jobs, mp_context=mp.get_context("spawn")) as pool:
        while todo or running:
            ready = [t for t in todo if all(d in results or d not in plan for d in deps_of(*t))]
            for task in ready[: a.jobs - len(running)]:
                todo.remove(task)
                running[pool.submit(_task, *task, out, a)] = task
            if not running:
                raise SystemExit(f"ablation: tasks wait for runs that are not planned: {todo}")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                task = running.pop(f)
                try:
                    results[task], dt = f.result()
                    print(f"[{time.strftime('%H:%M:%S')}] {task[0]} seed {task[1]}: BLEU-4 "
                          f"{results[task]['test_bleu4']:.2f} R@1 {results[task]['r1']:.2f} in {dt:.0f}s", flush=True)
                except Exception as e:  # a failed run is reported and the plan goes on
                    print(f"ablation: {task[0]} seed {task[1]} failed: {type(e).__name__}: {e}", flush=True)
                    results[task] = None
    return results


def prepare(out: Path, a) -> None:
    """Oracle groups, and the text caches filled once here (the workers only read them)."""
    from slt_llm.contrastive.retrieval import unique_sentences
    from slt_llm.models.text_embed import TextEmbedder, TokenTextEmbedder

    corpus = Path(a.corpus)
    rows = [json.loads(x) for x in (corpus / "train.jsonl").read_text().splitlines() if x.strip()]
    (out / "oracle_groups.json").write_text(json.dumps({r["id"]: r["group"] for r in rows}))
    test = [json.loads(x)["text"] for x in (corpus / "test.jsonl").read_text().splitlines() if x.strip()]
    uniq, _ = unique_sentences([r["text"] for r in rows])
    texts = uniq + list(dict.fromkeys(test))
    TextEmbedder(a.llm, pooling="mean", dtype="float32", cache_dir=out / "text_cache").embed(texts)
    TokenTextEmbedder(a.llm, dtype="float32", cache_dir=out / "text_cache").embed(texts)


def go_no_go_1(out: Path, seeds: list, pairs: int = 4_000_000):
    """Spearman of delta (z_last - z_first) between the reference runs of two seeds."""
    import numpy as np

    from slt_llm.contrastive.dense import load_similarities, standardize

    paths = [out / f"random_seed{s}" / "reference" / "dense_similarity.npz" for s in seeds]
    paths = [p for p in paths if p.is_file()][:2]
    if len(paths) < 2:
        return float("nan")
    ds = []
    rng = np.random.default_rng(0)
    i = j = None
    for p in paths:
        f, l = load_similarities(p)
        if i is None:
            n = f.shape[0]
            i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
            keep = i != j
            i, j = i[keep], j[keep]
        ds.append(standardize(l)[i, j] - standardize(f)[i, j])
    return spearman(ds[0], ds[1])


def fn_diagnosis(out: Path, corpus: Path, seed: int, top_m: int = 32) -> dict:
    """Where the oracle false negatives sit in one reference run's dense scores: ROC AUC of
    delta, of z_last and of z_first for telling same-meaning pairs from the rest, among each
    anchor's top-M pairs by max(z_first, z_last) (the pairs a curriculum actually moves)."""
    import numpy as np

    from slt_llm.contrastive.dense import load_similarities, standardize

    p = out / f"random_seed{seed}" / "reference" / "dense_similarity.npz"
    if not p.is_file():
        return {}
    f, l = load_similarities(p)
    z0, zl = standardize(f), standardize(l)
    del f, l
    rows = [json.loads(x) for x in (corpus / "train.jsonl").read_text().splitlines() if x.strip()]
    g = np.array([r["group"] for r in rows])
    n = len(g)
    key = np.maximum(z0, zl)
    np.fill_diagonal(key, -np.inf)
    cand = np.argpartition(-key, top_m, axis=1)[:, :top_m]
    del key
    r_, c_ = np.repeat(np.arange(n), top_m), cand.reshape(-1)
    same = g[r_] == g[c_]

    def auc(x, y):
        order = np.argsort(x, kind="stable")
        rank = np.empty(len(x))
        rank[order] = np.arange(1, len(x) + 1)
        n1, n0 = int(y.sum()), int((~y).sum())
        return float((rank[y].sum() - n1 * (n1 + 1) / 2) / max(1, n1 * n0))

    d = zl[r_, c_] - z0[r_, c_]
    return {"seed": seed, "top_m": top_m, "fn_candidates": int(same.sum()), "fn_share": float(same.mean()),
            "auc_delta": auc(d, same), "auc_zlast": auc(zl[r_, c_], same), "auc_zfirst": auc(z0[r_, c_], same)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="runs/phoenix_full/corpus", help="a render of the frozen phoenix profile")
    p.add_argument("--llm", default="runs/phoenix_full/llm", help="the corpus's tiny LLM (frozen)")
    p.add_argument("--out", default="runs/ablation_phoenix")
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--arms", default=",".join(CORE_ARMS + ("random_b",)))
    p.add_argument("--extra-arms", default="hard,easy", help="run after the others, on --extra-seeds")
    p.add_argument("--extra-seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=16, help="global batch (the paper's 16 of 7,096)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--margin", type=float, default=1.0, help="equivalence margin (BLEU-4) of the TOST")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--report", action="store_true", help="train nothing: report the finished runs")
    a = p.parse_args(argv)
    t0 = time.time()
    out = Path(a.out)
    (out / "records").mkdir(parents=True, exist_ok=True)
    from slt_llm.synth.corpus import read_records
    from slt_llm.synth.profiles import PHOENIX_SEED, PHOENIX_TEXT_HASH, text_hash

    h = text_hash(read_records(a.corpus))
    if h != PHOENIX_TEXT_HASH:
        raise SystemExit(f"{a.corpus} is not the frozen phoenix profile (text_hash {h[:12]}..., frozen "
                         f"{PHOENIX_TEXT_HASH[:12]}...)")
    print(f"profile_seed={PHOENIX_SEED} profile_hash={h}", flush=True)
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    arms = [x for x in a.arms.split(",") if x]
    extra = [x for x in a.extra_arms.split(",") if x]
    for x in arms + extra:
        if x not in ALL_ARMS:
            raise SystemExit(f"unknown arm {x} (known: {', '.join(ALL_ARMS)})")
    if not a.report:
        prepare(out, a)
    order = ["random"] + [x for x in arms if x != "random"]
    plan = [(x, s) for s in seeds for x in order if x != "random_b"]
    plan += [("random_b", s) for s in seeds if "random_b" in order]
    plan += [(x, s) for x in extra for s in seeds[: a.extra_seeds]]
    results = run_plan(plan, out, a)
    by = {k: v for k, v in results.items() if v}
    (out / "runs.json").write_text(json.dumps(list(by.values()), indent=1))

    print("\narm        seeds  test BLEU-4  (worst)  R@1     minus random BLEU-4: paired mean [95% CI]  "
          "TOST 90% [lo, hi]  R@1 diff  oracle-FN pairs/batch by epoch  train s")
    summary = {}
    for arm in order + extra:
        ss = [s for s in seeds if (arm, s) in by]
        if not ss:
            continue
        rs = [by[(arm, s)] for s in ss]
        paired = [s for s in ss if ("random", s) in by]
        d = [by[(arm, s)]["test_bleu4"] - by[("random", s)]["test_bleu4"] for s in paired]
        dr = [by[(arm, s)]["r1"] - by[("random", s)]["r1"] for s in paired]
        m, lo, hi = paired_ci(d)
        tl, th, eq = tost(d, a.margin)
        rm, rlo, rhi = paired_ci(dr)
        fnb = [statistics.mean(x) for x in zip(*[r["oracle_fn_pairs_per_batch"] for r in rs])] if rs[0][
            "oracle_fn_pairs_per_batch"] else []
        summary[arm] = dict(bleu=statistics.mean(r["test_bleu4"] for r in rs),
                            worst=min(r["test_bleu4"] for r in rs), r1=statistics.mean(r["r1"] for r in rs),
                            diff=m, lo=lo, hi=hi, tost_lo=tl, tost_hi=th, equivalent=eq, n=len(rs),
                            r1_diff=rm, r1_lo=rlo, r1_hi=rhi, sd_diff=statistics.stdev(d) if len(d) > 1 else float("nan"),
                            fn_pairs_per_batch=fnb)
        diff = (f"{m:+7.2f} [{lo:+6.2f}, {hi:+6.2f}]{'':>16}[{tl:+5.2f}, {th:+5.2f}]{' eq' if eq else '   '}  "
                f"{rm:+6.2f}" if arm != "random" else f"{'(the baseline)':<58}")
        print(f"{arm:<10} {len(rs):>5}  {summary[arm]['bleu']:10.2f}  {summary[arm]['worst']:7.2f}  "
              f"{summary[arm]['r1']:6.2f}  {diff}  "
              f"{' '.join(f'{x:.3f}' for x in fnb):<30}  {statistics.mean(r['train_s'] for r in rs):7.0f}")
    contrasts = {}
    for x, y in (("ps", "shuffled"), ("ps", "static"), ("ps_oracle", "ps"), ("ps", "hard"), ("ps", "easy")):
        ss = [s for s in seeds if (x, s) in by and (y, s) in by]
        if len(ss) >= 2:
            m, lo, hi = paired_ci([by[(x, s)]["test_bleu4"] - by[(y, s)]["test_bleu4"] for s in ss])
            rm, rlo, rhi = paired_ci([by[(x, s)]["r1"] - by[(y, s)]["r1"] for s in ss])
            contrasts[f"{x}-{y}"] = dict(n=len(ss), bleu=m, lo=lo, hi=hi, r1=rm, r1_lo=rlo, r1_hi=rhi)
            print(f"{x} minus {y} ({len(ss)} seeds): BLEU-4 {m:+.2f} [{lo:+.2f}, {hi:+.2f}], "
                  f"R@1 {rm:+.2f} [{rlo:+.2f}, {rhi:+.2f}]")
    need = None
    if "random_b" in summary and math.isfinite(summary["random_b"]["sd_diff"]):
        need = seeds_needed(summary["random_b"]["sd_diff"], 1.5)
        print(f"pilot (random_b - random): paired SD {summary['random_b']['sd_diff']:.2f} BLEU-4 -> {need} paired "
              f"seeds resolve 1.5 BLEU-4 (5% two-sided, 80% power)")
    rho = go_no_go_1(out, seeds)
    print(f"go/no-go 1 in this setting: Spearman of delta between the reference runs of two seeds {rho:.4f}")
    diag = fn_diagnosis(out, Path(a.corpus), seeds[0]) if a.report else {}
    if diag:
        print(f"oracle false negatives among the top-{diag['top_m']} pairs of seed {diag['seed']}'s reference run: "
              f"{diag['fn_candidates']} ({100 * diag['fn_share']:.1f}%); ROC AUC delta {diag['auc_delta']:.3f}, "
              f"z_last {diag['auc_zlast']:.3f}, z_first {diag['auc_zfirst']:.3f}")
    minutes = (time.time() - t0) / 60
    trains = sum(r["train_s"] for r in by.values()) / 60
    print(f"sum of run walls {trains:.1f} min; this invocation {minutes:.1f} min")
    (out / "summary.json").write_text(json.dumps({"summary": summary, "contrasts": contrasts, "fn_diagnosis": diag, "seeds_needed": need, "delta_rank_corr": rho,
                                                  "run_minutes": trains}, indent=1))
    g = lambda arm, k: summary.get(arm, {}).get(k, float("nan"))  # noqa: E731
    n_seeds = min((g(x, "n") for x in CORE_ARMS if x in summary), default=0)
    print(f"RESULT delta_rank_corr={rho:.4f} oracle_minus_random_bleu={g('oracle', 'diff'):.2f} "
          f"oracle_ci_low={g('oracle', 'lo'):.2f} ps_minus_random_bleu={g('ps', 'diff'):.2f} "
          f"ps_ci_low={g('ps', 'lo'):.2f} ps_ci_high={g('ps', 'hi'):.2f} "
          f"shuffled_minus_random_bleu={g('shuffled', 'diff'):.2f} static_minus_random_bleu={g('static', 'diff'):.2f} "
          f"hard_bleu={g('hard', 'bleu'):.2f} log_bleu={g('ps', 'bleu'):.2f} seeds={n_seeds} minutes={trains / a.jobs:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
