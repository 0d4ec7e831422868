"""Stage 1 end to end on the tiny synthetic corpus: both arms learn, PS builds its reference
checkpoints + trajectories, the best model reloads and retrieves, a 2-process DeepSpeed ZeRO-2
run matches one process, analyze writes a readable PNG + JSON, bad input fails early."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from slt_llm.config import Stage1Config, load_config, save_config
from slt_llm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "data.clip.max_frames=12", "data.clip.full_size=32", "data.clip.hand_size=24", "data.clip.max_fps=6",
    "encoder.hand_channels=[8,16]", "encoder.full_channels=[8,16]", "encoder.keypoint_hidden=32",
    "encoder.dim=32", "encoder.num_layers=1", "encoder.num_heads=2", "encoder.temporal_stride=2",
    "encoder.dropout=0.0", "vlp.embed_dim=32", "optim.warmup_steps=2", "optim.lr_encoder=2e-3",
    "optim.lr_head=2e-3", "train.batch_size=8", "train.log_every=1", "train.save_every=0",
    "train.eval_every=0", "train.progress=false", "selection.ref_epochs=2", "selection.ref_interval=1",
    "selection.top_m=8",
]


def _cfg(corpus, llm, run, *extra) -> Stage1Config:
    return load_config(Stage1Config, None, TINY + [
        f"data.train_manifest={corpus / 'train.jsonl'}", f"data.dev_manifest={corpus / 'dev.jsonl'}",
        f"data.cache_dir={corpus / 'clip_cache'}", f"llm.path={llm}", f"train.run_dir={run}",
        f"vlp.text_cache_dir={corpus / 'text_cache'}", *extra])


def _losses(run):
    return [r for r in map(json.loads, (Path(run) / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.fixture(scope="module")
def ps_run(tiny_corpus, tiny_llama, tmp_path_factory):
    from slt_llm.training.stage1 import train_vlp

    run = tmp_path_factory.mktemp("vlp_ps")
    res = train_vlp(_cfg(tiny_corpus, tiny_llama, run, "selection.selection=ps", "selection.protocol=continuation",
                         "train.epochs=4", "train.save_every=8", "train.keep_checkpoints=3"))
    return run, res


def test_ps_run_learns_and_saves(ps_run):
    run, res = ps_run
    rows = _losses(run)
    assert [r["step"] for r in rows] == list(range(1, 13))  # 24 samples / 8 = 3 steps x 4 epochs
    assert {r["phase"] for r in rows[:6]} == {"reference"} and {r["phase"] for r in rows[6:]} == {"ps"}
    for key in ("lr", "samples_per_s", "temperature", "epoch"):
        assert key in rows[0]
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first - 0.1, (first, last)
    refs = sorted(p.name for p in (run / "reference").iterdir() if p.is_dir())
    assert refs == ["ref_00", "ref_01"]
    assert (run / "reference" / "trajectories.npz").is_file()
    assert res["selection_s"] > 0 and res["steps"] == 12 and res["best_dev_r1"] is not None
    dev = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "dev_v2t_r1" in r]
    assert len(dev) == 4  # one dev evaluation per epoch
    assert max(r["dev_v2t_r1"] for r in dev) == pytest.approx(res["best_dev_r1"])


def test_model_folder_round_trip_and_retrieval(ps_run, tiny_corpus, tmp_path):
    from slt_llm.cli import main
    from slt_llm.contrastive.retrieval import evaluate_retrieval, with_misses
    from slt_llm.models.vlp import VLPModel

    run, res = ps_run
    model = VLPModel.from_pretrained(run / "model")
    assert {p.name for p in (run / "model").iterdir()} >= {"vlp_config.yaml", "encoder.safetensors",
                                                           "heads.safetensors"}
    again = VLPModel.from_pretrained(run / "model")
    r1 = evaluate_retrieval(model, tiny_corpus / "dev.jsonl", model.clip_cfg)
    r2 = evaluate_retrieval(again, tiny_corpus / "dev.jsonl", model.clip_cfg)
    assert r1 == r2 and r1["v2t"]["r1"] == pytest.approx(res["best_dev_r1"])
    out = tmp_path / "retr.json"
    assert main(["retrieval", "--model", str(run / "model"), "--manifest", str(tiny_corpus / "test.jsonl"),
                 "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert set(got["v2t"]) == {"r1", "r5", "r10"} and got["num_videos"] == 6


def test_resume_after_reference_phase_continues_identically(ps_run, tiny_corpus, tiny_llama, tmp_path):
    """Interrupted at step 8 (inside the PS phase): resuming rebuilds the selector from the saved
    trajectories and reproduces the uninterrupted run's losses and best dev R@1."""
    import shutil

    from slt_llm.training.stage1 import train_vlp

    run, res = ps_run
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    shutil.rmtree(cut / "checkpoints" / "step_12")
    shutil.rmtree(cut / "model")
    again = train_vlp(_cfg(tiny_corpus, tiny_llama, cut, "selection.selection=ps", "selection.protocol=continuation",
                           "train.epochs=4", "train.save_every=8", "train.keep_checkpoints=3"), resume=True)
    full, resumed = _losses(run), _losses(cut)
    assert [r["step"] for r in resumed] == list(range(1, 13))
    for a, b in zip(full, resumed):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
    assert again["best_dev_r1"] == pytest.approx(res["best_dev_r1"])


