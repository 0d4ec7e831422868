"""Hand-motion descriptions from keypoints: ``slt-llm describe``.

BeyondGloss (Asasi et al., BMVC 2025) has a VideoLLM describe each 16-frame
segment's handshapes, hand positions and movements, and a second LLM merge
the segments into one time-ordered description that a contrastive loss then
aligns with the video. No VideoLLM runs here, so this module writes the same
kind of text from the keypoints (the canonical layout of
``slt_llm.data.pose``) with fixed, documented rules (docs/hand_descriptions.md).
Descriptions made elsewhere (by a VideoLLM) go into the same JSONL file and are
read by id (:class:`Descriptions`).

Per video::

    keypoints (T,53) -> fill_gaps -> normalize (neck 0, shoulder width 1)
        -> per frame, per hand (numpy, vectorised over frames): presence,
           finger states, handshape name, finger direction, palm facing,
           palm-centre position, location zone
        -> per segment of ``segment`` keypoint frames, per hand: the most
           frequent handshape / direction / palm / location of the frames that
           show the hand, and the movement of the palm centre (still, straight
           with direction, back and forth, circular, zigzag; extent, speed)
        -> both hands: touching, mirrored or parallel movement
        -> English: one sentence per hand per segment, merged in time order
           (segments that say the same thing are merged).

Output row (one per video)::

    {"id", "video", "description", "segments": [{"index", "start", "end",
     "frames": [a, b], "hands": {"left": {...}, "right": {...}}, "both": {...},
     "text"}]}

Deterministic (no randomness, no model). Cost: O(T) numpy per video; the
``.pose`` read dominates (a few ms for 60 frames).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from slt_llm.data.layout import LEFT_HAND, RIGHT_HAND
from slt_llm.errors import InputError

__all__ = [
    "HAND_SHAPES", "finger_states", "handshape_names", "hand_frames", "movement", "describe_window",
    "describe_keypoints", "describe_samples", "write_descriptions", "read_descriptions",
    "Descriptions", "input_samples",
]

SEGMENT = 16  # keypoint frames per segment (BeyondGloss: 16 video frames)
MAX_GAP = 8  # keypoint gaps up to this many frames are interpolated (as ClipConfig.max_gap)

# finger chains in MediaPipe hand order: (first, second, third, tip)
_FINGERS = {"thumb": (1, 2, 3, 4), "index": (5, 6, 7, 8), "middle": (9, 10, 11, 12),
            "ring": (13, 14, 15, 16), "pinky": (17, 18, 19, 20)}
FINGER_NAMES = tuple(_FINGERS)

# finger-state thresholds (see docs/hand_descriptions.md): straightness = |tip - mcp| /
# chain length; reach = |tip - wrist| / |middle_mcp - wrist| (the palm length)
STRAIGHT_EXTENDED = 0.9
STRAIGHT_BENT = 0.72
REACH_EXTENDED = 1.3
THUMB_OUT_REACH = 1.1  # |thumb tip - pinky mcp| / palm length above which the thumb is out
SPREAD_DEG = 7.0  # mean angle between neighbouring extended fingers above which they are spread

# (thumb out, index, middle, ring, pinky) with E extended, C curled -> name; claw and the
# spread variants are decided before this table (``handshape_names``)
HAND_SHAPES = {
    (False, "CCCC"): "fist",
    (True, "CCCC"): "fist with the thumb out",
    (False, "EEEE"): "flat hand",
    (True, "EEEE"): "open hand",  # -> "spread hand" when the fingers are spread
    (False, "ECCC"): "index finger",
    (True, "ECCC"): "L hand",
    (False, "EECC"): "two fingers together",  # -> "V hand" when spread
    (True, "EECC"): "three hand",
    (False, "EEEC"): "W hand",
    (True, "EEEC"): "four fingers and thumb",
    (False, "CCCE"): "little finger",
    (True, "CCCE"): "Y hand",
    (False, "ECCE"): "horns",
    (True, "ECCE"): "I-love-you hand",
    (False, "CECC"): "middle finger",
}

STILL_EXTENT = 0.1  # shoulder widths: a palm centre moving less than this is still
SMALL_EXTENT, LARGE_EXTENT = 0.25, 0.6
FAST_SPEED, SLOW_SPEED = 2.0, 0.5  # shoulder widths per second (path length / duration)
TOUCH_DIST = 0.08  # shoulder widths between the nearest points of the two hands
ZIGZAG_RATIO = 0.35  # zigzag: side-to-side spread across the main direction >= this share of the main spread
MIN_HAND_POINTS = 18  # of 21: a hand is present in a frame when this many points are seen


# ------------------------------------------------------------------ per frame
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def finger_states(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame finger states of one hand.

    pts float (T, 21, 2) in any frame of reference (only ratios are used).
    Returns ``(states (T,4) str "E"/"B"/"C" for index..pinky (extended, bent, curled),
    thumb_out (T,) bool, spread_deg (T,) float)``.
    """
    palm = np.maximum(np.linalg.norm(pts[:, 9] - pts[:, 0], axis=-1), 1e-6)  # (T,)
    states = np.full((pts.shape[0], 4), "C", dtype="<U1")
    dirs = []
    for k, name in enumerate(FINGER_NAMES[1:]):
        ch = pts[:, list(_FINGERS[name])]  # (T,4,2)
        chain = np.linalg.norm(np.diff(ch, axis=1), axis=-1).sum(1)  # (T,)
        straight = np.linalg.norm(ch[:, 3] - ch[:, 0], axis=-1) / np.maximum(chain, 1e-6)
        reach = np.linalg.norm(ch[:, 3] - pts[:, 0], axis=-1) / palm
        ext = (straight >= STRAIGHT_EXTENDED) & (reach >= REACH_EXTENDED)
        bent = ~ext & (straight >= STRAIGHT_BENT)
        states[:, k] = np.where(ext, "E", np.where(bent, "B", "C"))
        dirs.append(_unit(ch[:, 3] - ch[:, 0]))
    thumb_out = np.linalg.norm(pts[:, 4] - pts[:, 17], axis=-1) / palm >= THUMB_OUT_REACH
    # spread: mean angle between neighbouring fingers that are both extended
    ang_sum = np.zeros(pts.shape[0])
    ang_n = np.zeros(pts.shape[0])
    for k in range(3):
        both = (states[:, k] == "E") & (states[:, k + 1] == "E")
        cos = np.clip((dirs[k] * dirs[k + 1]).sum(-1), -1.0, 1.0)
        ang_sum += np.where(both, np.degrees(np.arccos(cos)), 0.0)
        ang_n += both
    spread = np.where(ang_n > 0, ang_sum / np.maximum(ang_n, 1), 0.0)
    return states, thumb_out, spread


