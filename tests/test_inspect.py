"""`slt-llm inspect`: contact sheet PNG + hand boxes JSON on the real football video; odd
videos without keypoints are drawn anyway."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slt_llm.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from test_video import grey, quadrants, write_video  # noqa: E402  (the odd-video writers)


def test_inspect_writes_sheet_and_json(tmp_path, realdata, capsys):
    png, js = tmp_path / "out" / "sheet.png", tmp_path / "boxes.json"
    rc = main(["inspect", str(realdata / "football.mp4"), "--pose",
               str(realdata / "football_mmpose_wholebody.pose"), "--out", str(png), "--json", str(js),
               "--frames", "4"])
    assert rc == 0
    assert "hand boxes left 62, right 62" in capsys.readouterr().out
    img = Image.open(png)
    img.load()
    assert img.mode == "RGB" and img.height > 4 * 200 and img.width > 600
    arr = np.asarray(img)
    # the sheet shows coloured annotations: green (left) and blue (right) box outlines are present
    assert ((arr[..., 1] > 200) & (arr[..., 0] < 80) & (arr[..., 2] < 100)).sum() > 500
    assert ((arr[..., 2] > 230) & (arr[..., 0] < 80) & (arr[..., 1] < 140)).sum() > 500

    info = json.loads(js.read_text())
    assert set(info) >= {"video", "fps", "frames"}
    assert info["video"].endswith("football.mp4") and abs(info["fps"] - 29.97) < 0.01
    frames = info["frames"]
    assert len(frames) == 62
    ts = [f["t"] for f in frames]
    assert ts[0] == 0.0 and all(b > a for a, b in zip(ts, ts[1:]))
    for f in frames:
        assert set(f) == {"t", "left", "right"}
        for side in ("left", "right"):
            box = f[side]
            assert box is None or (len(box) == 4 and box[0] < box[2] and box[1] < box[3])
    # source pixels of the 640x360 video: the boxes sit in the signer's chest area
    c = np.array([[(f["left"][0] + f["left"][2]) / 2, (f["left"][1] + f["left"][3]) / 2] for f in frames])
    assert (c[:, 0] > 250).all() and (c[:, 0] < 420).all() and (c[:, 1] > 150).all() and (c[:, 1] < 260).all()


def test_inspect_errors_are_one_line(tmp_path, realdata, capsys):
    bad = tmp_path / "bad.pose"
    bad.write_bytes(b"\x00garbage")
    rc = main(["inspect", str(realdata / "football.mp4"), "--pose", str(bad), "--out", str(tmp_path / "s.png")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "bad.pose" in err and "Traceback" not in err
    rc = main(["inspect", str(realdata / "selfie_sign.mp4"), "--pose", str(tmp_path / "nope.pose"), "--out", str(tmp_path / "s.png")])
    err = capsys.readouterr().err  # an explicit --pose that is not there is an error, not "no keypoints"
    assert rc == 2 and "nope.pose: pose file not found" in err and err.count("\n") == 1
    assert not (tmp_path / "s.png").exists()


# the odd videos of test_video.py: (name, codec, write_video kwargs, frames)
ODD = [
    ("odd_size_444.mp4", "libx264", {"pix_fmt": "yuv444p"}, [grey(i, 63, 47) for i in range(3)]),
    ("chroma_444.mkv", "libx264", {"pix_fmt": "yuv444p"}, [grey(i) for i in range(3)]),
    ("vp9.webm", "libvpx-vp9", {}, [grey(i) for i in range(3)]),
    ("mpeg4.avi", "mpeg4", {}, [grey(i) for i in range(3)]),
    ("hevc10.mp4", "libx265", {"pix_fmt": "yuv420p10le"}, [grey(i) for i in range(3)]),
    ("one_frame.mp4", "libx264", {}, [grey(4)]),
    ("vfr.mkv", "libx264", {"pts_ms": [0, 100, 150, 400]}, [grey(i) for i in range(4)]),
    ("rot90.mp4", "libx264", {"rotation": 90}, [quadrants()] * 2),
]


def test_inspect_without_keypoints_draws_odd_videos(tmp_path, capsys):
    """No .pose and no extractor: every odd video of test_video.py is still
    drawn (frames only, as decoded, upright), the JSON has every frame with no
    boxes, one line says hand boxes need keypoints, exit 0."""
    import av

    for name, codec, kw, images in ODD:
        if codec not in av.codecs_available:
            continue
        v = write_video(tmp_path / name, codec, images, rate=10, **kw)
        png, js = tmp_path / f"{name}.png", tmp_path / f"{name}.json"
        rc = main(["inspect", str(v), "--out", str(png), "--json", str(js), "--frames", "3"])
        out, err = capsys.readouterr()
        assert rc == 0 and err == "", (name, err)
        assert out.count("\n") == 1 and "no keypoints found" in out and "hand boxes need keypoints" in out, out
        info = json.loads(js.read_text())
        n = len(images)
        assert info["pose"] is None and info["layout"] is None and len(info["frames"]) == n, name
        assert all(f["left"] is None and f["right"] is None for f in info["frames"])
        if "pts_ms" in kw:
            assert [f["t"] for f in info["frames"]] == pytest.approx([t / 1000 for t in kw["pts_ms"]], abs=2e-3)
        sheet = np.asarray(Image.open(png).convert("RGB")).astype(np.float32)
        h, w = images[0].shape[:2]
        if "rotation" in kw:
            h, w = w, h
        fw = max(1, round(w * 240 / h))
        assert sheet.shape == (min(3, n) * 248 + 8, fw + 8, 3), name  # frames only, no crop columns
        for r in range(min(3, n)):
            cell = sheet[8 + r * 248 + 20 : 8 + r * 248 + 240, 4 + 2 : 4 + fw - 2]  # below the label
            if "rotation" in kw:  # upright: the card's red top-right corner is now top-left
                assert np.abs(cell[:40, :40].mean((0, 1)) - (255, 0, 0)).max() < 30, name
            else:
                want = images[int(round(np.linspace(0, n - 1, min(3, n))[r]))].mean()
                assert abs(cell.mean() - want) < 6, (name, r, cell.mean(), want)