def test_analyze_writes_png_and_json(ps_run, tmp_path):
    from PIL import Image

    from slt_llm.cli import main

    run, _ = ps_run
    png, js = tmp_path / "traj.png", tmp_path / "stats.json"
    assert main(["analyze", "--run", str(run), "--out", str(png), "--json", str(js), "--pairs", "50"]) == 0
    stats = json.loads(js.read_text())
    assert sum(stats["shares"].values()) == pytest.approx(1.0)
    assert sum(stats["counts"].values()) == stats["num_pairs"] > 0 and stats["K"] == 2
    assert all(len(s["sims"]) == 2 for s in stats["sampled"])
    w, h = Image.open(png).size
    assert w > 1000 and h > 400


def test_random_arm_learns_and_matches_ps_reference_phase(ps_run, tiny_corpus, tiny_llama, tmp_path):
    from slt_llm.training.stage1 import train_vlp

    run_ps, _ = ps_run
    res = train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "rnd", "selection.selection=random",
                         "train.epochs=4"))
    rows = _losses(tmp_path / "rnd")
    assert res["steps"] == 12 and {r["phase"] for r in rows} == {"random"}
    assert sum(r["loss"] for r in rows[-3:]) < sum(r["loss"] for r in rows[:3]) - 0.3
    # the PS reference phase IS the random baseline (same seed, batches, schedule, no mask)
    ps_rows = _losses(run_ps)
    for a, b in zip(rows[:6], ps_rows[:6]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    # the random arm keeps reference checkpoints too (for analyze)
    assert (tmp_path / "rnd" / "reference" / "ref_01" / "encoder.safetensors").is_file()


def test_separate_reference_protocol(ps_run, tiny_corpus, tiny_llama, tmp_path):
    """The paper's protocol (the default): a random-batch reference run with K checkpoints, then
    a FRESH model with pair selection from its first epoch. A target run that reuses those
    checkpoints through selection.reference_run is the same run (same losses)."""
    import numpy as np

    from slt_llm.contrastive.trajectories import Trajectories, ids_hash
    from slt_llm.data.manifest import read_manifest
    from slt_llm.training.stage1 import train_vlp

    run = tmp_path / "sep"
    res = train_vlp(_cfg(tiny_corpus, tiny_llama, run, "train.epochs=2", "selection.protocol=separate"))
    ref = run / "reference_run"
    assert sorted(p.name for p in (ref / "reference").iterdir() if p.is_dir()) == ["ref_00", "ref_01"]
    ref_rows = _losses(ref)
    assert len(ref_rows) == 6 and {r["phase"] for r in ref_rows} == {"random"}
    # the reference run is the random arm (its first epoch = the continuation run's reference phase)
    for a, b in zip(ref_rows[:3], _losses(ps_run[0])[:3]):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    rows = _losses(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and {r["phase"] for r in rows} == {"ps"}
    assert res["protocol"] == "separate" and res["reference_s"] > 0 and res["selection_s"] > 0
    assert not (run / "reference" / "ref_00").exists()  # the target saves no reference checkpoints
    ids = [s.id for s in read_manifest(tiny_corpus / "train.jsonl")]
    traj = Trajectories.load(run / "reference" / "trajectories.npz", expect_ids_hash=ids_hash(ids))
    assert traj.num_checkpoints == 2 and np.isfinite(traj.neg_std).all()
    # reusing the reference run: no reference training, identical target run
    again = train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "sep2", "train.epochs=2", "selection.protocol=separate",
                           f"selection.reference_run={ref}"))
    assert again["reference_s"] == 0 and again["reference_run"] == str(ref)
    for a, b in zip(rows, _losses(tmp_path / "sep2")):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-6)
    with pytest.raises(ConfigError, match="reference checkpoint"):
        train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "sep3", "selection.protocol=separate", f"selection.reference_run={tmp_path}"))


