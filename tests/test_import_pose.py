"""``slt-llm import-pose``: keypoint arrays and JSON from other extractors -> a ``.pose`` file
the project reads like its MediaPipe files (``read_pose`` -> canonical hand/body points).

The arrays are the real MMPose whole-body keypoints of ``football.mp4`` (and the real OpenPose
file) from ``tests/data/realdata``, re-saved in the layouts people have: rtmlib/MMPose arrays,
Uni-Sign's normalised per-frame pickles, AlphaPose-133 JSON, OpenPose JSON folders."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from slt_llm.cli import main
from slt_llm.data.import_pose import import_pose
from slt_llm.data.layout import J_LEFT_WRIST, LEFT_HAND, RIGHT_HAND
from slt_llm.data.pose import read_pose
from slt_llm.errors import InputError

REAL = Path(__file__).parent / "data" / "realdata"  # copies of ../shared/realdata (MIT)
MMPOSE = REAL / "football_mmpose_wholebody.pose"
OPENPOSE = REAL / "openpose_137.pose"
VIDEO = REAL / "football.mp4"


def _arrays(path: Path):
    """(xy (T,N,2), conf (T,N), fps, width, height) of person 0 of a real .pose file."""
    from pose_format import Pose

    p = Pose.read(path.read_bytes())
    xy = np.ma.getdata(p.body.data)[:, 0].astype(np.float64)
    conf = np.asarray(p.body.confidence)[:, 0].astype(np.float64)
    conf[np.ma.getmaskarray(p.body.data)[:, 0].any(-1)] = 0.0
    return xy, conf, float(p.body.fps), p.header.dimensions.width, p.header.dimensions.height


@pytest.fixture(scope="module")
def football():
    return _arrays(MMPOSE)


@pytest.fixture(scope="module")
def expected():
    return read_pose(MMPOSE)


def _same_keypoints(got, want, atol=1e-3):
    assert got.layout == want.layout == "coco_wholebody_133"
    assert (got.width, got.height) == (want.width, want.height)
    assert got.fps == pytest.approx(want.fps, rel=1e-6)
    np.testing.assert_allclose(got.conf, want.conf, atol=1e-6)
    np.testing.assert_allclose(got.xy, want.xy, atol=atol)


def test_npy_with_scores_channel_reads_like_the_real_file(tmp_path, football, expected):
    xy, conf, fps, w, h = football
    src = tmp_path / "clip.npy"
    np.save(src, np.concatenate([xy, conf[..., None]], axis=-1))  # (T,133,3)
    rep = import_pose(src, tmp_path / "clip.pose", width=w, height=h, fps=fps)
    assert (rep.layout, rep.source_format, rep.frames) == ("coco-wholebody", "npy", 62)
    assert rep.multi_person_frames == 0 and not rep.normalised
    got = read_pose(tmp_path / "clip.pose")
    _same_keypoints(got, expected, atol=1e-4)
    # the canonical points are the COCO-WholeBody ones: left wrist = body 9, left index tip = 91 + 8,
    # right pinky tip = 112 + 20 (signer's left/right as COCO-WholeBody names them)
    np.testing.assert_allclose(got.xy[:, J_LEFT_WRIST], np.where(conf[:, 9:10] > 0, xy[:, 9], 0), atol=1e-3)
    np.testing.assert_allclose(got.xy[:, LEFT_HAND.start + 8], xy[:, 91 + 8], atol=1e-3)
    np.testing.assert_allclose(got.xy[:, RIGHT_HAND.start + 20], xy[:, 112 + 20], atol=1e-3)
    assert rep.left_hand_frames == int((got.conf[:, LEFT_HAND] > 0).any(1).sum()) > 0


def test_unisign_pickle_normalised_with_a_second_person_and_the_video(tmp_path, football, expected):
    """Uni-Sign's rtmlib pickle: {"keypoints": [ (P,133,2) / (w,h) per frame ], "scores": [(P,133)]};
    a weaker second person in every third frame is dropped; size and rate come from the video."""
    xy, conf, fps, w, h = football
    rng = np.random.default_rng(0)
    kps, scores = [], []
    for t in range(len(xy)):
        people_xy, people_c = [xy[t] / (w, h)], [conf[t]]
        if t % 3 == 0:  # a bystander, less certain: pick per frame by mean score
            people_xy.insert(0, rng.uniform(0, 1, (133, 2)))
            people_c.insert(0, conf[t] * 0.5)
        kps.append(np.stack(people_xy).astype(np.float32))
        scores.append(np.stack(people_c).astype(np.float32))
    src = tmp_path / "football.pkl"
    src.write_bytes(pickle.dumps({"keypoints": kps, "scores": scores}))
    out = tmp_path / "football.mp4.pose"
    rep = import_pose(src, out, video=VIDEO)
    assert rep.normalised and rep.multi_person_frames == 21 and (rep.width, rep.height) == (640, 360)
    assert any("highest mean keypoint score" in n for n in rep.notes)
    assert any("normalised" in n for n in rep.notes)
    _same_keypoints(read_pose(out), expected, atol=0.02)  # float32 (x / w) * w
    assert not (tmp_path / "football.mp4.pose.tmp").exists()


def test_npz_dict_with_person_axis_and_recorded_size(tmp_path, football, expected):
    xy, conf, fps, w, h = football
    src = tmp_path / "rtm.npz"
    np.savez(src, keypoints=xy[:, None], scores=conf[:, None], width=w, height=h, fps=fps)  # (T,1,133,2)
    rep = import_pose(src, tmp_path / "rtm.pose")
    assert rep.source_format == "npz" and (rep.width, rep.height) == (w, h)
    assert sum("from the file" in n for n in rep.notes) == 3
    _same_keypoints(read_pose(tmp_path / "rtm.pose"), expected, atol=1e-4)


def test_npy_object_array_of_ragged_frames(tmp_path, football, expected):
    """np.save of a list of per-frame arrays with different person counts (an object array):
    read through the restricted unpickler, one frame with nobody is all missing."""
    xy, conf, fps, w, h = football
    frames = np.empty(len(xy), dtype=object)
    for t in range(len(xy)):
        frames[t] = np.concatenate([xy[t], conf[t][:, None]], -1)[None]  # (1,133,3)
    frames[5] = np.zeros((0, 133, 3))
    src = tmp_path / "ragged.npy"
    np.save(src, frames, allow_pickle=True)
    rep = import_pose(src, tmp_path / "ragged.pose", width=w, height=h, fps=fps)
    assert rep.empty_frames == 1
    got = read_pose(tmp_path / "ragged.pose")
    assert (got.conf[5] == 0).all()
    keep = np.arange(len(xy)) != 5
    np.testing.assert_allclose(got.xy[keep], expected.xy[keep], atol=1e-4)


def test_booby_trapped_pickle_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Trap:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    src = tmp_path / "evil.pkl"
    src.write_bytes(pickle.dumps({"keypoints": np.zeros((2, 133, 2)), "scores": Trap()}))
    with pytest.raises(InputError) as e:
        import_pose(src, tmp_path / "evil.pose", width=10, height=10, fps=25)
    msg = str(e.value)
    assert str(src) in msg and re.search(r"refused to unpickle (posix|os|nt)\.system", msg), msg
    assert not marker.exists() and not (tmp_path / "evil.pose").exists()
    # the command: one line on stderr, exit 2, still nothing run
    assert main(["import-pose", str(src), "--out", str(tmp_path / "evil.pose"), "--width", "10",
                 "--height", "10", "--fps", "25"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "system" in err and str(src) in err
    assert not marker.exists()


def test_alphapose_133_json_groups_people_and_keeps_gaps(tmp_path, football, expected):
    xy, conf, fps, w, h = football
    items = []
    for t in range(len(xy)):
        if t == 10:
            continue  # nobody detected: AlphaPose writes nothing for the frame
        flat = np.concatenate([xy[t], conf[t][:, None]], -1).reshape(-1)
        items.append({"image_id": f"{t}.jpg", "category_id": 1, "keypoints": flat.tolist(), "score": 3.0})
        if t == 20:
            items.append({"image_id": f"{t}.jpg", "category_id": 1, "score": 0.5,
                          "keypoints": (flat * np.tile([1.0, 1.0, 0.1], 133)).tolist()})
    src = tmp_path / "alphapose-results.json"
    src.write_text(json.dumps(items))
    rep = import_pose(src, tmp_path / "ap.pose", width=w, height=h, fps=fps)
    assert rep.source_format == "alphapose-json" and rep.frames == 62
    assert (rep.multi_person_frames, rep.empty_frames) == (1, 1)
    got = read_pose(tmp_path / "ap.pose")
    assert (got.conf[10] == 0).all()
    keep = np.arange(62) != 10
    np.testing.assert_allclose(got.xy[keep], expected.xy[keep], atol=1e-3)


def test_mmpose_inferencer_json(tmp_path, football, expected):
    """MMPose's inferencer predictions: [{"frame_id", "instances": [{"keypoints", "keypoint_scores"}]}]."""
    xy, conf, fps, w, h = football
    preds = [{"frame_id": t, "instances": [{"keypoints": xy[t].tolist(), "keypoint_scores": conf[t].tolist(),
                                            "bbox": [[0, 0, w, h]], "bbox_score": 0.9}]} for t in range(len(xy))]
    src = tmp_path / "results_football.json"
    src.write_text(json.dumps(preds))
    rep = import_pose(src, tmp_path / "mm.pose", video=VIDEO)
    assert rep.source_format == "mmpose-json"
    _same_keypoints(read_pose(tmp_path / "mm.pose"), expected, atol=1e-3)


