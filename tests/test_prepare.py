"""Converters on small annotation files written in the official formats."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from slt_llm.cli import main as cli_main
from slt_llm.data.manifest import read_manifest as _read_manifest
from slt_llm.data.prepare import prepare
from slt_llm.errors import InputError


def read_manifest(path):
    """prepare's rows point at the dataset where it lies, outside OUT: trusted."""
    return _read_manifest(path, allow_outside_root=True)


def _frames(folder: Path, n: int = 3) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((26, 21, 3), 40 * i, np.uint8)).save(folder / f"images{i + 1:04d}.png")


# ------------------------------------------------------------------ PHOENIX-2014T
PHX_HEADER = "name|video|start|end|speaker|orth|translation"


@pytest.fixture
def phoenix(tmp_path):
    root = tmp_path / "PHOENIX-2014-T"
    ann = root / "annotations" / "manual"
    ann.mkdir(parents=True)
    rows = {
        "train": [
            ("01April_2010_Thursday_heute-6694", "Signer04", "JETZT WETTER MORGEN", "und nun die wettervorhersage für morgen"),
            ("01April_2010_Thursday_heute-6695", "Signer04", "REGEN", "es regnet"),
            ("01April_2010_Thursday_heute-6696", "Signer01", "SONNE", ""),  # empty sentence
            ("01April_2010_Thursday_heute-6697", "Signer01", "WIND", "wind aus nord"),  # no frames
        ],
        "dev": [("11August_2010_Wednesday_tagesschau-2", "Signer08", "NORD WIND", "im norden weht der wind")],
        "test": [("25October_2010_Monday_tagesschau-17", "Signer01", "TEMPERATUR", "die temperaturen sinken")],
    }
    for split, rs in rows.items():
        lines = [PHX_HEADER] + [f"{n}|{n}/1/*.png|-1|-1|{s}|{o}|{t}" for n, s, o, t in rs]
        (ann / f"PHOENIX-2014-T.{split}.corpus.csv").write_text("\n".join(lines) + "\n")
        for n, _, _, _ in rs:
            if not n.endswith("6697"):
                _frames(root / "features" / "fullFrame-210x260px" / split / n / "1")
    return root


def test_phoenix(phoenix, tmp_path):
    out = tmp_path / "out"
    rep = prepare("phoenix2014t", phoenix, out)
    assert rep["train"]["written"] == 2 and rep["train"]["skipped_empty_text"] == 1
    assert rep["train"]["skipped_missing_video"] == 1
    assert rep["dev"]["written"] == 1 and rep["test"]["written"] == 1
    with pytest.raises(InputError, match="train.jsonl:1: .*outside the manifest's folder"):
        _read_manifest(out / "train.jsonl")  # not without the user's say-so
    assert rep["rows_outside_out"] == 4
    train = read_manifest(out / "train.jsonl")
    assert [s.id for s in train] == ["01April_2010_Thursday_heute-6694", "01April_2010_Thursday_heute-6695"]
    s = train[0]
    assert s.text == "und nun die wettervorhersage für morgen" and s.signer == "Signer04"
    assert s.video == str(phoenix / "features/fullFrame-210x260px/train/01April_2010_Thursday_heute-6694/1")
    assert s.start is None and s.end is None and s.extra["gloss"] == "JETZT WETTER MORGEN"
    (d,) = read_manifest(out / "dev.jsonl")
    assert "/dev/11August_2010_Wednesday_tagesschau-2/1" in d.video
    assert json.loads((out / "prepare_report.json").read_text())["train"]["written"] == 2
    # the frame folder is readable by the video layer
    from slt_llm.data.video import load_frames

    assert load_frames(s.video).frames.shape == (3, 26, 21, 3)
    # keep-missing keeps the row without frames (not the one without a sentence)
    rep2 = prepare("phoenix2014t", phoenix, tmp_path / "out2", keep_missing=True)
    assert rep2["train"]["written"] == 3
    # --pose-dir: <name>.pose recorded where it exists (the frame folders are all called "1")
    poses = tmp_path / "poses"
    poses.mkdir()
    (poses / "01April_2010_Thursday_heute-6695.pose").write_bytes(b"x")
    prepare("phoenix2014t", phoenix, tmp_path / "out3", pose_dir=poses)
    assert [x.pose for x in read_manifest(tmp_path / "out3" / "train.jsonl")] == [
        None, str(poses / "01April_2010_Thursday_heute-6695.pose")]