def test_joint_translation_loss(tiny_corpus, tiny_llama, tmp_path):
    """vlp.translation_weight > 0: loss = contrastive + w * token cross-entropy of a projector +
    LoRA LLM sharing the encoder; gradients reach the encoder, the heads, the projector and LoRA
    (never the frozen base LLM); stage 1 trains and logs both parts."""
    from slt_llm.contrastive.loss import SelectiveInfoNCE
    from slt_llm.data.dataset import SLTDataset, collate_clips
    from slt_llm.models.text_embed import TextEmbedder
    from slt_llm.contrastive.objective import Stage1Objective
    from slt_llm.training.stage1 import build_stage1_model, train_vlp

    extra = ["vlp.translation_weight=0.5", "llm.lora_targets=[q_proj,v_proj]", "llm.lora_dropout=0.0"]
    cfg = _cfg(tiny_corpus, tiny_llama, tmp_path / "unit", *extra)
    ds = SLTDataset(tiny_corpus / "train.jsonl", cfg.data.clip, cache_dir=cfg.data.cache_dir)
    batch = collate_clips([ds[i] for i in range(6)])
    t_emb = TextEmbedder(tiny_llama).embed(batch["texts"])
    model = build_stage1_model(cfg, int(t_emb.shape[1]))
    out = model(batch, t_emb)
    tl = out.translation["loss"]
    # one encoder pass serves both terms: the same loss as the translation head run on its own
    assert float(tl.detach()) == pytest.approx(float(model.translation(batch)["loss"].detach()), rel=1e-6)
    c = SelectiveInfoNCE()(out.video, out.text, out.scale)
    total, parts = Stage1Objective(translation_weight=0.5)(out, batch)
    assert float(total.detach()) == pytest.approx(float(c.detach()) + 0.5 * float(tl.detach()), rel=1e-6)
    assert set(parts) == {"loss_align", "loss_translation"}
    total.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for prefix in ("encoder.", "video_head.", "text_head.", "translation.projector."):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix)), prefix
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_" in n)
    assert all(not p.requires_grad for n, p in model.translation.llm.named_parameters() if "lora_" not in n)
    # in stage 1: both parts logged, the optimized loss is their weighted sum
    train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "run", *extra, "selection.selection=random",
                   "train.epochs=1", "data.dev_manifest=null"))
    rows = _losses(tmp_path / "run")
    assert len(rows) == 3
    for r in rows:
        assert r["loss"] == pytest.approx(r["loss_align"] + 0.5 * r["loss_translation"], rel=1e-5)


@pytest.fixture(scope="module")
def fine_run(tiny_corpus, tiny_llama, tmp_path_factory):
    from slt_llm.training.stage1 import train_vlp

    run = tmp_path_factory.mktemp("vlp_fine")
    res = train_vlp(_cfg(tiny_corpus, tiny_llama, run, "vlp.similarity=fine", "selection.selection=ps",
                         "selection.protocol=continuation", "train.epochs=4"))
    return run, res