def test_openpose_json_folder(tmp_path):
    xy, conf, fps, w, h = _arrays(OPENPOSE)
    sizes = [("pose_keypoints_2d", 25), ("face_keypoints_2d", 70), ("hand_left_keypoints_2d", 21),
             ("hand_right_keypoints_2d", 21)]
    folder = tmp_path / "op"
    folder.mkdir()
    for t in range(len(xy)):
        person, off = {}, 0
        for name, n in sizes:
            person[name] = np.concatenate([xy[t, off:off + n], conf[t, off:off + n, None]], -1).reshape(-1).tolist()
            off += n
        (folder / f"clip_{t:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": [person]}))
    out = tmp_path / "op.pose"
    assert main(["import-pose", str(folder), "--layout", "openpose", "--out", str(out), "--width", str(w),
                 "--height", str(h), "--fps", str(fps)]) == 0
    got, want = read_pose(out), read_pose(OPENPOSE)
    assert got.layout == want.layout == "openpose_137"
    np.testing.assert_allclose(got.conf, want.conf, atol=1e-6)
    np.testing.assert_allclose(got.xy, want.xy, atol=1e-3)


def test_cli_prints_what_it_did(tmp_path, football, capsys):
    xy, conf, fps, w, h = football
    src = tmp_path / "k.npy"
    np.save(src, np.concatenate([np.stack([xy, xy + 5], 1), np.stack([conf, conf * 0.2], 1)[..., None]], -1))
    assert main(["import-pose", str(src), "--layout", "coco-wholebody", "--out", str(tmp_path / "k.pose"),
                 "--video", str(VIDEO)]) == 0
    out = capsys.readouterr().out
    assert "62 frames, coco-wholebody, 640x360 at 29.97 fps" in out
    assert "several people in 62 of 62 frames" in out