def test_phoenix_bad_header_names_file(phoenix, tmp_path):
    p = phoenix / "annotations/manual/PHOENIX-2014-T.dev.corpus.csv"
    p.write_text("name|video|speaker\nx|x/1/*.png|S1\n")
    with pytest.raises(InputError, match=r"PHOENIX-2014-T.dev.corpus.csv: header lacks column\(s\) start, end"):
        prepare("phoenix2014t", phoenix, tmp_path / "o")


# ------------------------------------------------------------------ CSL-Daily
CSL_NAMES = {"S000000_P0000_T00": ("train", ["他", "的", "书"]), "S000001_P0001_T00": ("train", ["我", "爱", "你"]),
             "S000002_P0008_T00": ("dev", ["今", "天", "好"]), "S000003_P0003_T00": ("test", ["谢", "谢"]),
             "S000004_P0004_T00": ("test", [])}


@pytest.fixture
def csl(tmp_path):
    root = tmp_path / "CSL-Daily"
    lab = root / "sentence_label"
    lab.mkdir(parents=True)
    (lab / "split_1.txt").write_text("name|split\n" + "".join(f"{n}|{s}\n" for n, (s, _) in CSL_NAMES.items()))
    for n in CSL_NAMES:
        if n != "S000001_P0001_T00":
            _frames(root / "sentence" / "frames_512x512" / n, 2)
    return root