def test_fine_similarity_end_to_end(fine_run, tiny_corpus, tiny_llama):
    """vlp.similarity=fine: the loss on token features learns; the trajectories are the fine
    similarity recomputed by brute force (a fresh model from each saved reference checkpoint,
    fresh LLM token states, float64 loops) for a few pairs; the exported model records it and
    its retrieval (dev R@1 in training, `evaluate_retrieval` after reloading) scores by it."""
    import numpy as np
    import torch

    from slt_llm.contrastive.loss import brute_force_fine_similarity
    from slt_llm.contrastive.retrieval import evaluate_retrieval, retrieval_metrics, unique_sentences
    from slt_llm.contrastive.trajectories import Trajectories
    from slt_llm.data.dataset import SLTDataset, collate_clips
    from slt_llm.data.manifest import read_manifest
    from slt_llm.models.text_embed import TokenTextEmbedder
    from slt_llm.models.vlp import VLPModel

    run, res = fine_run
    rows = _losses(run)
    assert [r["step"] for r in rows] == list(range(1, 13))
    first, last = sum(r["loss"] for r in rows[:3]) / 3, sum(r["loss"] for r in rows[-3:]) / 3
    assert last < first - 0.1, (first, last)
    assert any(p.name.startswith("text_tok-") for p in (tiny_corpus / "text_cache").iterdir())  # token cache

    traj = Trajectories.load(run / "reference" / "trajectories.npz")
    assert traj.similarity == "fine" and traj.num_checkpoints == 2
    cfg = _cfg(tiny_corpus, tiny_llama, run)
    ds = SLTDataset(tiny_corpus / "train.jsonl", cfg.data.clip, cache_dir=cfg.data.cache_dir)
    texts = [s.text for s in read_manifest(tiny_corpus / "train.jsonl")]
    tok_emb = TokenTextEmbedder(tiny_llama)

    def feats(m, i, j):
        with torch.no_grad():
            v, vm = m.encode_video_tokens(collate_clips([ds[i]]))
            x, xm = tok_emb.embed([texts[j]]).padded()
            t, tm = m.encode_text_tokens(x, xm)
        return v, vm, t, tm

    for k, ref in enumerate(sorted(p for p in (run / "reference").iterdir() if p.is_dir())):
        m = VLPModel.from_pretrained(ref).eval()
        assert m.fine
        for i in (0, 7, 19):
            got = [float(traj.positive[i, k])] + [float(traj.traj[i, c, k]) for c in range(3)]
            want = [float(brute_force_fine_similarity(*feats(m, i, j))[0, 0])
                    for j in [i] + [int(traj.cand[i, c]) for c in range(3)]]
            np.testing.assert_allclose(got, want, atol=3e-3)

    # `slt-llm analyze` recomputing them (file deleted) gets the same fine trajectories
    import shutil

    from slt_llm.contrastive.analyze import load_run_trajectories

    copy = run.parent / (run.name + "_analyze")
    shutil.copytree(run, copy)
    (copy / "reference" / "trajectories.npz").unlink()
    again = load_run_trajectories(copy)[0]
    assert again.similarity == "fine" and again.cand.equal(traj.cand)
    np.testing.assert_allclose(again.traj.numpy(), traj.traj.numpy(), atol=1e-5)

    model = VLPModel.from_pretrained(run / "model")
    assert model.fine and model.vlp_cfg.similarity == "fine"
    r = evaluate_retrieval(model, tiny_corpus / "dev.jsonl", model.clip_cfg)
    assert r["v2t"]["r1"] == pytest.approx(res["best_dev_r1"])
    # on the 24 training clips: every metric equals the one from a brute-force fine score matrix
    # (fed to the pooled path as video rows = scores, text = identity)
    got = evaluate_retrieval(model, tiny_corpus / "train.jsonl", model.clip_cfg)
    uniq, vt = unique_sentences(texts)
    model.eval()
    with torch.no_grad():
        vids = [model.encode_video_tokens(collate_clips([ds[i]])) for i in range(len(ds))]
        txts = [model.encode_text_tokens(*tok_emb.embed([u]).padded()) for u in uniq]
    scores = torch.tensor([[float(brute_force_fine_similarity(v, vm, t, tm)[0, 0]) for t, tm in txts]
                           for v, vm in vids])
    want = retrieval_metrics(scores, torch.eye(len(uniq)), vt)
    got.pop("skipped")
    assert got == want, (got, want)


