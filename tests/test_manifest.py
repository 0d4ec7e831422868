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
    with pytest.raises(InputError, match=r"train.jsonl:2: video path .* absolute path outside the manifest's folder"):
        read_manifest(path)
    back = read_manifest(path, allow_outside_root=True)
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
        {"id": "c", "video": "/abs/c.mp4", "text": "three"},  # absolute, outside the folder
        {"id": "a", "video": "d.mp4", "text": "dup"},
        {"id": "e", "video": "e.mp4", "text": ""},
        {"id": "f", "video": str(tmp_path / "f.mp4"), "text": "four"},  # absolute, inside: fine
    ])
    got = read_manifest(m, on_error="skip")
    assert [s.id for s in got] == ["a", "f"]
    assert [e.path.rsplit(":", 1)[1] for e in got.errors] == ["2", "3", "4", "5", "6"]
    trusted = read_manifest(m, on_error="skip", allow_outside_root=True)
    assert [s.id for s in trusted] == ["a", "b", "c", "f"] and trusted[2].video == "/abs/c.mp4"
    assert trusted[1].video == str(tmp_path.parent / "b.mp4")
    assert [e.path.rsplit(":", 1)[1] for e in trusted.errors] == ["3", "5", "6"]
    assert all(isinstance(e, InputError) for e in got.errors)


def test_text_optional_when_not_required(tmp_path):
    m = _write(tmp_path / "m.jsonl", [{"id": 7, "video": "a.mp4"}])
    (s,) = read_manifest(m, require_text=False)
    assert s.id == "7" and s.text == ""


def test_missing_manifest_is_input_error(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_paths_leaving_the_root_refused_unless_allowed(tmp_path):
    """A real symlink inside the manifest's folder pointing out of it, and an
    absolute path elsewhere, are refused with one line naming the manifest and
    the line; a symlink staying inside and --allow-outside-root pass."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "v.mp4").write_bytes(b"x")
    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    (root / "inner" / "w.mp4").write_bytes(b"x")
    os.symlink(outside, root / "escape")  # a folder link leading out
    os.symlink(root / "inner" / "w.mp4", root / "alias.mp4")  # a file link staying in
    for lineno, row, problem in [
        (2, {"id": "s", "video": "escape/v.mp4", "text": "x"}, "through a symlink"),
        (2, {"id": "s", "video": "ok.mp4", "pose": "escape/v.pose", "text": "x"}, "pose path"),
        (2, {"id": "a", "video": str(outside / "v.mp4"), "text": "x"}, "absolute path outside"),
    ]:
        m = _write(root / "m.jsonl", [{"id": "ok", "video": "alias.mp4", "text": "fine"}, row])
        with pytest.raises(InputError) as ei:
            read_manifest(m)
        msg = str(ei.value)
        assert msg.startswith(f"{m}:{lineno}: ") and problem in msg and "--allow-outside-root" in msg
        assert "\n" not in msg
        got = read_manifest(m, allow_outside_root=True)
        assert [s.id for s in got] == ["ok", row["id"]]
    assert got[0].video == str(root / "alias.mp4")  # lexical path kept, not the link target
    # the manifest reached through a symlinked folder: paths inside still pass
    os.symlink(root, tmp_path / "link")
    m = _write(root / "m.jsonl", [{"id": "ok", "video": str(tmp_path / "link" / "inner" / "w.mp4"), "text": "t"}])
    assert [s.id for s in read_manifest(tmp_path / "link" / "m.jsonl")] == ["ok"]
    # the dataset passes the flag through (training builds it from data.allow_outside_root)
    m = _write(root / "m.jsonl", [{"id": "s", "video": "escape/v.mp4", "text": "x"}])
    from slt_llm.data.dataset import SLTDataset
    from slt_llm.config import ClipConfig

    ds = SLTDataset(m, ClipConfig(), on_error="skip")
    assert len(ds) == 0 and "through a symlink" in str(ds.manifest_errors[0])
    assert len(SLTDataset(m, ClipConfig(), allow_outside_root=True)) == 1
