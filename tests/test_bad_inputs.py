"""Bad input and faults as a new user meets them (issue 21): each case is one line naming the file
and the problem, a non-zero exit, and the user's files byte-identical afterwards. Table-driven:
a case builds its files, gives the command line, and what the one line must say."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from slt_llm.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_translate import tiny_model  # noqa: E402,F401  (the module fixture: a saved tiny SLT model)


def _one_video(tmp: Path, corpus: Path, name: str = "a") -> Path:
    d = tmp / "in"
    d.mkdir(exist_ok=True)
    row = json.loads((corpus / "test.jsonl").read_text().splitlines()[0])
    shutil.copy(corpus / row["video"], d / f"{name}.mp4")
    shutil.copy((corpus / row["video"]).with_suffix(".pose"), d / f"{name}.pose")
    return d


def _case_empty_folder(tmp, corpus, model):
    (tmp / "empty").mkdir()
    return ["translate", "--model", model, "--input", str(tmp / "empty"), "--out", str(tmp / "o.jsonl")], \
        [str(tmp / "empty"), "no videos"], 2


def _case_empty_manifest(tmp, corpus, model):
    (tmp / "m.jsonl").write_text("")
    return ["translate", "--model", model, "--input", str(tmp / "m.jsonl"), "--out", str(tmp / "o.jsonl")], \
        [str(tmp / "m.jsonl"), "no rows"], 2


def _case_corrupt_encoder_weights(tmp, corpus, model):
    bad = tmp / "model"
    shutil.copytree(model, bad)
    data = (bad / "encoder.safetensors").read_bytes()
    (bad / "encoder.safetensors").write_bytes(data[: len(data) // 2])  # truncated
    inp = _one_video(tmp, corpus)
    return ["translate", "--model", str(bad), "--input", str(inp), "--out", str(tmp / "o.jsonl"),
            "--num-workers", "0", "--no-progress"], [str(bad / "encoder.safetensors"), "corrupt or truncated"], 2


def _case_corrupt_llm_weights(tmp, corpus, model):
    import yaml

    bad = tmp / "model"
    shutil.copytree(model, bad)
    raw = yaml.safe_load((bad / "slt_config.yaml").read_text())
    llm = tmp / "llm"
    shutil.copytree(raw["llm"]["path"], llm)
    data = (llm / "model.safetensors").read_bytes()
    (llm / "model.safetensors").write_bytes(data[: len(data) // 3])
    inp = _one_video(tmp, corpus)
    return ["translate", "--model", str(bad), "--input", str(inp), "--out", str(tmp / "o.jsonl"),
            "--llm", str(llm), "--num-workers", "0", "--no-progress"], [str(llm), "cannot load the model"], 2


def _case_another_base_llm(tmp, corpus, model):
    from slt_llm.models.tiny_llm import build_tiny_llm

    other = tmp / "other_llm"  # the same config as the model's base, other weights
    build_tiny_llm(other, family="llama", seed=1, progress=False)
    inp = _one_video(tmp, corpus)
    return ["translate", "--model", model, "--input", str(inp), "--out", str(tmp / "o.jsonl"), "--llm", str(other),
            "--num-workers", "0", "--no-progress"], [model, str(other), "trained on base LLM", "identity"], 2


def _case_eval_json_is_a_folder(tmp, corpus, model):
    (tmp / "out").mkdir()
    hyp = tmp / "h.jsonl"
    hyp.write_text(json.dumps({"id": "a", "path": "a.mp4", "translation": "x"}) + "\n")
    ref = tmp / "r.jsonl"
    ref.write_text(json.dumps({"id": "a", "video": "a.mp4", "text": "x"}) + "\n")
    return ["eval", "--hyp", str(hyp), "--ref", str(ref), "--json", str(tmp / "out")], [str(tmp / "out"), "folder"], 2


CASES = {name[len("_case_"):]: fn for name, fn in globals().items() if name.startswith("_case_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_touches_nothing(name, tmp_path, tiny_model, tiny_corpus, capsys):  # noqa: F811
    argv, must_say, code = CASES[name](tmp_path, tiny_corpus, str(tiny_model))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()  # what building the case printed
    got = main(argv)
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert got == code, err
    assert len(err) == 1, err
    for s in must_say:
        assert s in err[0], (s, err[0])
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing of the user's changed, nothing new written


def test_a_dangling_symlink_video_is_said_to_be_missing(tmp_path, tiny_corpus):
    from slt_llm.config import ClipConfig
    from slt_llm.data.clip import load_clip
    from slt_llm.errors import InputError

    link = tmp_path / "gone.mp4"
    link.symlink_to(tmp_path / "was_here.mp4")
    with pytest.raises(InputError) as e:
        load_clip(link, ClipConfig())
    assert str(e.value) == f"{link}: video not found (a symbolic link to a missing file)"


def _training_manifest(tmp: Path, corpus: Path, bad_rows: int = 0, bad_json: bool = True) -> Path:
    """The tiny corpus's train.jsonl (absolute paths) with one line that is not JSON (line 3) and
    ``bad_rows`` unreadable clips (garbage bytes, ids broken0..)."""
    rows = [json.loads(x) for x in (corpus / "train.jsonl").read_text().splitlines() if x.strip()]
    for r in rows:
        for k in ("video", "pose"):
            r[k] = str((corpus / r[k]).resolve())
    lines = [json.dumps(r) for r in rows]
    for k in range(bad_rows):
        junk = tmp / f"broken{k}.mp4"
        junk.write_bytes(b"\x00\x01garbage" * 300)
        lines.insert(1 + 2 * k, json.dumps(dict(rows[0], id=f"broken{k}", video=str(junk))))
    if bad_json:
        lines.insert(2, '{"id": "cut", "video": "v.mp4", "text": "half a ro')
    m = tmp / "train.jsonl"
    m.write_text("".join(x + "\n" for x in lines))
    return m


def test_a_bad_json_line_in_a_training_manifest_is_named(tmp_path, tiny_corpus, capsys):
    """Stage 2 reads its manifests through SLTDataset (data.on_error=skip): the line left out is named
    (file:line and the JSON error), once; under on_error=raise (and in stage 1) it stops the run, named."""
    from slt_llm.config import ClipConfig, DataConfig
    from slt_llm.data.dataset import SLTDataset, readable_training_set
    from slt_llm.errors import InputError

    m = _training_manifest(tmp_path, tiny_corpus)
    capsys.readouterr()
    ds = SLTDataset(m, ClipConfig(), allow_outside_root=True)
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(ds) == 24 and len(ds.manifest_errors) == 1
    assert len(err) == 1 and err[0].startswith(f"warning: {m}:3: invalid JSON (Unterminated string")
    assert err[0].endswith("(row left out)")
    with pytest.raises(InputError, match=f"^{m}:3: invalid JSON"):
        SLTDataset(m, ClipConfig(), allow_outside_root=True, on_error="raise")
    with pytest.raises(InputError, match=f"^{m}:3: invalid JSON"):  # stage 1's reader
        readable_training_set(DataConfig(train_manifest=str(m), allow_outside_root=True))
    SLTDataset(read_manifest_skip(m), ClipConfig())  # a list of samples: the caller reports (translate's rows)
    assert capsys.readouterr().err == ""


def read_manifest_skip(m):
    from slt_llm.data.manifest import read_manifest

    return read_manifest(m, on_error="skip", allow_outside_root=True)


def test_unreadable_training_samples_are_named_not_only_counted(tmp_path, tiny_corpus, capfd):
    """Stage 1's pre-scan names the first REPORT_FIRST bad samples (id, file and problem) and says how
    many more; stage 2's dataset names each of the first REPORT_FIRST when it fails, once across worker
    processes and epochs, then says the rest are only counted."""
    import torch

    from slt_llm.config import ClipConfig, DataConfig
    from slt_llm.data.dataset import REPORT_FIRST, SLTDataset, collate_clips, readable_training_set
    from slt_llm.errors import InputError

    m = _training_manifest(tmp_path, tiny_corpus, bad_rows=REPORT_FIRST + 2, bad_json=False)
    clip = ClipConfig(fps=6, max_frames=8, full_size=32, hand_size=16)
    capfd.readouterr()
    ds, samples, bad = readable_training_set(DataConfig(train_manifest=str(m), allow_outside_root=True, clip=clip))
    err = [x for x in capfd.readouterr().err.splitlines() if x.strip()]
    assert len(bad) == REPORT_FIRST + 2 and len(samples) == 24
    assert len(err) == REPORT_FIRST + 1, err
    for k, line in enumerate(err[:-1]):
        assert line.startswith(f"warning: {m}: unreadable training sample 'broken{k}' left out: "
                               f"{tmp_path / f'broken{k}.mp4'}: "), line
    assert err[-1] == f"warning: {m}: ... and 2 more unreadable training samples left out"
    with pytest.raises(InputError) as e:  # data.on_error=raise: the first one stops the run, named
        readable_training_set(DataConfig(train_manifest=str(m), allow_outside_root=True, clip=clip, on_error="raise"))
    assert str(e.value).startswith(f"{m}: unreadable training sample 'broken0' (data.on_error=raise): "
                                   f"{tmp_path / 'broken0.mp4'}: ")

    ds = SLTDataset(m, clip, allow_outside_root=True)  # as stage 2 builds it
    for epoch in range(2):  # two epochs of two worker processes: each bad sample named once in all
        dl = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_clips, num_workers=2)
        skipped = [i for b in dl for i, _ in b["skipped"]]
        assert len(skipped) == REPORT_FIRST + 2
    err = [x for x in capfd.readouterr().err.splitlines() if x.startswith("warning:")]
    named = [x for x in err if "unreadable sample '" in x]
    assert len(named) == REPORT_FIRST and len(set(named)) == REPORT_FIRST, err
    assert all(f"{tmp_path}/broken" in x and x.startswith(f"warning: {m}: unreadable sample 'broken") for x in named)
    assert err.count(f"warning: {m}: more unreadable samples are skipped; they are counted, not named") == 1
    assert len(err) == REPORT_FIRST + 1


def test_the_step_line_names_the_samples_it_skipped(tmp_path, tiny_corpus, tiny_llama, capsys):
    """Stage 2's log line for a step that skipped unreadable samples names the first two (id, file and
    problem) and how many more, and metrics.jsonl lists their ids; stage 1's pre-scan summary line
    names the first two ids and how many more."""
    import re

    from slt_llm.config import SLTConfig, load_config
    from slt_llm.training.metrics_log import read_metrics
    from slt_llm.training.stage1 import train_vlp
    from slt_llm.training.stage2 import train_slt
    from test_stage1 import _cfg as stage1_cfg
    from test_stage2 import make_run

    m = _training_manifest(tmp_path, tiny_corpus, bad_rows=3, bad_json=False)
    cfg = load_config(SLTConfig, str(make_run(tmp_path, tiny_llama, tmp_path / "s2", tmp_path / "cache", batch_size=27,
                                              max_steps=1, save_every=0, eval_every=0)),
                      ["data.dev_manifest=null", "data.clip.max_frames=4"])  # one step over every sample
    capsys.readouterr()
    train_slt(cfg)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step 1: skipped")]
    assert len(lines) == 1, lines
    bad = r"'broken(\d)' \(" + re.escape(str(tmp_path)) + r"/broken\{}\.mp4: not a video file [^']*\)"
    pattern = r"step 1: skipped 3 unreadable samples: " + bad.format(1) + ", " + bad.format(2) + \
        r" and 1 more \(3 so far\)"
    assert re.fullmatch(pattern, lines[0]), lines[0]
    row = read_metrics(tmp_path / "s2")[-1]
    assert row["skipped"] == 3 and sorted(row["skipped_ids"]) == ["broken0", "broken1", "broken2"]

    train_vlp(stage1_cfg(tiny_corpus, tiny_llama, tmp_path / "s1", f"data.train_manifest={m}", "data.dev_manifest=null",
                         "data.allow_outside_root=true", "selection.selection=random", "train.max_steps=1"))
    out = capsys.readouterr().out
    assert "stage 1: skipped 3 unreadable training samples: 'broken0', 'broken1' and 1 more (named above)" in out


def test_stage2_refuses_a_stage1_model_aligned_to_another_llm(tmp_path, tiny_corpus, tiny_llama, tiny_qwen2, capsys):
    """A stage-1 model folder records its base LLM's identity (vlp_config.yaml llm.identity) and its
    clip settings; `slt-llm train` with train.init_encoder= a stage-1 model aligned to another LLM is
    refused in one line naming both, before the run folder is made; a copy of the same LLM passes;
    other clip settings and a folder from before the record are one warning each."""
    import yaml

    from slt_llm.config import ClipConfig, EncoderConfig, VLPConfig
    from slt_llm.errors import ConfigError
    from slt_llm.models.llm import llm_identity
    from slt_llm.models.vlp import VLPModel, check_stage1_model
    from test_stage2 import make_run

    clip = ClipConfig(fps=6, max_frames=10, full_size=32, hand_size=16)  # make_run's data.clip
    run_cfg = make_run(tiny_corpus, tiny_llama, tmp_path / "run", tmp_path / "cache")
    enc = EncoderConfig(**yaml.safe_load(run_cfg.read_text())["encoder"])
    s1 = tmp_path / "stage1_model"
    VLPModel(enc, VLPConfig(), 128, llm_path=str(tiny_llama), load_backbone=False).save_pretrained(s1, clip_cfg=clip)
    rec = yaml.safe_load((s1 / "vlp_config.yaml").read_text())["llm"]
    assert rec["path"] == str(tiny_llama) and rec["identity"] == llm_identity(tiny_llama)
    assert yaml.safe_load((s1 / "clip.yaml").read_text())["hand_size"] == 16

    capsys.readouterr()
    code = main(["train", "--config", str(run_cfg), f"train.init_encoder={s1}", f"llm.path={tiny_qwen2}"])
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert code == 2 and len(err) == 1, err
    want, got = llm_identity(tiny_llama)["identity"], llm_identity(tiny_qwen2)["identity"]
    assert err[0].startswith(f"slt-llm train: error: {s1}: trained on base LLM {tiny_llama} (identity {want}) "
                             f"but given {tiny_qwen2} (identity {got}: another config.json"), err[0]
    assert "set llm.path to the LLM stage 1 was trained against" in err[0]
    assert not (tmp_path / "run").exists()  # refused before the run folder was claimed

    copy = tmp_path / "llm_copy"
    shutil.copytree(tiny_llama, copy)
    check_stage1_model(s1, copy, clip_cfg=clip)  # the same LLM elsewhere: the identity is the content
    assert capsys.readouterr().err == ""
    check_stage1_model(s1, tiny_llama, clip_cfg=ClipConfig(fps=6, max_frames=10, full_size=32, hand_size=24))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: {s1}: stage 1 sampled clips otherwise than this run's data.clip "
                   f"(hand_size=16 vs 24: stage 1 vs this run)"]

    cfg = yaml.safe_load((s1 / "vlp_config.yaml").read_text())  # a folder written before the record
    del cfg["llm"]["identity"]
    (s1 / "vlp_config.yaml").write_text(yaml.safe_dump(cfg))
    check_stage1_model(s1, tiny_qwen2, clip_cfg=clip)
    assert capsys.readouterr().err.strip() == (f"warning: {s1}: records no base-LLM identity; trained against "
                                               f"{tiny_llama}, this run's LLM is {tiny_qwen2}")
    with pytest.raises(ConfigError, match="not a stage-1 model folder"):  # also before any work
        check_stage1_model(tmp_path / "nothing", tiny_llama)