def test_bad_input_fails_before_training(tiny_corpus, tiny_llama, tmp_path):
    from slt_llm.training.stage1 import train_vlp

    with pytest.raises(ConfigError, match="K >= 2"):
        train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "a", "selection.ref_epochs=1", "train.epochs=3"))
    with pytest.raises(ConfigError, match="vlp.similarity must be one of pooled, fine"):
        train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "c", "vlp.similarity=cls"))
    with pytest.raises(ConfigError, match="translation_weight must be >= 0"):
        train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "d", "vlp.similarity=fine", "vlp.translation_weight=-0.5"))
    with pytest.raises(ConfigError, match="larger than the training set"):
        train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "b", "train.batch_size=32",
                       "selection.selection=random"))
    # (a text cache of another LLM, pooling, dtype or library version is a miss: tests/test_text_embed.py)
    # analyze on a run without reference checkpoints
    run = tmp_path / "noref"
    run.mkdir()
    save_config(_cfg(tiny_corpus, tiny_llama, run), run / "config.yaml")
    r = subprocess.run([sys.executable, "-m", "slt_llm.cli", "analyze", "--run", str(run), "--out",
                        str(tmp_path / "x.png")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "reference checkpoint" in r.stderr and "Traceback" not in r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_vlp(cfg: Stage1Config, yaml_path: Path) -> None:
    """Run stage 1 as 2 gloo processes under accelerate + DeepSpeed ZeRO-2 (``scripts/train_vlp.py``,
    one thread each) with ``cfg`` written to ``yaml_path``; asserts it succeeded."""
    save_config(cfg, yaml_path)
    env = dict(os.environ, DS_ACCELERATOR="cpu", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "ds_configs" / "accelerate_zero2.yaml"), "--num_processes", "2",
           "--main_process_port", str(_free_port()), str(ROOT / "scripts" / "train_vlp.py"),
           "--config", str(yaml_path)]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("similarity", ["pooled", "fine"])
def test_two_process_zero2_matches_one_process(tiny_corpus, tiny_llama, tmp_path, similarity):
    """2 gloo processes x batch 4 under accelerate + DeepSpeed ZeRO-2 == 1 process x batch 8
    (fine: the token features of the two ranks have other lengths, padded and gathered)."""
    from slt_llm.training.stage1 import train_vlp

    common = ["selection.selection=random_fn", "train.epochs=2", "train.max_steps=4", "data.dev_manifest=null",
              "optim.max_grad_norm=0", "optim.warmup_steps=0", "optim.schedule=constant",
              f"vlp.similarity={similarity}"]
    single = tmp_path / "one"
    train_vlp(_cfg(tiny_corpus, tiny_llama, single, *common, "train.deepspeed=ds_configs/zero2.json"))
    launch_two_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "two", *common, "train.batch_size=4"), tmp_path / "two.yaml")
    one, two = _losses(single), _losses(tmp_path / "two")
    assert [x["step"] for x in two] == [1, 2, 3, 4]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
    assert one[-1]["loss"] != one[0]["loss"]  # it did train