def handshape_names(states: np.ndarray, thumb_out: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(T,4) finger states, (T,) thumb, (T,) spread -> (T,) handshape names (``HAND_SHAPES``;
    "claw" when at least three of the four fingers are bent; otherwise a list of the extended
    fingers)."""
    out = []
    for row, th, sp in zip(states, thumb_out, spread):
        if (row == "B").sum() >= 3:
            out.append("claw")
            continue
        key = "".join("E" if s == "E" else "C" for s in row)
        name = HAND_SHAPES.get((bool(th), key))
        if name is None:
            ext = [FINGER_NAMES[1 + k] for k in range(4) if key[k] == "E"]
            name = "hand with the " + " and ".join((["thumb"] if th else []) + ext) + " extended"
        if name == "open hand" and sp >= SPREAD_DEG:
            name = "spread hand"
        elif name == "two fingers together" and sp >= SPREAD_DEG:
            name = "V hand"
        out.append(name)
    return np.array(out, dtype=object)


def _sector(v: np.ndarray, side_sign: float, words: dict) -> np.ndarray:
    """(T,2) image-space directions -> (T,) words of 8 sectors; x is flipped by
    ``side_sign`` so "out" means toward the hand's own side."""
    ang = np.degrees(np.arctan2(-v[:, 1], v[:, 0] * side_sign))  # 0 = out, 90 = up
    idx = np.round(ang / 45.0).astype(int) % 8
    keys = ["out", "up-out", "up", "up-in", "in", "down-in", "down", "down-out"]
    return np.array([words[keys[i]] for i in idx], dtype=object)


_FINGER_DIR = {"out": "fingers pointing outward", "up-out": "fingers pointing up and outward",
               "up": "fingers pointing up", "up-in": "fingers pointing up and across the body",
               "in": "fingers pointing across the body", "down-in": "fingers pointing down and across",
               "down": "fingers pointing down", "down-out": "fingers pointing down and outward"}


def _location(c: np.ndarray, lateral: np.ndarray, face: dict) -> np.ndarray:
    """Palm centres (T,2) body-normalised + lateral offset toward the hand's own side ->
    (T,) location phrases (rules in docs/hand_descriptions.md)."""
    y = c[:, 1]
    eye, mouth = face["eye_y"], face["mouth_y"]
    chin = mouth + 0.5 * (0.0 - mouth)  # half way from the mouth to the shoulder line
    bands = np.select([y < eye - 0.05, y < mouth - 0.04, y < chin, y < 0.12, y < 0.55, y < 0.95],
                      ["forehead", "face", "chin", "neck", "chest", "stomach"], "low")
    out = []
    for b, lat in zip(bands, lateral):
        if b == "low":
            out.append("lowered at rest" if abs(lat) < 0.9 else "lowered at the side")
        elif lat < -0.25:
            out.append("at the opposite shoulder" if b in ("neck", "chest") else "across the body")
        elif lat <= 0.25:
            out.append({"forehead": "at the forehead", "face": "in front of the face", "chin": "at the chin",
                        "neck": "at the neck", "chest": "at the chest", "stomach": "at the stomach"}[b])
        elif lat <= 0.7:
            out.append({"forehead": "beside the head", "face": "at the cheek", "chin": "beside the chin",
                        "neck": "in neutral space at shoulder height", "chest": "in neutral space",
                        "stomach": "in neutral space, low"}[b])
        else:
            out.append("out to the side")
    return np.array(out, dtype=object)


def _face_refs(kpn: np.ndarray) -> dict:
    """Median eye and mouth heights (body-normalised); typical values when missing."""
    def med(idx, default):
        v = kpn[:, idx]  # (T,k,3)
        ok = (v[..., 2] > 0).all(-1)
        return float(np.median(v[ok, :, 1].mean(-1))) if ok.any() else default

    return {"eye_y": med([7, 8], -0.72), "mouth_y": med([9, 10], -0.45)}


def hand_frames(kpn: np.ndarray, side: str) -> dict:
    """Per-frame description features of one hand.

    kpn float32 (T, 53, 3): normalised keypoints (``slt_llm.data.pose.normalize``).
    Returns a dict of (T,) arrays: ``present`` bool, ``shape``, ``fingers``
    (finger-direction words), ``palm`` (palm-facing words), ``location`` (object arrays,
    "" where the hand is absent), ``centre`` float (T,2) palm centre.
    """
    sl = LEFT_HAND if side == "left" else RIGHT_HAND
    hand = kpn[:, sl]  # (T,21,3)
    pts, conf = hand[..., :2].astype(np.float64), hand[..., 2]
    present = ((conf > 0).sum(1) >= MIN_HAND_POINTS) & (conf[:, 0] > 0) & (conf[:, 9] > 0)
    T = kpn.shape[0]
    # own side: the signer's left is +x in the image (normalised), the right is -x
    side_sign = 1.0 if side == "left" else -1.0
    centre = pts[:, [0, 5, 9, 13, 17]].mean(1)  # (T,2)
    states, thumb, spread = finger_states(pts)
    shape = handshape_names(states, thumb, spread)
    fingers = _sector(pts[:, 9] - pts[:, 0], side_sign, _FINGER_DIR)
    # palm facing from the winding of wrist -> index mcp -> pinky mcp (mirrored for the left hand)
    a, b = pts[:, 5] - pts[:, 0], pts[:, 17] - pts[:, 0]
    cross = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) * side_sign
    size = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-9)
    rel = cross / size
    palm = np.where(rel > 0.2, "palm facing the viewer",
                    np.where(rel < -0.2, "palm facing the signer", "palm edge toward the viewer")).astype(object)
    location = _location(centre, centre[:, 0] * side_sign, _face_refs(kpn))
    blank = np.array([""] * T, dtype=object)
    return {"present": present, "shape": np.where(present, shape, blank), "fingers": np.where(present, fingers, blank),
            "palm": np.where(present, palm, blank), "location": np.where(present, location, blank),
            "centre": centre, "states": states}


