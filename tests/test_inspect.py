"""`slt-llm inspect`: contact sheet PNG + hand boxes JSON on the real football video."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from slt_llm.cli import main


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
    rc = main(["inspect", str(realdata / "selfie_sign.mp4"), "--out", str(tmp_path / "s.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "no keypoints found" in err and "slt-llm extract" in err