@pytest.mark.slow
def test_sigkill_at_three_points_then_resume_gives_the_same_losses(ps_run, tiny_corpus, tiny_llama, tmp_path):
    """The pair-selection run of ``ps_run``, as real subprocesses SIGKILLed in turn
    (SLT_TEST_KILL_AT): during the trajectory computation (after the first
    reference checkpoint was embedded), inside the checkpoint write of step 8
    (shards written, no completion marker), and mid-epoch after step 10's update
    (last complete checkpoint: step 8, mid-epoch 3); each time resumed with
    --resume. The finished run has the uninterrupted run's losses step by step."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_stage2 import run_cli

    cfg_path = tmp_path / "killed.yaml"
    run = tmp_path / "killed"
    save_config(_cfg(tiny_corpus, tiny_llama, run, "selection.selection=ps", "selection.protocol=continuation",
                     "train.epochs=4", "train.save_every=2", "train.keep_checkpoints=3"), cfg_path)
    args = ["vlp", "--config", str(cfg_path)]
    run_cli(args, kill_at="trajectory:1")
    ck = run / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["step_2", "step_4", "step_6"]
    assert not (run / "reference" / "trajectories.npz").exists()
    run_cli(args + ["--resume"], kill_at="ckpt_write:1")
    assert (run / "reference" / "trajectories.npz").is_file() and not (ck / "step_8" / "trainer_state.json").exists()
    run_cli(args + ["--resume"], kill_at="step:4")  # from step 6: steps 7, 8 (saved), 9, 10 -> killed
    assert (ck / "step_8" / "trainer_state.json").is_file() and not (ck / "step_10").exists()
    r = run_cli(args + ["--resume"])
    assert "resumed from" in r.stdout and "step 8, epoch 2, batch 2" in r.stdout
    want, got = _losses(ps_run[0]), _losses(run)
    assert [x["step"] for x in got] == list(range(1, 13))  # one loss line per step, none repeated
    for a, b in zip(want, got):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6), (a, b)
        assert b["phase"] == a["phase"]
    assert json.loads((run / "result.json").read_text())["best_dev_r1"] == ps_run[1]["best_dev_r1"]


def test_dev_retrieval_counts_an_unreadable_dev_clip(tiny_corpus, tiny_llama, tmp_path, capsys):
    """A corrupt dev clip is not dropped silently: the dev line logs dev_n/dev_unreadable, the
    output says it once, and R@k are over all dev clips (the corrupt one a miss both ways)."""
    from slt_llm.contrastive.retrieval import evaluate_retrieval, with_misses
    from slt_llm.models.vlp import VLPModel
    from slt_llm.training.stage1 import train_vlp

    import dataclasses

    from slt_llm.data.manifest import read_manifest, write_manifest

    dev = list(read_manifest(tiny_corpus / "dev.jsonl"))
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 300)
    dev.insert(1, dataclasses.replace(dev[0], id="broken_dev", video=str(bad), text="an unreadable dev clip"))
    write_manifest(tmp_path / "dev.jsonl", dev)
    run = tmp_path / "run"
    train_vlp(_cfg(tiny_corpus, tiny_llama, run, "selection.selection=random", "train.epochs=1",
                   f"data.dev_manifest={tmp_path / 'dev.jsonl'}", "data.allow_outside_root=true"))
    out = capsys.readouterr().out
    assert out.count("dev clips unreadable") == 1 and "1 of 7 dev clips unreadable" in out
    (line,) = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "dev_v2t_r1" in r]
    assert (line["dev_n"], line["dev_unreadable"]) == (7, 1)
    # the exported (only, so best) model on the readable clips, re-scored over all 7 clips / 6 sentences
    model = VLPModel.from_pretrained(run / "model")
    readable = evaluate_retrieval(model, tmp_path / "dev.jsonl", model.clip_cfg, allow_outside_root=True,
                                  text_cache_dir=str(tiny_corpus / "text_cache"))
    assert readable["skipped"] == 1 and readable["num_videos"] == 6
    u = len({s.text for s in dev})
    assert line["dev_v2t_r1"] == pytest.approx(readable["v2t"]["r1"] * 6 / 7)
    assert line["dev_v2t_r5"] == pytest.approx(readable["v2t"]["r5"] * 6 / 7)
    assert line["dev_t2v_r1"] == pytest.approx(readable["t2v"]["r1"] * readable["num_sentences"] / u)
    assert readable["num_sentences"] == u - 1 and readable["v2t"]["r1"] > 0
    # the re-scoring itself: misses both ways; nothing changes when every clip was read
    m = {"v2t": {"r1": 50.0}, "t2v": {"r1": 100.0}, "num_videos": 4, "num_sentences": 2}
    assert with_misses(m, 8, 4)["v2t"] == {"r1": 25.0} and with_misses(m, 8, 4)["t2v"] == {"r1": 50.0}
    assert with_misses(m, 4, 2) == dict(m, unreadable=0) and with_misses(m, 8, 4)["unreadable"] == 4


def test_a_refused_run_folder_is_refused_before_any_work(tiny_corpus, tiny_llama, tmp_path):
    """`vlp` into a folder holding another run (here a stage-2 run's run.json and metrics): refused
    in one line before the reference run trains or any cache is written there (issue 21)."""
    from slt_llm.training.stage1 import train_vlp

    run = tmp_path / "taken"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"run_id": "abc", "stage": "stage2", "started": "earlier"}))
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    before = sorted(p.name for p in run.iterdir())
    cfg = _cfg(tiny_corpus, tiny_llama, run, "selection.selection=ps", "selection.protocol=separate")
    cfg.vlp.text_cache_dir = None  # the default cache would live in the run folder
    with pytest.raises(ConfigError, match="holds run abc .stage2") as e:
        train_vlp(cfg)
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in run.iterdir()) == before  # no reference_run/, no text_cache/
    with pytest.raises(ConfigError, match="not a stage1 run"):
        train_vlp(cfg, resume=True)
    assert sorted(p.name for p in run.iterdir()) == before