# ------------------------------------------------------------------ movement
def _reversals(s: np.ndarray, tol: float) -> int:
    """Sign changes of the steps of a 1-D track, ignoring steps smaller than ``tol``."""
    d = np.diff(s)
    d = d[np.abs(d) > tol]
    return int((np.diff(np.sign(d)) != 0).sum()) if d.size > 1 else 0


def movement(c: np.ndarray, fps: float, side_sign: float) -> dict:
    """Movement of a palm-centre track c (n, 2) (body-normalised, n >= 2 frames).

    Returns ``{"kind": still|straight|back_and_forth|circular|zigzag, "direction": word or "",
    "extent": shoulder widths, "speed": shoulder widths/s, "words": phrase}``; rules in
    docs/hand_descriptions.md.
    """
    n = c.shape[0]
    if n < 2:
        return {"kind": "still", "direction": "", "extent": 0.0, "speed": 0.0, "words": "holds still"}
    extent = float(np.linalg.norm(c.max(0) - c.min(0)))
    steps = np.linalg.norm(np.diff(c, axis=0), axis=-1)
    speed = float(steps.sum() * fps / (n - 1))
    out = {"kind": "still", "direction": "", "extent": round(extent, 3), "speed": round(speed, 3)}
    if extent < STILL_EXTENT:
        out["words"] = "holds still"
        return out
    x = c - c.mean(0)
    cov = x.T @ x / n
    evals, evecs = np.linalg.eigh(cov)  # ascending
    e1, e2 = evecs[:, 1], evecs[:, 0]
    elong = float(np.sqrt(max(evals[0], 0.0) / max(evals[1], 1e-12)))
    s1, s2 = x @ e1, x @ e2
    tol = 0.1 * float(steps.max())
    rev1 = _reversals(s1, tol)
    rev2 = _reversals(s2, tol)
    net = c[-1] - c[0]
    # winding of the track around its centroid
    ang = np.unwrap(np.arctan2(x[:, 1], x[:, 0]))
    winding = float(abs(ang[-1] - ang[0]))
    if elong >= 0.3 and winding >= 1.4 * np.pi and rev1 <= 3:
        kind, direction = "circular", ""
    elif rev1 == 0 and rev2 >= 2 and float(np.ptp(s2)) >= ZIGZAG_RATIO * float(np.ptp(s1)):
        kind, direction = "zigzag", _direction(net, side_sign)
    elif rev1 >= 1 and float(np.linalg.norm(net)) < 0.5 * extent:
        kind, direction = "back_and_forth", _axis(e1, side_sign)
    else:
        kind, direction = "straight", _direction(net, side_sign)
    out.update(kind=kind, direction=direction)
    size = "small " if extent < SMALL_EXTENT else ("large " if extent > LARGE_EXTENT else "")
    pace = ", fast" if speed > FAST_SPEED else (", slowly" if speed < SLOW_SPEED else "")
    if kind == "circular":
        words = f"moves in a {size}circle"
    elif kind == "zigzag":
        words = f"moves {direction} in a {size}zigzag"
    elif kind == "back_and_forth":
        rep = "repeatedly " if rev1 >= 2 else ""
        words = f"moves {rep}{direction} in {'small ' if size == 'small ' else ''}back-and-forth strokes"
        if direction == "up and down" and rev1 >= 2:
            words = f"taps {'lightly ' if size == 'small ' else ''}up and down repeatedly"
    else:
        words = f"moves {size}{direction}" if not size else f"makes a {size.strip()} movement {direction}"
    out["words"] = words + pace
    return out


