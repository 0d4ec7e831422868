"""The synthetic sign corpus: the embedded default's data.

``generate(out, n_train=..., n_dev=..., n_test=..., seed=..., dup_rate=...)``
writes::

    out/train.jsonl, dev.jsonl, test.jsonl   manifests (id, video, text, pose, signer, gloss)
    out/videos/<id>.mp4                      H.264 (PyAV, yuv420p), size x size px, fps frames/s
    out/videos/<id>.pose                     exact keypoints, MediaPipe Holistic layout (33+468+21+21)
    out/corpus.json                          seed, vocabulary, grammar, lexicon, held-out triples,
                                             dev/test sentences (for ``grammar.extra_sentences``)

Language (``slt_llm.data.grammar``). An English grammar whose SIGN ORDER is
time-topic-comment and drops function words, so "tomorrow the old man will
buy a red car at the market" is signed ``TOMORROW MARKET MAN OLD CAR RED
BUY``: translation, not transcription. 3-7 signs per sentence. This module
renders it: the lexicon of signs, the signers, the frames, the files.

Signs. Each gloss is a fixed combination of handshape (12 finger
configurations -> exact 21 hand keypoints) x orientation (3) x place (9
locations relative to the body) x path (7 movements) x hands (one-handed,
two-handed symmetric, two-handed with a flat base hand); any two glosses
differ in at least two of those five attributes. The lexicon depends only on
the vocabulary, not on the seed.

Signers. 4 signers with their own skin/clothes/background colours, size,
position, speed (5-9 frames per sign at 12 fps) and jitter; a couple of
transition frames between signs; light per-frame noise. The figure (head,
torso, arms, hands drawn from their 21 keypoints with a filled palm and
finger lines) is drawn with PIL from exactly the keypoints that are written.

Splits. Some (subject, verb, object) triples are held out of training; a
third of dev/test sentences (at least one) use them: combinations unseen in
training, of words that training uses. ``dup_rate`` is the share of training
samples whose sentence repeats another training sentence exactly or with one
slot changed (an adjective, the place, or the time word within its tense);
the other training sentences differ pairwise in at least two slots.

Determinism: the same arguments give byte-identical manifests and
corpus.json and identical keypoints and frames (mp4 bytes depend on the
encoder build). Cost: ~50 frames per sample; on one core about 40-80 ms per
sample at 128 px (drawing + x264 encoding).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from slt_llm.data.grammar import SLOTS, build_grammar, content_words, glosses, make_sentences, realize
from slt_llm.errors import InputError
from slt_llm.progress import progress_bar

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


def build_lexicon(words: list) -> dict:
    """Gloss -> sign parameters; deterministic for the word list (not the seed).

    Any two signs differ in at least 2 of (handshape, orientation, place,
    path, hands).
    """
    combos = list(itertools.product(sorted(HANDSHAPES), sorted(ORIENTATIONS), sorted(PLACES_BODY), PATHS, HANDS))
    rng = np.random.default_rng(LEXICON_SEED)
    order = rng.permutation(len(combos))
    chosen: list = []
    for i in order:
        c = combos[i]
        if all(sum(a != b for a, b in zip(c, d)) >= 2 for d in chosen):
            chosen.append(c)
            if len(chosen) == len(words):
                break
    keys = ("handshape", "orientation", "place", "path", "hands")
    return {w.upper(): dict(zip(keys, c)) for w, c in zip(words, chosen)}


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


def _timeline(signs: list, lexicon: dict, signer: Signer, rng, spans: Optional[list] = None) -> list:
    """Per frame: (dominant state, non-dominant state); a state = (wrist offset (2,) in sw,
    template (21,2), orientation deg). ``spans``, when given, receives each sign's frames as
    (gloss, first, stop) (the ground truth for ``eval/describe_accuracy.py``)."""
    rest_dom = (np.array([0.25, 0.85], np.float32), _TEMPLATES["B"], 0.0)
    rest_nd = (np.array([0.25, 0.85], np.float32), _TEMPLATES["B"], 0.0)
    key_states = []  # list of lists of per-frame states for each sign
    for g in signs:
        p = lexicon[g]
        n = max(4, signer.frames_per_sign + int(rng.integers(-1, 2)))
        place = np.array(PLACES_BODY[p["place"]], np.float32)
        tmpl = _TEMPLATES[p["handshape"]]
        ori = ORIENTATIONS[p["orientation"]]
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

    out = []
    prev = (rest_dom, rest_nd)
    n_tr = 2
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
        for g, frames in zip(signs, key_states):
            t += n_tr
            spans.append((g, t, t + len(frames)))
            t += len(frames)
    return out


def render_sample(signs: list, lexicon: dict, signer: Signer, size: int, rng: np.random.Generator,
                  spans: Optional[list] = None):
    """Render one sentence. Returns frames uint8 (T, size, size, 3), xy float32 (T, 543, 2)
    (pixels, MediaPipe Holistic order), conf float32 (T, 543). ``spans`` (a list) receives
    each sign's (gloss, first frame, stop frame)."""
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


def _sample_seed(seed: int, split: str, i: int) -> list:
    h = hashlib.sha256(f"{split}:{i}".encode()).digest()
    return [seed, int.from_bytes(h[:4], "little")]


