"""Keypoint extraction: the sidecar cache and CLI, through a test backend registered via the interface.

The backend is a stand-in for MediaPipe only: it returns the real MediaPipe
Holistic keypoints recorded for football.mp4; writing, reading, caching and
load_clip on the result are the real code.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from pose_format import Pose

from slt_llm.config import ClipConfig
from slt_llm.data.clip import load_clip
from slt_llm.data.extract import (
    Extraction,
    KeypointExtractor,
    ensure_pose,
    make_extractor,
    register_extractor,
)
from slt_llm.data.pose import read_pose
from slt_llm.errors import ConfigError, InputError


def extract_cli(argv):
    from slt_llm.cli import main

    return main(["extract", *argv])


class RecordedHolistic(KeypointExtractor):
    """Returns the recorded MediaPipe output of football.mp4 (first 543 points) and counts calls."""

    name = "recorded"
    calls: list = []

    def __init__(self, model=None, source=None):
        pose = Pose.read(open(source, "rb").read())
        data = np.ma.getdata(pose.body.data)[:, 0, :543, :2]
        conf = np.where(np.ma.getmaskarray(pose.body.data)[:, 0, :543, 0], 0.0, pose.body.confidence[:, 0, :543])
        self.result = Extraction(xy=data.astype(np.float32), conf=conf.astype(np.float32),
                                 fps=float(pose.body.fps), width=640, height=360)

    def extract(self, video_path):
        RecordedHolistic.calls.append(str(video_path))
        return self.result


@pytest.fixture
def recorded(realdata):
    src = realdata / "football_mediapipe_holistic.pose"
    register_extractor("recorded", lambda model=None: RecordedHolistic(model, source=src))
    RecordedHolistic.calls = []
    return make_extractor("recorded")


def test_ensure_pose_writes_reuses_and_refreshes_the_sidecar(tmp_path, realdata, recorded):
    video = tmp_path / "clip1.mp4"
    shutil.copy(realdata / "football.mp4", video)
    out = ensure_pose(video, recorded)
    assert out == tmp_path / "clip1.pose" and len(RecordedHolistic.calls) == 1
    kp, ref = read_pose(out), read_pose(realdata / "football_mediapipe_holistic.pose")
    assert kp.layout == "mediapipe_holistic" and (kp.width, kp.height) == (640, 360)
    np.testing.assert_allclose(kp.xy, ref.xy, atol=1e-4)
    np.testing.assert_allclose(kp.conf, ref.conf, atol=1e-6)
    # cached: no second extraction
    assert ensure_pose(video, recorded) == out and len(RecordedHolistic.calls) == 1
    # the video changed after the sidecar was written: extract again
    st = out.stat()
    os.utime(video, (st.st_atime, st.st_mtime + 10))
    ensure_pose(video, recorded)
    assert len(RecordedHolistic.calls) == 2
    # an unreadable sidecar is replaced, never trusted
    out.write_bytes(b"broken")
    os.utime(out, (st.st_atime, st.st_mtime + 20))
    ensure_pose(video, recorded)
    assert len(RecordedHolistic.calls) == 3 and read_pose(out).num_frames == 62
    # cache=False always extracts
    ensure_pose(video, recorded, cache=False)
    assert len(RecordedHolistic.calls) == 4
    # load_clip finds the sidecar on its own
    clip = load_clip(video, ClipConfig(max_frames=8, full_size=32, hand_size=16))
    assert clip.meta["pose"] == str(out) and np.isfinite(clip.boxes).all()


def test_extract_cli_on_a_folder_with_out_dir(tmp_path, realdata, recorded, capsys):
    src = tmp_path / "videos"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(realdata / "football.mp4", src / name)
    (src / "notes.txt").write_text("not a video")
    out_dir = tmp_path / "poses"
    assert extract_cli([str(src), "--extractor-backend", "recorded", "--out", str(out_dir)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.pose", "b.pose"]
    assert "2/2 videos have keypoints" in capsys.readouterr().out
    # the old spellings (--backend, --out-dir, --model) still work for one release, each with a
    # warning naming the new flag
    assert extract_cli([str(src), "--backend", "recorded", "--out-dir", str(out_dir), "--model", "m.task"]) == 0
    err = capsys.readouterr().err
    assert "--model is deprecated" in err and "use --extractor-model" in err
    assert "--backend is deprecated" in err and "use --extractor-backend" in err
    assert "--out-dir is deprecated" in err and "use --out" in err
    assert len(RecordedHolistic.calls) == 2  # second run reused both
    clip = load_clip(src / "a.mp4", ClipConfig(max_frames=4, full_size=32, hand_size=16), pose_dir=out_dir)
    assert clip.num_frames == 4


def test_bad_extraction_and_missing_backend_requirements(tmp_path, realdata):
    class Wrong(KeypointExtractor):
        name = "wrong"

        def extract(self, video_path):
            return Extraction(np.zeros((3, 33, 2), np.float32), np.ones((3, 33), np.float32), 25.0, 10, 10)

    video = tmp_path / "v.mp4"
    shutil.copy(realdata / "football.mp4", video)
    with pytest.raises(InputError, match=r"v\.mp4: extractor wrong returned xy \(3, 33, 2\)"):
        ensure_pose(video, Wrong())
    assert not (tmp_path / "v.pose").exists()
    with pytest.raises(InputError, match="missing.mp4: video not found"):
        ensure_pose(tmp_path / "missing.mp4", Wrong())
    with pytest.raises(ConfigError, match="unknown keypoint extractor 'nope'"):
        make_extractor("nope")
    # the MediaPipe backend: a model is required, must exist, and mediapipe must be installed
    with pytest.raises(ConfigError, match="needs --extractor-model"):
        make_extractor("mediapipe")
    with pytest.raises(InputError, match="holistic.task: MediaPipe model file not found"):
        make_extractor("mediapipe", model=str(tmp_path / "holistic.task"))
    model = tmp_path / "holistic_landmarker.task"
    model.write_bytes(b"model")
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install mediapipe"):
            make_extractor("mediapipe", model=str(model))


def test_backend_list_says_what_each_needs(capsys):
    """`--extractor-backend list`: every backend people use, whether it runs here, what it needs."""
    from slt_llm.data.extract import BACKENDS

    assert extract_cli(["--extractor-backend", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert {"mediapipe", "rtmlib", "mmpose", "openpose", "alphapose", "pose-format"} <= set(rows)
    try:
        import mediapipe  # noqa: F401
        assert "runs here" in rows["mediapipe"]
    except ImportError:
        assert "not installed" in rows["mediapipe"] and "pip install mediapipe" in rows["mediapipe"]
    for name in ("rtmlib", "mmpose", "openpose", "alphapose"):
        assert "run it yourself" in rows[name] and "slt-llm import-pose" in rows[name]
        assert "slt-llm import-pose" in BACKENDS[name].needs
    assert "video_to_pose" in rows["pose-format"]


@pytest.mark.parametrize("name", ["rtmlib", "mmpose", "openpose", "alphapose", "pose-format"])
def test_a_backend_run_elsewhere_is_one_line(name, tmp_path, realdata, capsys):
    video = tmp_path / "v.mp4"
    shutil.copy(realdata / "football.mp4", video)
    assert extract_cli([str(video), "--extractor-backend", name]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"keypoint extractor {name!r}" in err
    assert ("import-pose" in err) or ("video_to_pose" in err)
    assert not list(tmp_path.glob("*.pose"))
    with pytest.raises(ConfigError, match="extract --extractor-backend list"):
        make_extractor("rtmlib-typo")