@pytest.mark.parametrize("case", ["no_size", "no_fps", "wrong_layout", "wrong_points", "off_frame",
                                  "other_video"])
def test_refusals_are_one_line_naming_the_file(tmp_path, football, case):
    xy, conf, fps, w, h = football
    src = tmp_path / "k.npy"
    arr = np.concatenate([xy, conf[..., None]], -1)
    kw = dict(width=w, height=h, fps=fps)
    want = {"no_size": "--width W --height H", "no_fps": "--fps F", "wrong_layout": "expected 137 (openpose)",
            "wrong_points": "rtmlib's to_openpose=True", "off_frame": "outside a 100x100 frame",
            "other_video": "do not match the video"}[case]
    if case == "no_size":
        kw = dict(fps=fps)
    elif case == "no_fps":
        kw = dict(width=w, height=h)
    elif case == "wrong_layout":
        kw["layout"] = "openpose"
    elif case == "wrong_points":
        arr = np.concatenate([arr, arr[:, :1]], 1)  # 134 points
    elif case == "off_frame":
        kw.update(width=100, height=100)
    elif case == "other_video":
        arr, kw = arr[:30], dict(video=VIDEO)  # 30 frames against a 64-frame video
    np.save(src, arr)
    with pytest.raises(InputError) as e:
        import_pose(src, tmp_path / "k.pose", **kw)
    assert want in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "k.pose").exists()