def _direction(v: np.ndarray, side_sign: float) -> str:
    """Net displacement (2,) -> one of 8 direction words (out = toward the hand's own side)."""
    return _sector(v[None], side_sign, {
        "out": "outward", "up-out": "up and outward", "up": "up", "up-in": "up and across the body",
        "in": "across the body", "down-in": "down and across the body", "down": "down",
        "down-out": "down and outward"})[0]


def _axis(e: np.ndarray, side_sign: float) -> str:
    """Principal axis (2,) -> "side to side" | "up and down" | "diagonally"."""
    a = abs(np.degrees(np.arctan2(e[1], e[0]))) % 180
    a = min(a, 180 - a)  # 0 = horizontal, 90 = vertical
    return "side to side" if a < 30 else ("up and down" if a > 60 else "diagonally")


# ------------------------------------------------------------------ segments
def _mode(values: np.ndarray) -> str:
    vals = [v for v in values if v]
    if not vals:
        return ""
    counts = Counter(vals)
    best = max(counts.values())
    return next(v for v in vals if counts[v] == best)  # first reaching the top count: deterministic


def describe_window(feat: dict, a: int, b: int, fps: float, side: str) -> dict:
    """One hand over frames [a, b): most frequent per-frame words + movement of the frames that
    show the hand. ``{"visible": share of frames, "shape", "fingers", "palm", "location",
    "movement": {...}}``."""
    pres = feat["present"][a:b]
    out = {"visible": round(float(pres.mean()) if b > a else 0.0, 3)}
    if pres.sum() < max(2, 0.3 * (b - a)):
        out.update(shape="", fingers="", palm="", location="", region="", movement=None)
        return out
    for k in ("shape", "fingers", "palm", "location"):
        out[k] = _mode(feat[k][a:b][pres])
    out["region"] = _REGION.get(out["location"], "body")
    out["movement"] = movement(feat["centre"][a:b][pres], fps, 1.0 if side == "left" else -1.0)
    return out


