"""Rendering a synthetic corpus: the signs, the signers, the signing timeline, the frames, the files.

Signs. Each gloss is a fixed combination of handshape (12 finger
configurations -> exact 21 hand keypoints) x orientation x place (locations
relative to the body) x path (movements) x hands (one-handed, two-handed
symmetric, two-handed with a flat base hand). Toy lexicon: 3 x 9 x 7 of the
last three, any two glosses differ in at least two of the five attributes.
Phoenix lexicon (``extended``): 5 orientations, 12 places, 11 paths; a
distance-2 code first, then minimal pairs. Fingerspelled glosses
(``fs-NAME``) are spelled letter by letter (one handshape + orientation per
letter, ~25% of a sign's duration each). The lexicon depends only on the
vocabulary, not on the seed.

Signers. Toy: 4 signers (5-9 frames per sign at 12 fps, 2 transition frames,
jitter). Phoenix: 9 signers with speeds 0.8-1.25x, 1-3 transition frames,
co-articulation (the end of a sign already moves toward the next) and wrist
jitter at the floor measured on real MediaPipe keypoints; the written
keypoints get detector misses (:func:`detector_misses`). Light per-frame
noise. The figure (head, torso, arms, hands drawn from their 21 keypoints
with a filled palm and finger lines) is drawn with PIL from exactly the
(pre-miss) keypoints.

Determinism: the same arguments give identical keypoints and frames (mp4
bytes depend on the encoder build). Cost: on one core about 1-1.5 ms a frame
at 128 px (drawing + x264 encoding).
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np


# ----------------------------------------------------------------------------- lexicon
NUM_SIGNERS = 4
# finger states: thumb, index, middle, ring, pinky (0 = extended, 1 = curled); spread
HANDSHAPES = {
    "A": ([0.3, 1, 1, 1, 1], 0.0),
    "B": ([1, 0, 0, 0, 0], 0.0),
    "5": ([0, 0, 0, 0, 0], 1.0),
    "1": ([1, 0, 1, 1, 1], 0.0),
    "V": ([1, 0, 0, 1, 1], 1.0),
    "W": ([1, 0, 0, 0, 1], 1.0),
    "Y": ([0, 1, 1, 1, 0], 1.0),
    "L": ([0, 0, 1, 1, 1], 0.0),
    "I": ([1, 1, 1, 1, 0], 0.0),
    "horns": ([1, 0, 1, 1, 0], 1.0),
    "claw": ([0.5, 0.55, 0.55, 0.55, 0.55], 1.0),
    "3": ([0, 0, 0, 1, 1], 1.0),
}
ORIENTATIONS = {"up": -90.0, "inward": 0.0, "diag": -45.0}  # degrees, image coords, dominant hand
# place: offset of the dominant wrist from the neck, in shoulder widths (x toward the dominant side)
PLACES_BODY = {
    "forehead": (0.0, -0.95), "chin": (0.05, -0.45), "cheek": (0.3, -0.6),
    "chest": (0.1, 0.3), "other_shoulder": (-0.35, 0.1), "neutral_high": (0.5, -0.2),
    "neutral_low": (0.45, 0.45), "side": (0.8, 0.15), "stomach": (0.05, 0.7),
}
PATHS = ["still", "tap", "sideways", "circle", "diagonal", "down", "zigzag"]
HANDS = ["one", "two_sym", "two_base"]
LEXICON_SEED = 20260426
# the phoenix profile's larger lexicon (about 1,300 signs) also uses these (the toy lexicon does not,
# so it is unchanged)
EXTRA_ORIENTATIONS = {"down": 90.0, "out": 45.0}
EXTRA_PLACES = {"mouth": (0.02, -0.5), "nose": (0.0, -0.7), "ear": (0.45, -0.7)}
EXTRA_PATHS = ["arc", "forward", "shake", "twist"]
ALL_ORIENTATIONS = {**ORIENTATIONS, **EXTRA_ORIENTATIONS}
ALL_PLACES = {**PLACES_BODY, **EXTRA_PLACES}
# fingerspelling (the phoenix profile: ``fs-NAME`` glosses): one handshape + orientation per letter,
# signed in front of the shoulder, each letter ~25% of a sign's duration (~0.17 s)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FS_PLACE = "neutral_high"
FS_SPEED = 0.25


def _letter_sign(ch: str) -> dict:
    shapes, oris = sorted(HANDSHAPES), sorted(ALL_ORIENTATIONS)
    i = LETTERS.index(ch)
    return {"handshape": shapes[i % len(shapes)], "orientation": oris[(i * 7) % len(oris)],
            "place": FS_PLACE, "path": "still", "hands": "one"}


def build_lexicon(words: list, *, extended: bool = False) -> dict:
    """Gloss -> sign parameters; deterministic for the word list (not the seed).

    Any two signs differ in at least 2 of (handshape, orientation, place,
    path, hands). ``extended`` (the phoenix profile) draws from the larger
    parameter sets (:data:`EXTRA_ORIENTATIONS`, ...): 12 x 5 x 12 x 11 x 3
    combinations; when a distance-2 code runs out, the rest differ in at least
    one parameter (minimal pairs, as in real sign languages). Fingerspelled
    glosses (``fs-...``) are not in the lexicon: :func:`expand_signs` spells them.
    """
    oris = sorted(ALL_ORIENTATIONS) if extended else sorted(ORIENTATIONS)
    places = sorted(ALL_PLACES) if extended else sorted(PLACES_BODY)
    paths = PATHS + EXTRA_PATHS if extended else PATHS
    combos = list(itertools.product(sorted(HANDSHAPES), oris, places, paths, HANDS))
    rng = np.random.default_rng(LEXICON_SEED)
    order = rng.permutation(len(combos))
    keys = ("handshape", "orientation", "place", "path", "hands")
    if extended:
        # vectorised greedy: attribute codes (n, 5); letters' signs are reserved
        vals = [sorted(HANDSHAPES), oris, places, paths, HANDS]
        codes = np.array([[v.index(x) for v, x in zip(vals, c)] for c in combos], np.int64)
        taken = np.zeros(len(combos), bool)
        reserved = {tuple(_letter_sign(ch)[k] for k in keys) for ch in LETTERS}
        chosen: list = []
        for min_diff in (2, 1):
            for i in order:
                if len(chosen) == len(words):
                    break
                if taken[i] or combos[i] in reserved:
                    continue
                if chosen:
                    d = (codes[chosen] != codes[i]).sum(1)
                    if d.min() < min_diff:
                        continue
                chosen.append(int(i))
                taken[i] = True
        return {w.upper(): dict(zip(keys, combos[i])) for w, i in zip(words, chosen)}
    chosen = []
    for i in order:
        c = combos[i]
        if all(sum(a != b for a, b in zip(c, d)) >= 2 for d in chosen):
            chosen.append(c)
            if len(chosen) == len(words):
                break
    return {w.upper(): dict(zip(keys, c)) for w, c in zip(words, chosen)}


def expand_signs(signs: list, lexicon: dict) -> list:
    """Glosses -> (gloss, sign parameters, relative duration) units: a fingerspelled ``fs-NAME`` becomes
    one short unit per letter (non-letters skipped); every other gloss is looked up."""
    out = []
    for g in signs:
        if g.startswith("fs-"):
            out += [(g, _letter_sign(ch), FS_SPEED) for ch in g[3:].upper() if ch in LETTERS]
        else:
            out.append((g, lexicon[g], 1.0))
    return out


# ----------------------------------------------------------------------------- geometry
# hand-local template, hand length units; x lateral (toward the thumb = negative), y along the fingers
_MCP = np.array([[-0.13, 0.45], [-0.02, 0.47], [0.08, 0.44], [0.17, 0.38]], np.float32)
_SEG = np.array([[0.2, 0.13, 0.1], [0.22, 0.14, 0.1], [0.2, 0.13, 0.1], [0.15, 0.1, 0.08]], np.float32)
_THUMB_CMC = np.array([-0.14, 0.12], np.float32)
_THUMB_SEG = np.array([0.17, 0.13, 0.11], np.float32)


def _rot_matrix(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]], np.float32)


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]], np.float32)


def hand_template(shape: str) -> np.ndarray:
    """(21, 2) hand keypoints in MediaPipe hand order, local frame (fingers along +y)."""
    states, spread = HANDSHAPES[shape]
    pts = np.zeros((21, 2), np.float32)
    pts[1] = _THUMB_CMC
    # thumb: extended points out sideways (toward -x), curled folds across the palm (+x)
    t = float(states[0])
    d = _rot(np.array([0.0, 1.0], np.float32), 55.0 - 95.0 * t)
    p = _THUMB_CMC.copy()
    for j, L in enumerate(_THUMB_SEG):
        p = p + d * L * (1 - 0.35 * t)
        pts[2 + j] = p
        d = _rot(d, -25.0 * t)
    for f in range(4):
        c = float(states[f + 1])
        base_dir = _rot(np.array([0.0, 1.0], np.float32), (f - 1.5) * 14.0 * spread)
        p = _MCP[f].copy()
        pts[5 + 4 * f] = p
        d = base_dir
        for j, L in enumerate(_SEG[f]):
            d = _rot(d, 70.0 * c) if j > 0 or c > 0.6 else d
            p = p + d * L * (1 - 0.45 * c)
            pts[6 + 4 * f + j] = p
    return pts


_TEMPLATES = {k: hand_template(k) for k in HANDSHAPES}


def _path_offset(path: str, u: float, amp: float) -> tuple:
    """Movement offset at phase u in [0, 1], in shoulder widths (x toward the dominant side)."""
    tau = 2 * math.pi * u
    if path == "still":
        return 0.02 * math.sin(tau), 0.0
    if path == "tap":
        return 0.0, -amp * abs(math.sin(tau))
    if path == "sideways":
        return amp * math.sin(tau), 0.0
    if path == "circle":
        return amp * 0.8 * math.sin(tau), amp * 0.8 * (1 - math.cos(tau)) * 0.5
    if path == "diagonal":
        return amp * (u - 0.5), amp * (u - 0.5)
    if path == "down":
        return 0.0, amp * (u - 0.5) * 1.4
    if path == "zigzag":
        return amp * (u - 0.5), 0.5 * amp * math.sin(2 * tau)
    if path == "arc":
        return amp * (u - 0.5), -0.6 * amp * math.sin(math.pi * u)
    if path == "forward":  # toward the camera: in 2-D the hand drops a little and comes back
        return 0.0, 0.3 * amp * math.sin(math.pi * u)
    if path == "shake":
        return 0.25 * amp * math.sin(3 * tau), 0.0
    if path == "twist":
        return 0.3 * amp * math.sin(tau), 0.3 * amp * math.sin(2 * tau)
    raise KeyError(path)


@dataclass
class Signer:
    name: str
    skin: tuple
    clothes: tuple
    background: tuple
    scale: float  # shoulder width / frame size
    offset: tuple  # (x, y) fraction of frame size
    frames_per_sign: int
    jitter: float  # wrist jitter, shoulder widths
    n_transition: int = 2  # frames between two signs
    coarticulation: float = 0.0  # share of a sign's last frames that already move toward the next sign
    length_adapt: float = 0.0  # long sentences are signed faster: sign frames x (signs / 8) ** -length_adapt


def make_signers(seed: int) -> list:
    rng = np.random.default_rng([seed, 7])
    skins = [(224, 187, 150), (141, 85, 56), (198, 134, 93), (255, 219, 180)]
    clothes = [(40, 60, 140), (150, 40, 40), (40, 110, 60), (90, 90, 90)]
    bgs = [(200, 200, 190), (120, 150, 180), (220, 210, 160), (170, 190, 170)]
    speeds = [5, 7, 9, 6]
    out = []
    for i in range(NUM_SIGNERS):
        out.append(Signer(
            name=f"signer{i}", skin=skins[i], clothes=clothes[(i + 1) % 4], background=bgs[(i + 2) % 4],
            scale=float(0.36 + 0.025 * i + rng.uniform(-0.01, 0.01)),
            offset=(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.03, 0.03))),
            frames_per_sign=speeds[i], jitter=float(0.006 + 0.004 * i),
        ))
    return out


# MediaPipe Holistic: pose 33, face 468, left hand 21, right hand 21
N_POSE, N_FACE, N_HAND = 33, 468, 21
N_HOLISTIC = N_POSE + N_FACE + 2 * N_HAND  # 543
FACE_OFF, LH_OFF, RH_OFF = N_POSE, N_POSE + N_FACE, N_POSE + N_FACE + N_HAND


def _face_template() -> np.ndarray:
    """(468, 2) face points on concentric ellipses (head units: x half-width 1, y half-height 1),
    with the MediaPipe Face Mesh indices of eyes, nose, mouth, forehead and chin placed truly."""
    pts = np.zeros((N_FACE, 2), np.float32)
    rings = 6
    per = N_FACE // rings
    for r in range(rings):
        rad = 0.95 * (r + 1) / rings
        for k in range(per):
            a = 2 * math.pi * (k + 0.5 * r) / per
            pts[r * per + k] = (rad * math.cos(a), rad * math.sin(a))
    special = {
        1: (0.0, 0.15), 4: (0.0, 0.1), 10: (0.0, -0.95), 152: (0.0, 0.95),
        33: (-0.55, -0.2), 133: (-0.2, -0.2), 263: (0.55, -0.2), 362: (0.2, -0.2),
        61: (-0.3, 0.5), 291: (0.3, 0.5), 13: (0.0, 0.45), 14: (0.0, 0.55),
        468 - 1: (0.0, 0.0),
    }
    for i, v in special.items():
        pts[i] = v
    return pts


_FACE = _face_template()


def _elbow(shoulder, wrist, l1, l2, outward) -> np.ndarray:
    d_vec = wrist - shoulder
    d = float(np.hypot(*d_vec))
    if d >= l1 + l2 - 1e-3 or d < 1e-3:
        return shoulder + d_vec * (l1 / (l1 + l2)) if d >= 1e-3 else shoulder + np.array([0, l1], np.float32)
    a = (l1 * l1 - l2 * l2 + d * d) / (2 * d)
    h = math.sqrt(max(l1 * l1 - a * a, 0.0))
    mid = shoulder + d_vec * (a / d)
    perp = np.array([-d_vec[1], d_vec[0]], np.float32) / d
    c1, c2 = mid + perp * h, mid - perp * h
    # prefer the elbow that is lower and outward
    s1 = c1[1] + 0.5 * outward * c1[0]
    s2 = c2[1] + 0.5 * outward * c2[0]
    return (c1 if s1 >= s2 else c2).astype(np.float32)


PHOENIX_FRAMES_PER_SIGN = 5  # at 12 fps, before the signer's speed factor
PHOENIX_LENGTH_ADAPT = 0.3  # set with PHOENIX_FRAMES_PER_SIGN to PHOENIX's clip durations (docs/synth.md)


def phoenix_signers(seed: int) -> list:
    """The phoenix profile's 9 signers: own colours, size and position; speed from 0.8x to 1.25x
    of 5 frames a sign at 12 fps (PHOENIX's clips average 4.7 s for 7.8 glosses: ~0.6 s a gloss
    with its transition), fewer frames a sign in long sentences; 1-2 transition frames; co-articulation 0-40%; wrist jitter 0.004-0.012
    shoulder widths (the floor measured on real MediaPipe keypoints: docs/synth.md)."""
    rng = np.random.default_rng([seed, 9])
    skins = [(224, 187, 150), (141, 85, 56), (198, 134, 93), (255, 219, 180), (170, 120, 90)]
    clothes = [(40, 60, 140), (150, 40, 40), (40, 110, 60), (90, 90, 90), (30, 30, 30), (110, 60, 120)]
    bgs = [(200, 200, 190), (120, 150, 180), (220, 210, 160), (170, 190, 170), (150, 150, 160)]
    out = []
    for i in range(9):
        out.append(Signer(
            name=f"signer{i}", skin=skins[i % 5], clothes=clothes[(i + 1) % 6], background=bgs[(i + 2) % 5],
            scale=float(0.34 + 0.01 * (i % 5) + rng.uniform(-0.01, 0.01)),
            offset=(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.03, 0.03))),
            frames_per_sign=int(round(PHOENIX_FRAMES_PER_SIGN * float(rng.uniform(0.8, 1.25)))), jitter=float(rng.uniform(0.004, 0.012)),
            n_transition=int(rng.integers(1, 3)), coarticulation=float(rng.uniform(0.0, 0.4)),
            length_adapt=PHOENIX_LENGTH_ADAPT,
        ))
    return out


# keypoint detector misses, measured on the real MediaPipe Holistic files (docs/synth.md): a hand
# is lost for a run of frames in some clips, the non-dominant hand sometimes for the whole clip,
# and the keypoint file has a few frames fewer than the video
DETECTOR = {"p_hand_run": 0.5, "run_share": (0.02, 0.15), "p_nondominant_lost": 0.1, "max_dropped_tail": 3}


def detector_misses(xy: np.ndarray, conf: np.ndarray, rng: np.random.Generator, model: dict = DETECTOR):
    """Apply :data:`DETECTOR`-style misses to exact keypoints: returns (xy, conf) with lost hands
    zeroed (conf 0, as MediaPipe writes them) and the last 0..max_dropped_tail frames dropped."""
    xy, conf = xy.copy(), conf.copy()
    T = xy.shape[0]
    for off, dominant in ((LH_OFF, False), (RH_OFF, True)):
        sl = slice(off, off + N_HAND)
        if not dominant and rng.random() < model["p_nondominant_lost"]:
            xy[:, sl], conf[:, sl] = 0.0, 0.0
            continue
        if rng.random() < model["p_hand_run"]:
            n = max(1, int(round(T * rng.uniform(*model["run_share"]))))
            t0 = int(rng.integers(0, max(T - n, 0) + 1))
            xy[t0:t0 + n, sl], conf[t0:t0 + n, sl] = 0.0, 0.0
    drop = int(rng.integers(0, model["max_dropped_tail"] + 1))
    if drop and T - drop >= 2:
        xy, conf = xy[:T - drop], conf[:T - drop]
    return xy, conf


def _timeline(signs: list, lexicon: dict, signer: Signer, rng, spans: Optional[list] = None) -> list:
    """Per frame: (dominant state, non-dominant state); a state = (wrist offset (2,) in sw,
    template (21,2), orientation deg). ``spans``, when given, receives each sign's frames as
    (gloss, first, stop) (the ground truth for ``eval/describe_accuracy.py``)."""
    rest_dom = (np.array([0.25, 0.85], np.float32), _TEMPLATES["B"], 0.0)
    rest_nd = (np.array([0.25, 0.85], np.float32), _TEMPLATES["B"], 0.0)
    key_states = []  # list of lists of per-frame states for each sign
    units = expand_signs(signs, lexicon)
    fps_sign = signer.frames_per_sign
    if signer.length_adapt:
        weight = sum(rel for _, _, rel in units)
        fps_sign = max(3, int(round(fps_sign * (max(weight, 1.0) / 8.0) ** -signer.length_adapt)))
    for _, p, rel in units:
        if rel >= 1.0:
            n = max(3 if signer.length_adapt else 4, fps_sign + int(rng.integers(-1, 2)))
        else:  # a fingerspelled letter
            n = max(2, int(round(fps_sign * rel)) + int(rng.integers(0, 2)))
        place = np.array(ALL_PLACES[p["place"]], np.float32)
        tmpl = _TEMPLATES[p["handshape"]]
        ori = ALL_ORIENTATIONS[p["orientation"]]
        frames = []
        for k in range(n):
            u = k / max(n - 1, 1)
            dx, dy = _path_offset(p["path"], u, 0.25)
            dom = (place + np.array([dx, dy], np.float32), tmpl, ori)
            if p["hands"] == "two_sym":
                nd = dom
            elif p["hands"] == "two_base":
                nd = (np.array([-0.05, 0.55], np.float32), _TEMPLATES["B"], 0.0)
            else:
                nd = rest_nd
            frames.append((dom, nd))
        key_states.append(frames)

    def lerp(a, b, w):
        return (a[0] * (1 - w) + b[0] * w, a[1] * (1 - w) + b[1] * w, a[2] * (1 - w) + b[2] * w)

    if signer.coarticulation > 0:  # the end of each sign already moves toward the next one
        for i in range(len(key_states) - 1):
            frames, nxt = key_states[i], key_states[i + 1][0]
            k = int(round(signer.coarticulation * len(frames)))
            for j in range(k):
                w = 0.5 * (j + 1) / (k + 1)
                t = len(frames) - k + j
                frames[t] = (lerp(frames[t][0], nxt[0], w), lerp(frames[t][1], nxt[1], w))
    out = []
    prev = (rest_dom, rest_nd)
    n_tr = signer.n_transition
    for frames in key_states:
        first = frames[0]
        for k in range(1, n_tr + 1):
            w = k / (n_tr + 1)
            out.append((lerp(prev[0], first[0], w), lerp(prev[1], first[1], w)))
        out += frames
        prev = frames[-1]
    for k in range(1, n_tr + 1):
        w = k / (n_tr + 1)
        out.append((lerp(prev[0], rest_dom, w), lerp(prev[1], rest_nd, w)))
    out.insert(0, (rest_dom, rest_nd))
    out.append((rest_dom, rest_nd))
    if spans is not None:  # 1 rest frame, then per sign n_tr transition frames + its own frames
        t = 1
        for (g, _, _), frames in zip(units, key_states):
            t += n_tr
            spans.append((g, t, t + len(frames)))
            t += len(frames)
    return out


def render_sample(signs: list, lexicon: dict, signer: Signer, size: int, rng: np.random.Generator,
                  spans: Optional[list] = None):
    """Render one sentence. Returns frames uint8 (T, size, size, 3), xy float32 (T, 543, 2)
    (pixels, MediaPipe Holistic order), conf float32 (T, 543). ``spans`` (a list) receives
    each sign's (gloss, first frame, stop frame) (a fingerspelled gloss: one span per letter)."""
    from PIL import Image, ImageDraw

    S = float(size)
    sw = signer.scale * S * float(rng.uniform(0.97, 1.03))
    cx = S * (0.5 + signer.offset[0]) + float(rng.uniform(-0.02, 0.02)) * S
    cy = S * (0.5 + signer.offset[1]) + float(rng.uniform(-0.015, 0.015)) * S
    hand_len = 0.5 * sw
    l1, l2 = 0.62 * sw, 0.6 * sw
    timeline = _timeline(signs, lexicon, signer, rng, spans)
    T = len(timeline)

    neck = np.array([cx, cy], np.float32)
    r_sh = np.array([cx - 0.5 * sw, cy], np.float32)  # signer's right = image left
    l_sh = np.array([cx + 0.5 * sw, cy], np.float32)
    head_c = np.array([cx, cy - 0.68 * sw], np.float32)
    head_rx, head_ry = 0.27 * sw, 0.34 * sw
    r_hip = np.array([cx - 0.36 * sw, cy + 1.25 * sw], np.float32)
    l_hip = np.array([cx + 0.36 * sw, cy + 1.25 * sw], np.float32)

    xy = np.zeros((T, N_HOLISTIC, 2), np.float32)
    bg = np.empty((size, size, 3), np.int16)
    bg[:] = signer.background
    bg += rng.integers(-10, 11, size=(size, size, 1), dtype=np.int16)
    bg_img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    # light per-frame noise: random windows of one noise field (values -3..3, stored +3 as uint8)
    noise = rng.integers(0, 7, size=(size * 2, size * 2, 1), dtype=np.uint8)
    frames = np.empty((T, size, size, 3), np.uint8)
    skin = signer.skin
    skin_dark = tuple(int(c * 0.6) for c in skin)
    clothes = signer.clothes
    face = head_c + _FACE * np.array([head_rx, head_ry], np.float32)
    margin = 1.5
    fw = max(1, int(round(0.07 * hand_len)))
    # the parts that do not move (background texture, torso, neck, head, face) are drawn once
    static = bg_img.copy()
    draw = ImageDraw.Draw(static)
    torso = [(r_sh[0] - 0.05 * sw, r_sh[1]), (l_sh[0] + 0.05 * sw, l_sh[1]), tuple(l_hip.tolist()), tuple(r_hip.tolist())]
    draw.polygon([(float(x), float(y)) for x, y in torso], fill=clothes)
    nw = 0.12 * sw
    draw.rectangle([cx - nw, float(head_c[1]), cx + nw, cy + 2], fill=skin)
    draw.ellipse([float(head_c[0] - head_rx), float(head_c[1] - head_ry),
                  float(head_c[0] + head_rx), float(head_c[1] + head_ry)], fill=skin)
    for p in (face[33].tolist(), face[263].tolist()):
        draw.ellipse([p[0] - 1, p[1] - 1, p[0] + 1, p[1] + 1], fill=(30, 30, 30))
    draw.line([tuple(face[61].tolist()), tuple(face[291].tolist())], fill=(120, 40, 40), width=1)
    del draw

    for t, (dom, nd) in enumerate(timeline):
        jit = rng.normal(0, signer.jitter, size=(2, 2)).astype(np.float32)
        hands = {}
        for side, state in (("right", dom), ("left", nd)):
            off, tmpl, ori = state
            if side == "right":
                # dominant = signer's right = image left; offsets point toward its own side
                wrist = neck + np.array([-off[0], off[1]], np.float32) * sw + jit[0] * sw
                pts = tmpl @ _rot_matrix(ori - 90.0).T  # thumb ends toward the body centre
            else:
                # the non-dominant hand mirrors about the body midline
                wrist = neck + np.array([off[0], off[1]], np.float32) * sw + jit[1] * sw
                loc = tmpl * np.array([-1.0, 1.0], np.float32)
                pts = loc @ _rot_matrix(90.0 - ori).T
            pts = wrist + pts * hand_len
            lo, hi = pts.min(0), pts.max(0)
            shift = np.maximum(margin - lo, 0) - np.maximum(hi - (S - 1 - margin), 0)
            hands[side] = (pts + shift).astype(np.float32)
        r_el = _elbow(r_sh, hands["right"][0], l1, l2, outward=-1.0)
        l_el = _elbow(l_sh, hands["left"][0], l1, l2, outward=1.0)

        pose = xy[t, :N_POSE]
        pose[0] = face[1]
        # eyes: 1-3 left eye (signer's left = image right), 4-6 right eye
        le_in, le_out, re_in, re_out = face[362], face[263], face[133], face[33]
        pose[1], pose[2], pose[3] = le_in, (le_in + le_out) / 2, le_out
        pose[4], pose[5], pose[6] = re_in, (re_in + re_out) / 2, re_out
        pose[7] = head_c + np.array([head_rx, 0.0], np.float32)
        pose[8] = head_c - np.array([head_rx, 0.0], np.float32)
        pose[9], pose[10] = face[291], face[61]
        pose[11], pose[12] = l_sh, r_sh
        pose[13], pose[14] = l_el, r_el
        pose[15], pose[16] = hands["left"][0], hands["right"][0]
        pose[17], pose[18] = hands["left"][17], hands["right"][17]
        pose[19], pose[20] = hands["left"][5], hands["right"][5]
        pose[21], pose[22] = hands["left"][4], hands["right"][4]
        pose[23], pose[24] = l_hip, r_hip
        for j, (a, b) in enumerate(((l_hip, 0.9), (r_hip, 0.9), (l_hip, 1.8), (r_hip, 1.8),
                                    (l_hip, 1.95), (r_hip, 1.95), (l_hip, 2.0), (r_hip, 2.0))):
            pose[25 + j] = a + np.array([0.0, b * sw], np.float32)
        xy[t, FACE_OFF:LH_OFF] = face
        xy[t, LH_OFF:RH_OFF] = hands["left"]
        xy[t, RH_OFF:] = hands["right"]

        # ---- draw
        img = static.copy()
        draw = ImageDraw.Draw(img)
        aw = max(2, int(round(0.15 * sw)))
        for sh, el, wr in ((l_sh, l_el, hands["left"][0]), (r_sh, r_el, hands["right"][0])):
            sh, el, wr = sh.tolist(), el.tolist(), wr.tolist()
            draw.line([tuple(sh), tuple(el)], fill=clothes, width=aw)
            draw.ellipse([el[0] - aw / 2, el[1] - aw / 2, el[0] + aw / 2, el[1] + aw / 2], fill=clothes)
            draw.line([tuple(el), tuple(wr)], fill=clothes, width=max(2, aw - 1))
        for side in ("left", "right"):
            h = [tuple(p) for p in hands[side].tolist()]
            draw.polygon([h[i] for i in (0, 1, 5, 9, 13, 17)], fill=skin, outline=skin_dark)
            for chain in ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20)):
                draw.line([h[i] for i in chain], fill=skin_dark, width=fw)
        arr = np.asarray(img)
        oy, ox = rng.integers(0, size, size=2)
        # uint8 arithmetic: clip to [3, 252] first so adding noise in [-3, 3] cannot wrap
        np.clip(arr, 3, 252, out=frames[t])
        frames[t] += noise[oy:oy + size, ox:ox + size]
        frames[t] -= 3

    # confidence: 0 for points outside the frame (legs)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= S - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= S - 1)
    conf = np.where(inside, 1.0, 0.0).astype(np.float32)
    return frames, xy, conf


# ----------------------------------------------------------------------------- output
def encode_mp4(path, frames: np.ndarray, fps: int) -> None:
    """Frames uint8 (T,H,W,3) -> H.264 mp4 (yuv420p, crf 18), single-threaded, atomic."""
    import av

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "18", "preset": "ultrafast", "threads": "1"}
        for f in frames:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(pkt)
        for pkt in stream.encode():
            container.mux(pkt)
    os.replace(tmp, path)


def _write_pose(path, xy, conf, fps, width, height) -> None:
    from slt_llm.data.pose import write_pose_holistic

    write_pose_holistic(path, xy, conf, fps, width, height)


