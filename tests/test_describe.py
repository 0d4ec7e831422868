"""Hand-motion descriptions from keypoints (slt_llm.data.describe)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from slt_llm.data import describe as D
from slt_llm.data.pose import read_pose
from slt_llm.errors import InputError

REAL = Path(__file__).parent / "data" / "realdata"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))


def _moving(seg, side):
    mv = seg["hands"][side]["movement"]
    return mv is not None and mv["kind"] != "still"


def test_two_extractors_agree_on_which_hand_moves_and_where():
    """MediaPipe Holistic and MMPose whole-body keypoints of the same real video (FOOTBALL)."""
    a = D.describe_keypoints(read_pose(REAL / "football_mediapipe_holistic.pose"))
    b = D.describe_keypoints(read_pose(REAL / "football_mmpose_wholebody.pose"))
    assert len(a["segments"]) == len(b["segments"]) == 4
    moving_agree, where_agree, n = 0, 0, 0
    for sa, sb in zip(a["segments"], b["segments"]):
        for side in ("left", "right"):
            ha, hb = sa["hands"][side], sb["hands"][side]
            assert ha["visible"] > 0.9 and hb["visible"] > 0.9
            n += 1
            moving_agree += _moving(sa, side) == _moving(sb, side)
            where_agree += ha["region"] == hb["region"]
    # one borderline segment is allowed: the last segment's right hand moves 0.12 shoulder widths in
    # the MediaPipe track (just above the 0.1 "still" threshold) and 0.03 in the MMPose track
    assert moving_agree >= n - 1 and where_agree == n
    for d in (a, b):  # the more active hand over the clip: the right hand in both
        ext = {h: sum(s["hands"][h]["movement"]["extent"] for s in d["segments"]) for h in ("left", "right")}
        assert ext["right"] > 1.2 * ext["left"]
    # FOOTBALL: both hands in front of the body, the right hand moves back and forth from the second segment
    assert all(s["hands"][h]["region"] == "body" for s in a["segments"] for h in ("left", "right"))
    assert [_moving(s, "right") for s in a["segments"][1:3]] == [True, True]
    assert [_moving(s, "right") for s in b["segments"][1:3]] == [True, True]
    assert "side to side" in a["description"] and "side to side" in b["description"]


def test_synthetic_handshape_and_movement_words_match_the_generator():
    """Rates measured on 20 synthetic sentences (94 signs); docs/hand_descriptions.md gives
    the rates on 100 sentences (handshape 100%, movement 92%)."""
    import describe_accuracy

    r = describe_accuracy.evaluate(20, seed=0)
    assert r["signs"] > 80
    assert r["acc"]["handshape"] >= 0.95
    assert r["acc"]["movement"] >= 0.9
    assert r["acc"]["fingers"] >= 0.9


def test_handshapes_are_named_under_rotation_and_mirroring():
    from slt_llm.synth import render as synth
    from describe_accuracy import SHAPE_WORDS

    rng = np.random.default_rng(0)
    for shape, word in SHAPE_WORDS.items():
        tmpl = synth.hand_template(shape).astype(np.float64)
        pts = []
        for k in range(8):  # 8 rotations, odd ones mirrored (the other hand), scaled and shifted
            a = np.radians(rng.uniform(0, 360))
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
            p = tmpl * (np.array([-1.0, 1.0]) if k % 2 else 1.0)
            pts.append(p @ rot.T * rng.uniform(0.1, 3.0) + rng.normal(0, 5, 2))
        names = D.handshape_names(*D.finger_states(np.stack(pts)))
        assert list(names) == [word] * 8, (shape, list(names))


def test_movement_rules_on_known_tracks():
    u = np.linspace(0, 1, 13)
    circle = np.stack([0.3 * np.cos(2 * np.pi * u), 0.3 * np.sin(2 * np.pi * u)], 1)
    assert D.movement(circle, 12.0, -1.0)["kind"] == "circular"
    down = np.stack([np.zeros_like(u), 0.4 * u], 1)  # +y is down in image coordinates
    m = D.movement(down, 12.0, -1.0)
    assert (m["kind"], m["direction"]) == ("straight", "down")
    # the right hand (side_sign -1) moving toward -x moves outward, the left hand toward +x too
    out_r = D.movement(np.stack([-0.4 * u, np.zeros_like(u)], 1), 12.0, -1.0)
    out_l = D.movement(np.stack([0.4 * u, np.zeros_like(u)], 1), 12.0, 1.0)
    assert out_r["direction"] == out_l["direction"] == "outward"
    side = np.stack([0.3 * np.sin(2 * np.pi * u), np.zeros_like(u)], 1)
    m = D.movement(side, 12.0, 1.0)
    assert (m["kind"], m["direction"]) == ("back_and_forth", "side to side")
    still = np.random.default_rng(0).normal(0, 0.005, (13, 2))
    assert D.movement(still, 12.0, 1.0)["kind"] == "still"
    # speed: 0.4 shoulder widths in 1 s
    assert m["speed"] > 0 and abs(D.movement(down, 12.0, -1.0)["speed"] - 0.4) < 1e-6


def test_cli_writes_rows_and_descriptions_are_read_by_id(tmp_path, capsys):
    from slt_llm.cli import main

    src = tmp_path / "in"
    src.mkdir()
    (src / "football.pose").write_bytes((REAL / "football_mediapipe_holistic.pose").read_bytes())
    (src / "broken.pose").write_bytes(b"not a pose file")
    out = tmp_path / "desc.jsonl"
    assert main(["describe", str(src), "--out", str(out), "--segment", "20"]) == 1  # one input skipped
    assert "broken.pose" in capsys.readouterr().out
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["football"]
    assert set(rows[0]) == {"id", "video", "description", "segments"}
    assert [s["frames"] for s in rows[0]["segments"]] == [[0, 20], [20, 40], [40, 62]]
    # deterministic: the same text again
    again = D.describe_keypoints(read_pose(REAL / "football_mediapipe_holistic.pose"), segment=20)
    assert again["description"] == rows[0]["description"]

    descs = D.read_descriptions(out)
    assert descs["football"] == rows[0]["description"]
    with pytest.raises(InputError) as e:
        descs["train_00007"]
    assert str(out) in str(e.value) and "'train_00007'" in str(e.value) and "\n" not in str(e.value)


def test_descriptions_written_elsewhere_and_bad_files(tmp_path):
    p = tmp_path / "videollm.jsonl"
    p.write_text('{"id": "a", "description": "The right hand moves up."}\n\n{"id": 7, "description": "x"}\n')
    d = D.read_descriptions(p)
    assert d["a"] == "The right hand moves up." and d["7"] == "x"
    for text, what in (('{"id": "a"}\n', "no \"description\""), ("{oops\n", "line 1: not JSON"),
                       ('{"id": "a", "description": "x"}\n{"id": "a", "description": "y"}\n', "appears twice")):
        p.write_text(text)
        with pytest.raises(InputError, match=what):
            D.read_descriptions(p)
    with pytest.raises(InputError, match="not found"):
        D.read_descriptions(tmp_path / "missing.jsonl")


def test_start_end_cut_the_track():
    kp = read_pose(REAL / "football_mediapipe_holistic.pose")
    d = D.describe_keypoints(kp, segment=16, start=1.0, end=1.5)
    assert len(d["segments"]) == 1
    assert d["segments"][0]["frames"] == [0, 15]
    assert d["segments"][0]["start"] == pytest.approx(1.0, abs=0.04)