def _video_map(root: Path) -> None:
    lines = ["index|name|length|gloss|char|word|postag"]
    for i, (n, (_, chars)) in enumerate(CSL_NAMES.items()):
        lines.append(f"{i}|{n}|50|G{i}|{' '.join(chars)}|{''.join(chars)}|n")
    (root / "sentence_label" / "video_map.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_csl_daily_video_map(csl, tmp_path):
    _video_map(csl)
    rep = prepare("csl-daily", csl, tmp_path / "out")
    assert rep["train"] == {"written": 1, "skipped_missing_video": 1, "skipped_empty_text": 0,
                            "skipped_examples": rep["train"]["skipped_examples"]}
    assert rep["test"]["skipped_empty_text"] == 1
    (s,) = read_manifest(tmp_path / "out" / "train.jsonl")
    assert s.id == "S000000_P0000_T00" and s.text == "他的书"
    assert s.video == str(csl / "sentence/frames_512x512/S000000_P0000_T00")
    assert [x.text for x in read_manifest(tmp_path / "out" / "dev.jsonl")] == ["今天好"]


def test_csl_daily_plain_data_pickle_loads_safely(csl, tmp_path):
    info = [{"name": n, "label_char": c, "label_gloss": ["X"], "length": 10} for n, (_, c) in CSL_NAMES.items()]
    with open(csl / "sentence_label" / "csl2020ct_v2.pkl", "wb") as f:
        pickle.dump({"info": info, "gloss_map": ["X"]}, f)
    rep = prepare("csl-daily", csl, tmp_path / "out")
    assert rep["train"]["written"] == 1 and rep["dev"]["written"] == 1
    assert read_manifest(tmp_path / "out" / "test.jsonl")[0].text == "谢谢"


class _Evil:
    """Unpickling this calls os.mkdir(path): what a trusting loader would run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_csl_daily_pickle_with_code_is_refused(csl, tmp_path):
    marker = tmp_path / "marker"
    with open(csl / "sentence_label" / "csl2020ct_v2.pkl", "wb") as f:
        pickle.dump({"info": [_Evil(marker), {"name": "a"}]}, f)
    with open(csl / "sentence_label" / "control.pkl", "wb") as f:  # the payload works when trusted
        pickle.dump(_Evil(tmp_path / "control"), f)
    with open(csl / "sentence_label" / "control.pkl", "rb") as f:
        pickle.load(f)
    assert (tmp_path / "control").is_dir()
    with pytest.raises(InputError, match="refusing to unpickle.*labels.tsv") as ei:
        prepare("csl-daily", csl, tmp_path / "out")
    assert "csl2020ct_v2.pkl" in str(ei.value) and "\n" not in str(ei.value)
    assert not marker.exists()
    # the converted label file is then used
    (csl / "sentence_label" / "labels.tsv").write_text(
        "name\ttext\n" + "".join(f"{n}\t{''.join(c)}\n" for n, (_, c) in CSL_NAMES.items()), encoding="utf-8")
    rep = prepare("csl-daily", csl, tmp_path / "out")
    assert rep["train"]["written"] == 1


# ------------------------------------------------------------------ How2Sign
H2S_HEADER = "VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE"


@pytest.fixture
def how2sign(tmp_path, tiny_corpus):
    root = tmp_path / "How2Sign"
    raw = root / "raw_videos"
    raw.mkdir(parents=True)
    mp4 = tiny_corpus / "videos" / "train_00000.mp4"
    shutil.copy(mp4, raw / "-fZc293MpJk-1-rgb_front.mp4")
    (root / "clips").mkdir()
    shutil.copy(mp4, root / "clips" / "-g0iPSnQt6w_3-1-rgb_front.mp4")
    files = {
        "train": [
            ("-fZc293MpJk", "-fZc293MpJk-1-rgb_front", "-fZc293MpJk_0", "-fZc293MpJk_0-1-rgb_front", "0.5", "2.25",
             'Hi, I\'m "Amy" and I teach.'),
            ("-fZc293MpJk", "-fZc293MpJk-1-rgb_front", "-fZc293MpJk_1", "-fZc293MpJk_1-1-rgb_front", "2.5", "3.5", "  "),
            ("zzz", "zzz-1-rgb_front", "zzz_0", "zzz_0-1-rgb_front", "1.0", "2.0", "no video here"),
        ],
        "val": [("-g0iPSnQt6w", "-g0iPSnQt6w-1-rgb_front", "-g0iPSnQt6w_3", "-g0iPSnQt6w_3-1-rgb_front", "10.0",
                 "12.0", "Pre-cut clip.")],
        "test": [("-fZc293MpJk", "-fZc293MpJk-1-rgb_front", "-fZc293MpJk_9", "-fZc293MpJk_9-1-rgb_front", "1.0",
                  "3.0", "Last one.")],
    }
    for split, rows in files.items():
        text = H2S_HEADER + "\n" + "".join("\t".join(r) + "\n" for r in rows)
        (root / f"how2sign_realigned_{split}.csv").write_text(text)
    return root


def test_how2sign(how2sign, tmp_path):
    rep = prepare("how2sign", how2sign, tmp_path / "out")
    assert (rep["train"]["written"], rep["train"]["skipped_empty_text"], rep["train"]["skipped_missing_video"]) == (1, 1, 1)
    (s,) = read_manifest(tmp_path / "out" / "train.jsonl")
    assert s.id == "-fZc293MpJk_0-1-rgb_front" and s.text == 'Hi, I\'m "Amy" and I teach.'
    assert s.video == str(how2sign / "raw_videos" / "-fZc293MpJk-1-rgb_front.mp4")
    assert (s.start, s.end) == (0.5, 2.25) and s.extra["sentence_id"] == "-fZc293MpJk_0"
    (d,) = read_manifest(tmp_path / "out" / "dev.jsonl")  # val -> dev, pre-cut clip used as is
    assert d.video == str(how2sign / "clips" / "-g0iPSnQt6w_3-1-rgb_front.mp4") and d.start is None and d.end is None
    assert read_manifest(tmp_path / "out" / "test.jsonl")[0].start == 1.0
    # keypoints belong to the file that is read: raw video stem, or the clip's name
    poses = tmp_path / "poses"
    poses.mkdir()
    for stem in ("-fZc293MpJk-1-rgb_front", "-g0iPSnQt6w_3-1-rgb_front", "-fZc293MpJk_0-1-rgb_front"):
        (poses / f"{stem}.pose").write_bytes(b"x")
    prepare("how2sign", how2sign, tmp_path / "out2", pose_dir=poses)
    assert read_manifest(tmp_path / "out2" / "train.jsonl")[0].pose == str(poses / "-fZc293MpJk-1-rgb_front.pose")
    assert read_manifest(tmp_path / "out2" / "dev.jsonl")[0].pose == str(poses / "-g0iPSnQt6w_3-1-rgb_front.pose")


def test_how2sign_bad_times_name_file_and_line(how2sign, tmp_path):
    p = how2sign / "how2sign_realigned_test.csv"
    p.write_text(H2S_HEADER + "\n" + "a\tb\tc\td\t3.0\t1.0\ttext\n")
    with pytest.raises(InputError, match=r"how2sign_realigned_test.csv:2: start \(3.0\)"):
        prepare("how2sign", how2sign, tmp_path / "out")


def test_cli_reports_counts_and_errors(how2sign, tmp_path, capsys):
    assert cli_main(["prepare", "how2sign", "--root", str(how2sign), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "train: wrote 1 rows" in out and "skipped 1 (missing video), 1 (empty sentence)" in out
    assert cli_main(["prepare", "phoenix2014t", "--root", str(how2sign), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slt-llm prepare: error: ") and "PHOENIX-2014-T.train.corpus.csv" in err
    assert "Traceback" not in err
