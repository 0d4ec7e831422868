"""Manifests: round trip, path resolution and safety, one-line errors naming file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slt_llm.data.manifest import Manifest, Sample, read_manifest, write_manifest
from slt_llm.errors import InputError


def _write(path: Path, rows) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_round_trip_relative_and_absolute_paths(tmp_path):
    outside = tmp_path / "elsewhere" / "v.mp4"
    samples = [
        Sample("a", str(tmp_path / "m" / "videos" / "a.mp4"), "the man buys a car",
               pose=str(tmp_path / "m" / "videos" / "a.pose"), signer="s1", start=0.5, end=2.25,
               extra={"gloss": "MAN CAR BUY"}),
        Sample("b", str(outside), "a girl reads"),
        Sample("c", str(tmp_path / "m" / "frames" / "c"), "tomorrow it rains"),
    ]
    path = write_manifest(tmp_path / "m" / "train.jsonl", samples)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["video"] == "videos/a.mp4" and rows[0]["pose"] == "videos/a.pose"
    assert rows[0]["gloss"] == "MAN CAR BUY" and rows[0]["start"] == 0.5 and rows[0]["end"] == 2.25
    assert rows[1]["video"] == str(outside)  # outside the folder: absolute
    assert rows[2]["video"] == "frames/c"
    assert "pose" not in rows[1] and "signer" not in rows[1] and "start" not in rows[1]
    back = read_manifest(path)
    assert isinstance(back, Manifest) and isinstance(back, list) and back.errors == []
    assert back == samples
    # no temp file left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.jsonl"]


def test_relative_paths_resolve_against_manifest_folder_not_cwd(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    m = _write(tmp_path / "data" / "x.jsonl", [{"id": "1", "video": "clips/../clips/1.mp4", "text": "hello"}])
    monkeypatch.chdir(tmp_path)
    (s,) = read_manifest(m)
    assert s.video == str(tmp_path / "data" / "clips" / "1.mp4")
    assert os.path.isabs(s.video)


@pytest.mark.parametrize(
    "row, problem",
    [
        ('{"id": "a", "video": "a.mp4", "text": "x"', "invalid JSON"),
        ({"video": "a.mp4", "text": "x"}, "missing 'id'"),
        ({"id": "a", "text": "x"}, "missing 'video'"),
        ({"id": "a", "video": "../a.mp4", "text": "x"}, "leaves the manifest's folder"),
        ({"id": "a", "video": "sub/../../a.mp4", "text": "x"}, "leaves the manifest's folder"),
        ({"id": "a", "video": "a.mp4", "pose": "../a.pose", "text": "x"}, "pose path"),
        ({"id": "a", "video": "a.mp4", "text": "   "}, "empty sentence"),
        ({"id": "a", "video": "a.mp4"}, "empty sentence"),
        ({"id": "a", "video": "a.mp4", "text": "x", "start": 3.0, "end": 3.0}, "start (3.0) must be before end"),
        ({"id": "a", "video": "a.mp4", "text": "x", "start": "soon"}, "start must be a number"),
        ('[1, 2]', "expected a JSON object"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, row, problem):
    good = {"id": "ok", "video": "ok.mp4", "text": "fine"}
    m = _write(tmp_path / "m.jsonl", [good, "", row])  # the bad row is on line 3
    with pytest.raises(InputError) as ei:
        read_manifest(m)
    msg = str(ei.value)
    assert msg.startswith(f"{m}:3: ") and problem in msg and "\n" not in msg


def test_duplicate_id_points_to_first_line(tmp_path):
    m = _write(tmp_path / "m.jsonl", [{"id": "a", "video": "a.mp4", "text": "x"},
                                      {"id": "b", "video": "b.mp4", "text": "y"},
                                      {"id": "a", "video": "c.mp4", "text": "z"}])
    with pytest.raises(InputError, match=r"m.jsonl:3: duplicate id 'a' \(first on line 1\)"):
        read_manifest(m)


def test_skip_mode_keeps_good_rows_and_records_errors(tmp_path):
    m = _write(tmp_path / "m.jsonl", [
        {"id": "a", "video": "a.mp4", "text": "one"},
        {"id": "b", "video": "../b.mp4", "text": "two"},
        "not json",
        {"id": "c", "video": "/abs/c.mp4", "text": "three"},  # absolute: the user chose it
        {"id": "a", "video": "d.mp4", "text": "dup"},
        {"id": "e", "video": "e.mp4", "text": ""},
    ])
    got = read_manifest(m, on_error="skip")
    assert [s.id for s in got] == ["a", "c"]
    assert got[1].video == "/abs/c.mp4"
    assert [e.path.rsplit(":", 1)[1] for e in got.errors] == ["2", "3", "5", "6"]
    assert all(isinstance(e, InputError) for e in got.errors)


def test_text_optional_when_not_required(tmp_path):
    m = _write(tmp_path / "m.jsonl", [{"id": 7, "video": "a.mp4"}])
    (s,) = read_manifest(m, require_text=False)
    assert s.id == "7" and s.text == ""


def test_missing_manifest_is_input_error(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