def _both(fl: dict, fr: dict, kpn: np.ndarray, a: int, b: int, hands: dict) -> dict:
    """Two-hand relations over frames [a, b): touching, mirrored / parallel movement (only
    when neither hand's movement is "still")."""
    both = fl["present"][a:b] & fr["present"][a:b]
    out = {"touch": False, "relation": ""}
    if both.sum() < 2:
        return out
    L = kpn[a:b][both][:, LEFT_HAND, :2]  # (n,21,2)
    R = kpn[a:b][both][:, RIGHT_HAND, :2]
    d = np.linalg.norm(L[:, :, None] - R[:, None, :], axis=-1).min(axis=(1, 2))  # (n,)
    out["touch"] = bool((d < TOUCH_DIST).mean() >= 0.25)
    kinds = [(hands[s]["movement"] or {}).get("kind", "still") for s in ("left", "right")]
    if "still" in kinds:
        return out
    vl = np.diff(fl["centre"][a:b][both], axis=0)
    vr = np.diff(fr["centre"][a:b][both], axis=0)
    def corr(p, q):
        p, q = p - p.mean(), q - q.mean()
        den = np.sqrt((p * p).sum() * (q * q).sum())
        return float((p * q).sum() / den) if den > 1e-9 else 0.0
    cy = corr(vl[:, 1], vr[:, 1])
    cx = corr(vl[:, 0], vr[:, 0])
    if cy > 0.5 and cx < -0.3:
        out["relation"] = "mirror"
    elif cy > 0.5 and cx > 0.3:
        out["relation"] = "parallel"
    elif cx < -0.5 and abs(cy) < 0.5:
        out["relation"] = "mirror"  # a horizontal mirror movement (toward / away from each other)
    return out


# coarse region of each location phrase (what the cross-extractor test compares)
_REGION = {"at the forehead": "head", "in front of the face": "head", "at the chin": "head",
           "beside the head": "head", "at the cheek": "head", "beside the chin": "head",
           "lowered at rest": "low", "lowered at the side": "low"}


