"""``slt-llm inspect``: look at what the data layer makes of one video.

    slt-llm inspect VIDEO [--pose FILE] [--pose-dir DIR] --out sheet.png [--json boxes.json] [--frames N]

The contact sheet (PNG, Pillow) has one row per sampled frame: the frame with
its keypoints (body red, face yellow, left hand green, right hand blue) and
hand boxes (left green, right blue), then the left and right hand crops
(the crops the model gets, shown larger). The JSON lists every decoded frame:
``{"video", "fps", "pose", "layout", "width", "height", "frames": [{"t": s,
"left": [x0,y0,x1,y1] | null, "right": ...}]}`` in source pixel coordinates.
A video without keypoints (no ``--pose``, no ``<stem>.pose`` beside it or in
``--pose-dir``) is still drawn, frames only (``pose`` and ``layout`` null, no
boxes), so one can see how an odd video decodes; the command says in one line
that hand boxes need keypoints and exits 0.
Cost: one decode at <= 640 px (capped at ``--max-frames``), one PIL draw per
sampled frame.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from slt_llm.config import ClipConfig
from slt_llm.data.clip import find_pose, frame_keypoints
from slt_llm.data.hands import crop_hands, hand_boxes
from slt_llm.data.layout import LEFT_HAND, RIGHT_HAND
from slt_llm.data.pose import fill_gaps, read_pose
from slt_llm.errors import InputError

__all__ = ["inspect_video"]

_BODY_C, _FACE_C, _LEFT_C, _RIGHT_C = (230, 40, 40), (240, 220, 40), (40, 220, 60), (60, 120, 255)
_ROW_H = 240  # contact-sheet row height in pixels


def _box_json(b):
    return None if not np.isfinite(b).all() else [round(float(v), 1) for v in b]


def inspect_video(video, out_png, *, pose=None, pose_dir=None, json_path=None, frames: int = 8,
                  cfg: ClipConfig | None = None, max_frames: int = 2000) -> dict:
    """Write the contact sheet (and the boxes JSON when ``json_path``); return the JSON dict.
    Without keypoints (none found and no ``pose`` given) the sheet shows the
    frames only and ``info["pose"]`` is None."""
    from PIL import Image, ImageDraw

    from slt_llm.data.video import load_frames

    cfg = cfg or ClipConfig()
    try:
        pose_path = find_pose(video, pose, pose_dir)
    except InputError:
        if pose is not None:  # an explicit --pose that is not there stays an error
            raise
        pose_path = None  # no keypoints: draw the frames anyway
    kp = fill_gaps(read_pose(pose_path), cfg.max_gap) if pose_path is not None else None
    fr = load_frames(video, fps=None, max_fps=None, max_frames=max_frames, max_side=640)
    T = fr.frames.shape[0]
    if kp is not None:
        akp, _ = frame_keypoints(kp, fr, pose_path=pose_path)
        boxes = hand_boxes(akp, cfg)  # (T,2,4) source px
    else:
        akp, boxes = None, np.full((T, 2, 4), np.nan, np.float32)
    info = {
        "video": str(video),
        "fps": float(fr.fps),
        "pose": None if pose_path is None else str(pose_path),
        "layout": None if kp is None else kp.layout,
        "width": int(fr.src_width),
        "height": int(fr.src_height),
        "frames": [
            {"t": round(float(fr.times[t]), 4), "left": _box_json(boxes[t, 0]), "right": _box_json(boxes[t, 1])}
            for t in range(T)
        ],
    }

    n = max(1, min(int(frames), T))
    idx = np.unique(np.round(np.linspace(0, T - 1, n)).astype(int))
    scale = float(fr.scale)
    crops = crop_hands(fr.frames[idx], boxes[idx] * scale, _ROW_H // 2 * 2) if akp is not None else None  # (n,2,S,S,3)
    H, W = fr.frames.shape[1:3]
    fw = max(1, int(round(W * _ROW_H / H)))
    sheet_w = fw + 8 + (2 * _ROW_H + 8 if crops is not None else 0)
    sheet = Image.new("RGB", (sheet_w, len(idx) * (_ROW_H + 8) + 8), (24, 24, 24))
    for r, t in enumerate(idx):
        img = Image.fromarray(fr.frames[t]).resize((fw, _ROW_H), Image.BILINEAR)
        d = ImageDraw.Draw(img)
        k = _ROW_H / (H / scale)  # source px -> row px
        for j in range(akp.xy.shape[1] if akp is not None else 0):
            if akp.conf[t, j] <= 0:
                continue
            x, y = akp.xy[t, j] * k
            col = _LEFT_C if LEFT_HAND.start <= j < LEFT_HAND.stop else _RIGHT_C if j >= RIGHT_HAND.start \
                else _FACE_C if 7 <= j <= 10 else _BODY_C
            rad = 1.5 if j >= LEFT_HAND.start else 2.5
            d.ellipse([x - rad, y - rad, x + rad, y + rad], fill=col)
        for s, col in ((0, _LEFT_C), (1, _RIGHT_C)):
            b = boxes[t, s]
            if np.isfinite(b).all():
                d.rectangle([float(v) * k for v in b], outline=col, width=2)
        d.text((4, 4), f"t={fr.times[t]:.2f}s  #{t}", fill=(255, 255, 255))
        y0 = 8 + r * (_ROW_H + 8)
        sheet.paste(img, (4, y0))
        for s, col in ((0, _LEFT_C), (1, _RIGHT_C)) if crops is not None else ():
            x0 = fw + 8 + s * (_ROW_H + 4)
            sheet.paste(Image.fromarray(crops[r, s]), (x0, y0))
            ImageDraw.Draw(sheet).rectangle([x0, y0, x0 + _ROW_H - 1, y0 + _ROW_H - 1], outline=col, width=2)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    if json_path is not None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_path.with_name(json_path.name + ".tmp")
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, json_path)
    return info
