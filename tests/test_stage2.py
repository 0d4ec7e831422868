"""Stage-2 training in one process with the real pieces (synthetic mp4 + .pose
corpus, tiny Llama + LoRA): resume gives the same losses, metrics.jsonl schema,
the best-on-dev export loads, bad input fails early with one line.

``make_run`` is also used by tests/test_distributed_stage2.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from slt_llm.config import SLTConfig, load_config
from slt_llm.training.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[1]


def make_corpus(tiny_corpus: Path, out: Path) -> Path:
    """train.jsonl of the tiny corpus + one unreadable clip (garbage bytes); dev.jsonl with
    the same unreadable clip as its 2nd row (dev BLEU must count it, as an empty hypothesis)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in (tiny_corpus / "train.jsonl").read_text().splitlines() if x.strip()]
    for r in rows:
        for k in ("video", "pose"):
            if r.get(k):
                r[k] = str((tiny_corpus / r[k]).resolve())
    bad = out / "broken.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 300)
    from slt_llm.training.data_order import epoch_order

    first = int(epoch_order(len(rows) + 1, seed=0, epoch=0)[1])  # 2nd clip of the first global batch
    rows.insert(first, dict(rows[0], id="broken", video=str(bad)))
    (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dev = [json.loads(x) for x in (tiny_corpus / "dev.jsonl").read_text().splitlines() if x.strip()]
    for r in dev:
        for k in ("video", "pose"):
            if r.get(k):
                r[k] = str((tiny_corpus / r[k]).resolve())
    dev.insert(1, dict(dev[0], id="broken_dev", video=str(bad), text="an unreadable dev clip"))
    (out / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    return out


def make_run(corpus: Path, llm: Path, run_dir: Path, cache: Path, **train) -> Path:
    """A tiny stage-2 run config (YAML) -> its path. ``train`` overrides train.* keys."""
    t = dict(run_dir=str(run_dir), batch_size=4, max_steps=4, log_every=1, save_every=2, eval_every=2,
             max_new_tokens=5, dev_limit=3, progress=False, seed=0, keep_checkpoints=3)
    t.update(train)
    cfg = {
        "data": {"train_manifest": str(corpus / "train.jsonl"), "dev_manifest": str(corpus / "dev.jsonl"),
                 "clip": {"fps": 6, "max_frames": 10, "full_size": 32, "hand_size": 16}, "cache_dir": str(cache),
                 "allow_outside_root": True},  # make_corpus points at the tiny corpus's files
        "encoder": {"hand_channels": [8, 8], "full_channels": [8, 8], "keypoint_hidden": 16, "dim": 32,
                    "temporal_stride": 2, "num_layers": 1, "num_heads": 2, "dropout": 0.0},
        "projector": {"type": "mlp", "num_layers": 2},
        "llm": {"path": str(llm), "lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "lora_targets": ["q_proj", "v_proj"]},
        "optim": {"warmup_steps": 1, "lr_encoder": 3e-3, "lr_projector": 3e-3, "lr_lora": 3e-3},
        "train": t,
    }
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_losses(run_dir: Path) -> dict:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_corpus, tiny_llama):
    root = tmp_path_factory.mktemp("stage2")
    return make_corpus(tiny_corpus, root / "corpus"), tiny_llama, root


@pytest.fixture(scope="module")
def full_run(setup):
    """Uninterrupted 4-step run (eval + checkpoint every 2 steps)."""
    from slt_llm.training.stage2 import train_slt

    corpus, llm, root = setup
    cfg = load_config(SLTConfig, str(make_run(corpus, llm, root / "full", root / "cache")))
    summary = train_slt(cfg)
    return summary, root / "full"


def test_full_run_outputs(full_run, setup):
    summary, run_dir = full_run
    assert summary["steps"] == 4 and summary["world_size"] == 1
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert {"step", "loss", "lr", "samples_per_s", "epoch", "tokens", "skipped"} <= set(r)
        assert r["loss"] > 0 and r["samples_per_s"] > 0 and r["tokens"] > 0
    dev = [r for r in rows if "dev_bleu4" in r]
    assert [r["step"] for r in dev] == [2, 4]
    # the unreadable dev clip is counted (dev_limit=3 clips, one of them unreadable), as an empty hypothesis
    assert [(r["dev_n"], r["dev_unreadable"]) for r in dev] == [(3, 1), (3, 1)]
    from slt_llm.metrics import compute_metrics

    preds = [json.loads(x) for x in (run_dir / "model" / "dev_predictions.jsonl").read_text().splitlines()]
    best = next(r for r in dev if r["step"] == summary["best_step"])
    assert best["dev_bleu4"] == pytest.approx(compute_metrics([p["hyp"] for p in preds], [p["ref"] for p in preds])["bleu4"])
    assert summary["best_dev_bleu"] == max(r["dev_bleu4"] for r in dev)
    assert dev[-1]["best_dev_bleu"] == summary["best_dev_bleu"] and "tok:13a" in dev[0]["bleu_signature"]
    # warmup (1 step) then cosine over 4 steps: lr of steps 1..4 = lr * (1/2, 1, 0.75, 0.25)
    assert [r["lr"] for r in rows] == pytest.approx([1.5e-3, 3e-3, 2.25e-3, 0.75e-3])
    # the broken clip was skipped and counted (it sits in the first global batch)
    assert summary["skipped"] >= 1 and rows[-1]["skipped"] == summary["skipped"]
    # config.yaml round trip
    back = load_config(SLTConfig, str(run_dir / "config.yaml"))
    assert back.train.max_steps == 4 and back.encoder.dim == 32
    # checkpoints at 2 and 4 with trainer state
    st = json.loads((run_dir / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    assert st["step"] == 4 and st["best_metric"] == summary["best_dev_bleu"]


def test_qlora_adamw8bit_loss_goes_down_on_repeated_batch(setup, tmp_path):
    """The single-GPU recipe's path (4-bit NF4 base + LoRA, 8-bit AdamW) trains: the same
    global batch every step (batch = whole tiny set), the loss falls."""
    from slt_llm.training.stage2 import train_slt

    corpus, llm, root = setup
    rows = [json.loads(x) for x in (corpus / "train.jsonl").read_text().splitlines()][2:6]
    small = tmp_path / "small"
    small.mkdir()
    (small / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(corpus / "dev.jsonl", small / "dev.jsonl")
    path = make_run(small, llm, tmp_path / "rep", root / "cache", max_steps=8, save_every=0, eval_every=0,
                    log_every=1)
    cfg = load_config(SLTConfig, str(path), ["optim.lr_lora=1e-2", "optim.lr_projector=1e-2", "optim.lr_encoder=1e-2",
                                               "optim.schedule=constant", "data.dev_manifest=null",
                                               "llm.load_in_4bit=true", "llm.bnb_4bit_compute_dtype=float32",
                                               "llm.bnb_4bit_quant_storage=float32", "optim.optimizer=adamw8bit"])
    summary = train_slt(cfg)
    losses = [r["loss"] for r in read_metrics(tmp_path / "rep")]
    assert losses[-1] < 0.8 * losses[0], losses
    # without a dev set the final model is exported, recorded as a QLoRA adapter
    assert summary["model_dir"] and (Path(summary["model_dir"]) / "encoder.safetensors").is_file()
    assert json.loads((Path(summary["model_dir"]) / "meta.json").read_text())["adapter"] == "qlora"


def run_cli(args: list, kill_at: str | None = None, timeout: int = 300):
    """``python -m slt_llm.cli ARGS`` in a real subprocess; with ``kill_at``
    (``NAME:N``, see slt_llm.faults) it SIGKILLs itself at that point."""
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    env.pop("SLT_TEST_KILL_AT", None)
    if kill_at:
        env["SLT_TEST_KILL_AT"] = kill_at
    r = subprocess.run([sys.executable, "-m", "slt_llm.cli", *args], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=timeout)
    want = -signal.SIGKILL if kill_at else 0
    assert r.returncode == want, f"{args} {kill_at}: rc {r.returncode}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_losses(full_run, setup):
    """A real process SIGKILLed mid-epoch (after step 3; last checkpoint step 2),
    then resumed and SIGKILLed again inside the checkpoint write of step 4
    (shards written, completion marker not), then resumed to the end: the same
    losses, learning rates and best dev BLEU as the uninterrupted run."""
    corpus, llm, root = setup
    path = make_run(corpus, llm, root / "killed", root / "cache")
    run_cli(["train", "--config", str(path)], kill_at="step:3")
    ck = root / "killed" / "checkpoints"
    # killed after step 3's update, before its log line and checkpoint
    assert sorted(p.name for p in ck.iterdir()) == ["step_2"] and sorted(train_losses(root / "killed")) == [1, 2]
    run_cli(["train", "--config", str(path), "--resume"], kill_at="ckpt_write:1")
    assert (ck / "step_4").is_dir() and not (ck / "step_4" / "trainer_state.json").exists()  # incomplete
    r = run_cli(["train", "--config", str(path), "--resume"])
    assert "resumed from" in r.stdout and "step_2" in r.stdout  # the incomplete step_4 was not used
    summary = json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1])
    assert summary["steps"] == 4
    full = train_losses(full_run[1])
    resumed = train_losses(root / "killed")
    rows = read_metrics(root / "killed")
    assert [x["step"] for x in rows] == [1, 2, 3, 4]  # the killed attempts' lines beyond step 2 replaced, not repeated
    for s in (1, 2, 3, 4):
        assert resumed[s] == pytest.approx(full[s], rel=1e-5, abs=1e-6), (s, resumed, full)
    assert [x["lr"] for x in rows] == pytest.approx([x["lr"] for x in read_metrics(full_run[1])])
    assert summary["best_dev_bleu"] == full_run[0]["best_dev_bleu"]
    assert (ck / "step_4" / "trainer_state.json").is_file()


def check_export_reproduces_dev(model_dir: Path, run_config: Path, n_dev: int):
    """Reload an exported best-on-dev model and check it reproduces, clip for clip,
    the dev predictions recorded at export time; returns the reloaded model."""
    import torch

    from slt_llm.data.dataset import SLTDataset, collate_clips
    from slt_llm.models.slt_model import SLTModel

    model = SLTModel.from_pretrained(model_dir)
    preds = [json.loads(x) for x in (model_dir / "dev_predictions.jsonl").read_text().splitlines()]
    cfg = load_config(SLTConfig, str(run_config))
    ds = SLTDataset(cfg.data.dev_manifest, cfg.data.clip, allow_outside_root=cfg.data.allow_outside_root)
    assert len(preds) == n_dev and len({p["id"] for p in preds}) == n_dev  # every dev clip once
    unreadable = [p for p in preds if "unreadable" in p]  # scored as empty hypotheses
    assert [(p["id"], p["hyp"]) for p in unreadable] == [("broken_dev", "")]
    preds = [p for p in preds if "unreadable" not in p]
    by_id = {ds.samples[i].id: i for i in range(len(ds))}
    batch = collate_clips([ds[by_id[p["id"]]] for p in preds])
    with torch.no_grad():
        hyps = model.generate(batch, num_beams=1, max_new_tokens=cfg.train.max_new_tokens)
    assert hyps == [p["hyp"] for p in preds]
    assert [p["ref"] for p in preds] == batch["texts"]
    return model


def test_best_export_loads_and_matches_dev_predictions(full_run):
    summary, run_dir = full_run
    check_export_reproduces_dev(Path(summary["model_dir"]), run_dir / "config.yaml", n_dev=3)


def test_bad_inputs_fail_early_with_one_line(setup, tmp_path, capsys):
    from slt_llm.cli import main

    corpus, llm, root = setup
    path = make_run(corpus, llm, tmp_path / "bad", root / "cache")
    broken = tmp_path / "broken_ds.json"
    broken.write_text("{ not json")
    assert main(["train", "--config", str(path), f"train.deepspeed={broken}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("slt-llm train: error: ") and "broken_ds.json" in err and "\n" not in err
    assert not (tmp_path / "bad").exists()  # nothing was started
    assert main(["train", "--config", str(path), "data.train_manifest=null"]) == 2
    assert "data.train_manifest is not set" in capsys.readouterr().err
    assert main(["train", "--config", str(path), "train.batch_size=64"]) == 2
    assert "fewer than one optimizer step" in capsys.readouterr().err


def test_deepspeed_bf16_in_one_process(full_run, setup):
    """`slt-llm train` with train.deepspeed in a plain process (a one-rank group is made),
    bf16 under DeepSpeed (autocast around the forward): same first loss as fp32 within
    bf16 precision; the process group is released afterwards."""
    import torch.distributed as dist

    from slt_llm.models.slt_model import SLTModel
    from slt_llm.training.stage2 import train_slt

    corpus, llm, root = setup
    path = make_run(corpus, llm, root / "bf16", root / "cache", max_steps=1, eval_every=0, save_every=0,
                    deepspeed=str(REPO / "ds_configs" / "zero2.json"), mixed_precision="bf16")
    summary = train_slt(load_config(SLTConfig, str(path), ["data.dev_manifest=null"]))
    assert not dist.is_initialized()
    loss = train_losses(root / "bf16")[1]
    assert loss == pytest.approx(train_losses(full_run[1])[1], rel=2e-2)
    assert (root / "bf16" / "checkpoints" / "step_1" / "trainer_state.json").is_file()
    SLTModel.from_pretrained(summary["model_dir"])


def test_stage2_builds_the_model_on_the_training_device(tiny_corpus, tiny_llama, tmp_path, monkeypatch):
    """train_slt asks SLTModel.build for the accelerator's device, so a QLoRA base is quantised
    there (load_llm's device_map) instead of on CPU and moved afterwards."""
    from slt_llm.training.stage2 import train_slt

    seen = {}

    def spy(cfg, **kw):
        seen.update(kw)
        raise RuntimeError("stop after the build request")

    monkeypatch.setattr("slt_llm.models.slt_model.load_llm", spy)
    cfg = load_config(SLTConfig, str(make_run(make_corpus(tiny_corpus, tmp_path / "c"), tiny_llama, tmp_path / "r",
                                              tmp_path / "cache")), ["llm.load_in_4bit=true"])
    with pytest.raises(RuntimeError, match="stop after the build request"):
        train_slt(cfg)
    assert seen["device"] is not None and str(seen["device"]) == "cpu"
