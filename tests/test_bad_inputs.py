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