def _make_sample(job: tuple) -> tuple:
    """Render and write one sample (a process-pool task). Returns (signer name, frames)."""
    sid, signs, seed, split, i, lexicon, signers, size, fps, vid_dir = job
    rng = np.random.default_rng(_sample_seed(seed, split, i))
    signer = signers[int(rng.integers(len(signers)))]
    if fps != 12:  # keep the sign durations in seconds
        signer = Signer(**{**signer.__dict__,
                           "frames_per_sign": max(4, int(round(signer.frames_per_sign * fps / 12.0)))})
    frames, xy, conf = render_sample(signs, lexicon, signer, size, rng)
    encode_mp4(Path(vid_dir) / f"{sid}.mp4", frames, fps)
    _write_pose(Path(vid_dir) / f"{sid}.pose", xy, conf, float(fps), size, size)
    return signer.name, len(frames)


def generate(out, *, n_train: int, n_dev: int, n_test: int, seed: int, dup_rate: float,
             size: int = 128, vocab: Optional[int] = None, fps: int = 12, workers: int = 1,
             progress: bool = True) -> dict:
    """Write the synthetic corpus under ``out`` (see the module docstring).

    ``workers`` > 1 renders samples in that many processes (same output: each
    sample has its own seed). Returns a summary dict: ``counts`` per split,
    ``duplicates`` (exact, near), ``unseen`` (dev/test samples using held-out
    triples), ``vocab_size``, ``frames`` (total), ``paths`` of the manifests.
    """
    from slt_llm.data.manifest import Sample, write_manifest

    if not 0.0 <= dup_rate < 1.0:
        raise InputError("--dup-rate", f"must be in [0, 1), got {dup_rate}")
    if size < 32 or size % 2:
        raise InputError("--size", f"must be an even number >= 32, got {size}")
    if min(n_train, n_dev, n_test) < 0 or n_train < 1:
        raise InputError("--n-train", "sample counts must be >= 0 and n_train >= 1")
    if fps < 4:
        raise InputError("--fps", f"must be >= 4, got {fps}")
    out = Path(out)
    vid_dir = out / "videos"
    vid_dir.mkdir(parents=True, exist_ok=True)
    g = build_grammar(vocab)
    words = content_words(g)
    lexicon = build_lexicon(words)
    signers = make_signers(seed)
    sents = make_sentences(g, n_train, n_dev, n_test, seed, dup_rate)
    summary = {"counts": {}, "duplicates": {"exact": 0, "near": 0}, "unseen": {}, "vocab_size": len(words),
               "frames": 0, "paths": {}}
    jobs = [(f"{split}_{i:05d}", glosses(slots), seed, split, i, lexicon, signers, size, fps, str(vid_dir))
            for split in ("train", "dev", "test") for i, (slots, _) in enumerate(sents[split])]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: safe even when the caller has started threads (torch, tokenizers)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(progress_bar(pool.map(_make_sample, jobs, chunksize=4), total=len(jobs),
                                        desc="synth", unit="clip", enabled=progress))
    else:
        results = [_make_sample(j) for j in progress_bar(jobs, desc="synth", unit="clip", enabled=progress)]
    done = iter(results)
    for split in ("train", "dev", "test"):
        samples = []
        for i, (slots, kind) in enumerate(sents[split]):
            sid = f"{split}_{i:05d}"
            signer_name, n_frames = next(done)
            summary["frames"] += n_frames
            if kind in ("exact", "near"):
                summary["duplicates"][kind] += 1
            if kind == "unseen":
                summary["unseen"][split] = summary["unseen"].get(split, 0) + 1
            samples.append(Sample(
                id=sid, video=str(vid_dir / f"{sid}.mp4"), text=realize(g, slots),
                pose=str(vid_dir / f"{sid}.pose"), signer=signer_name,
                extra={"gloss": " ".join(glosses(slots))},
            ))
        write_manifest(out / f"{split}.jsonl", samples)
        summary["counts"][split] = len(samples)
        summary["paths"][split] = str(out / f"{split}.jsonl")
    eval_sents = sorted({realize(g, s) for sp in ("dev", "test") for s, _ in sents[sp]})
    corpus = {
        "seed": seed, "size": size, "fps": fps, "dup_rate": dup_rate,
        "counts": summary["counts"], "vocabulary": words, "grammar": g,
        "sign_order": list(SLOTS), "lexicon": lexicon, "heldout_triples": sents["heldout"],
        "signers": [s.__dict__ for s in signers], "eval_sentences": eval_sents,
    }
    tmp = out / ".corpus.json.tmp"
    tmp.write_text(json.dumps(corpus, indent=1, sort_keys=True))
    os.replace(tmp, out / "corpus.json")
    return summary


def cli(argv: list) -> int:
    ap = argparse.ArgumentParser(prog="slt-llm synth", description="Generate the synthetic sign corpus.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-train", type=int, default=600)
    ap.add_argument("--n-dev", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dup-rate", type=float, default=0.3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=None)
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--workers", type=int, default=1, help="processes rendering samples (same output)")
    a = ap.parse_args(argv)
    s = generate(a.out, n_train=a.n_train, n_dev=a.n_dev, n_test=a.n_test, seed=a.seed,
                 dup_rate=a.dup_rate, size=a.size, vocab=a.vocab, fps=a.fps,
                 workers=a.workers)
    print(f"wrote {a.out}: " + ", ".join(f"{k} {v}" for k, v in s["counts"].items())
          + f"; duplicates exact {s['duplicates']['exact']} near {s['duplicates']['near']}"
          + f"; vocabulary {s['vocab_size']} signs; {s['frames']} frames")
    return 0