def _hand_sentence(side: str, h: dict, prev: Optional[dict]) -> str:
    """One sentence for one hand in one segment; the handshape, finger direction and palm are
    only repeated when they changed since the hand was last described."""
    who = "The left hand" if side == "left" else "The right hand"
    if not h["shape"]:
        return ""
    mv = h["movement"]
    if h["location"].startswith("lowered") and mv["kind"] == "still":
        return f"{who} is lowered."
    same = prev is not None and all(prev.get(k) == h[k] for k in ("shape", "fingers", "palm"))
    if same:
        return f"{who} stays {h['location']} and {mv['words']}." if mv["kind"] == "still" else \
            f"{who} {mv['words']}, {h['location']}."
    art = "an" if h["shape"][0] in "aeiouAEIOU" or h["shape"].startswith(("L ", "I-")) else "a"
    return f"{who}, {art} {h['shape']} with the {h['fingers']} and the {h['palm']}, is {h['location']} and {mv['words']}."


def _both_sentence(both: dict) -> str:
    parts = []
    if both["relation"] == "mirror":
        parts.append("The hands move in mirror image")
    elif both["relation"] == "parallel":
        parts.append("The hands move together in the same direction")
    if both["touch"]:
        parts.append("the hands touch" if parts else "The hands touch")
    return (", and ".join(parts) + ".") if parts else ""


def _merge(segments: list) -> str:
    """Segment texts in time order; consecutive segments with the same text are merged."""
    runs: list = []
    for s in segments:
        if s["text"] and runs and runs[-1][0] == s["text"]:
            runs[-1][2] = s["end"]
        elif s["text"]:
            runs.append([s["text"], s["start"], s["end"]])
    if not runs:
        return "No hands are visible."
    if len(runs) == 1:
        return runs[0][0]
    lead = ["First", "Then", "Next"]
    parts = []
    for i, (text, _, _) in enumerate(runs):
        word = "Finally" if i == len(runs) - 1 else lead[min(i, 2) if i < 2 else 2 - (i % 2)]
        parts.append(f"{word}: {text}")
    return " ".join(parts)


def describe_keypoints(kp, *, segment: int = SEGMENT, start: Optional[float] = None,
                       end: Optional[float] = None) -> dict:
    """``Keypoints`` -> ``{"description", "segments"}`` (see the module docstring).

    ``start``/``end`` (seconds) keep the track's frames in [start, end). Segments are
    ``segment`` consecutive keypoint frames (the last one may be shorter; a last piece
    shorter than a quarter segment joins the one before).
    """
    from slt_llm.data.pose import fill_gaps, normalize

    if segment < 2:
        raise ValueError(f"segment must be >= 2 frames, got {segment}")
    kp = fill_gaps(kp, MAX_GAP)
    kpn = normalize(kp)  # (T,53,3)
    t = kp.times
    keep = np.ones(kp.num_frames, bool)
    if start is not None:
        keep &= t >= float(start) - 0.5 / kp.fps
    if end is not None:
        keep &= t < float(end)
    kpn, t = kpn[keep], t[keep]
    T = kpn.shape[0]
    feats = {s: hand_frames(kpn, s) for s in ("left", "right")}
    bounds = list(range(0, T, segment)) + [T]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < max(2, segment // 4):
        bounds.pop(-2)
    segs = []
    prev: dict = {"left": None, "right": None}
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        hands = {s: describe_window(feats[s], a, b, kp.fps, s) for s in ("right", "left")}
        both = _both(feats["left"], feats["right"], kpn, a, b, hands)
        text = " ".join(x for x in [_hand_sentence("right", hands["right"], prev["right"]),
                                    _hand_sentence("left", hands["left"], prev["left"]),
                                    _both_sentence(both)] if x)
        for sd in ("left", "right"):
            if hands[sd]["shape"]:
                prev[sd] = hands[sd]
        segs.append({"index": i, "start": round(float(t[a]), 3), "end": round(float(t[b - 1] + 1.0 / kp.fps), 3),
                     "frames": [int(a), int(b)], "hands": hands, "both": both, "text": text})
    return {"description": _merge(segs), "segments": segs}


# ------------------------------------------------------------------ files
def describe_samples(samples: Iterable, *, segment: int = SEGMENT, pose_dir=None) -> tuple[list, list]:
    """Manifest ``Sample``s -> (rows, errors): one row per readable sample, an
    ``InputError`` message per unreadable one (missing or bad keypoints)."""
    from slt_llm.data.clip import find_pose
    from slt_llm.data.pose import read_pose

    rows, errors = [], []
    for s in samples:
        try:
            kp = read_pose(find_pose(s.video, s.pose, pose_dir))
            d = describe_keypoints(kp, segment=segment, start=s.start, end=s.end)
        except InputError as e:
            errors.append(str(e))
            continue
        rows.append({"id": s.id, "video": str(s.video), **d})
    return rows, errors


def write_descriptions(path, rows: list) -> Path:
    """Rows -> JSONL (one object per line, written atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


class Descriptions(dict):
    """id -> description text, read from a descriptions JSONL; ``.path`` is the file.
    ``descs[id]`` for an id the file lacks raises a one-line ``InputError`` naming the
    file and the id."""

    path: str = ""

    def __missing__(self, key):
        raise InputError(self.path, f"no description for id {key!r} (the file has {len(self)} descriptions; "
                                    f"write them with `slt-llm describe`)")


def read_descriptions(path) -> Descriptions:
    """Read ``{"id", "description", ...}`` rows (from ``slt-llm describe`` or written by a
    VideoLLM elsewhere: only ``id`` and a non-empty ``description`` string are required).
    Raises ``InputError`` naming the file and the line for a missing file, bad JSON, a row
    without id/description, or a duplicated id."""
    from slt_llm.data.manifest import jsonl_objects

    p = Path(path)
    out = Descriptions()
    out.path = str(p)
    for n, row in jsonl_objects(p, "descriptions file not found (write it with `slt-llm describe INPUT --out FILE`)"):
        if "id" not in row:
            raise InputError(p, f"line {n}: a row needs an \"id\"")
        desc = row.get("description")
        if not isinstance(desc, str) or not desc.strip():
            raise InputError(p, f"line {n}: id {row['id']!r} has no \"description\" text")
        key = str(row["id"])
        if key in out:
            raise InputError(p, f"line {n}: id {key!r} appears twice")
        out[key] = desc.strip()
    return out


def input_samples(path: Path, pose_dir=None) -> list:
    """A manifest (.jsonl) -> its samples; a folder -> one sample per video file, frame
    folder or ``.pose`` file in it; a single video or ``.pose`` file -> one sample."""
    from slt_llm.data.manifest import Sample, read_manifest
    from slt_llm.data.video import is_video_file

    if not path.exists():
        raise InputError(path, "input not found (expected a manifest, a folder of videos or a video)")
    if path.is_file() and path.suffix == ".jsonl":
        return list(read_manifest(path, require_text=False))
    if path.is_file() and path.suffix == ".pose":
        return [Sample(id=path.stem, video=str(path.with_suffix("")), pose=str(path))]
    if path.is_file():
        return [Sample(id=path.stem, video=str(path))]
    out = []
    entries = sorted(path.iterdir())
    stems = set()
    for p in entries:
        if p.is_file() and is_video_file(p):
            out.append(Sample(id=p.stem, video=str(p)))
            stems.update((p.stem, p.name))  # x.pose and x.mp4.pose belong to x.mp4
        elif p.is_dir():
            out.append(Sample(id=p.name, video=str(p)))
            stems.add(p.name)
    for p in entries:  # keypoint files without a video
        if p.is_file() and p.suffix == ".pose" and p.stem not in stems:
            out.append(Sample(id=p.stem, video=str(p.with_suffix("")), pose=str(p)))
    if not out:
        raise InputError(path, "no videos, frame folders or .pose files in this folder")
    return out
