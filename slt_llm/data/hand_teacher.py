"""Per-frame hand teacher features: ``<video stem>.hands.npz`` sidecars.

BeyondGloss regresses a per-frame head of its visual encoder to HaMeR's hand
features (both hands' MANO pose). HaMeR does not run here, so the format is
open: anything per frame and per hand can be written into a sidecar, and a
built-in teacher (``slt-llm hand-teacher INPUT``: :func:`write_teacher_sidecars`) writes one from the
keypoints, so distillation works offline.

Sidecar format (``numpy.savez``; docs/hand_descriptions.md, "Teacher sidecars")::

    left        float16 (T, D)  signer's left hand, one row per teacher frame
    right       float16 (T, D)  signer's right hand (same T and D)
    left_mask   bool    (T,)    true where the left hand was seen (rows with false are ignored)
    right_mask  bool    (T,)
    fps         float64 ()      rate of the rows: row i is the video at time i / fps seconds

All values finite (write zeros where a mask is false). Beside the video
(``videos/abc.mp4`` -> ``videos/abc.hands.npz``) or in ``data.hands_dir``.
HaMeR: per frame and hand, flatten ``global_orient`` (1,3,3) and
``hand_pose`` (15,3,3) into D = 144 (BeyondGloss's 288 for both hands); mask
false where no hand was detected.

Built-in teacher (``keypoint_teacher``): per hand the 21 points relative to the
wrist, divided by the palm length (wrist to middle-finger knuckle), x mirrored
for the left hand (both hands in one right-hand frame, as HaMeR does); x, y
from the keypoints, z from the pose file's depth channel when it has one (else
0); D = 63; a hand is present where >= 18 of its 21 points are seen (the
describer's rule). Rows at the keypoint track's frames and rate.

Alignment (``align_teacher``): clip frame at time t takes row round(t * fps);
beyond the last row it is masked out; more than half of the frames beyond the
last row + 0.5 s: the sidecar does not belong to the video (``InputError``).
Cost: one small ``np.load`` per sample (T * D * 2 * 2 bytes: 15 KB for 62
frames at D = 63).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from slt_llm.errors import InputError

__all__ = ["SUFFIX", "HandTeacher", "sidecar_path", "find_sidecar", "read_sidecar", "write_sidecar",
           "keypoint_teacher", "align_teacher", "write_teacher_sidecars"]

SUFFIX = ".hands.npz"
KEYS = ("left", "right", "left_mask", "right_mask", "fps")
HOLD_SECONDS = 0.5
MAX_UNCOVERED = 0.5
MIN_HAND_POINTS = 18


@dataclass
class HandTeacher:
    """A sidecar's arrays: left/right float16 (T, D), masks bool (T,), fps; ``source`` is the file."""

    left: np.ndarray
    right: np.ndarray
    left_mask: np.ndarray
    right_mask: np.ndarray
    fps: float
    source: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.left.shape[0])

    @property
    def dim(self) -> int:
        return int(self.left.shape[1])


def sidecar_path(video, hands_dir=None) -> Path:
    """Where the sidecar of ``video`` is written: ``<stem>.hands.npz`` beside it (or in ``hands_dir``)."""
    v = Path(video)
    stem = v.name if v.is_dir() else v.stem
    return (Path(hands_dir) if hands_dir is not None else v.parent) / f"{stem}{SUFFIX}"


def find_sidecar(video, hands_dir=None) -> Path:
    """The sidecar of ``video``: in ``hands_dir`` when given, else beside the video; InputError if absent."""
    cands = ([sidecar_path(video, hands_dir)] if hands_dir is not None else []) + [sidecar_path(video)]
    for c in cands:
        if c.is_file():
            return c
    raise InputError(video, f"no hand-teacher sidecar (looked for {' and '.join(str(c) for c in cands)}); "
                            f"write them with `slt-llm hand-teacher`")


def _validate(path, z) -> HandTeacher:
    missing = [k for k in KEYS if k not in z]
    if missing:
        raise InputError(path, f"hand-teacher sidecar lacks {', '.join(missing)} (needs {', '.join(KEYS)})")
    left, right = np.asarray(z["left"]), np.asarray(z["right"])
    lm, rm = np.asarray(z["left_mask"]), np.asarray(z["right_mask"])
    if left.ndim != 2 or right.shape != left.shape or left.shape[0] < 1 or left.shape[1] < 1:
        raise InputError(path, f"left {left.shape} and right {right.shape} must both be (T, D) with T, D >= 1")
    T = left.shape[0]
    if lm.shape != (T,) or rm.shape != (T,):
        raise InputError(path, f"left_mask {lm.shape} and right_mask {rm.shape} must be ({T},) like the rows")
    if lm.dtype != bool or rm.dtype != bool:
        if not all(np.isin(m, (0, 1)).all() for m in (lm, rm)):
            raise InputError(path, "left_mask/right_mask must be boolean (0/1)")
        lm, rm = lm.astype(bool), rm.astype(bool)
    if not (np.issubdtype(left.dtype, np.floating) and np.issubdtype(right.dtype, np.floating)):
        raise InputError(path, f"left/right must be floating point, got {left.dtype}/{right.dtype}")
    for name, a in (("left", left), ("right", right)):
        bad = ~np.isfinite(a)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise InputError(path, f"{name} has {int(bad.sum())} NaN/inf value(s) (first in row {row}); "
                                   f"write zeros where the mask is false")
    if not (lm.any() or rm.any()):
        raise InputError(path, "both masks are empty: no frame has a hand, nothing to distil")
    try:
        fps = float(np.asarray(z["fps"]).reshape(()))
    except (TypeError, ValueError):
        raise InputError(path, f"fps must be one number, got shape {np.asarray(z['fps']).shape}") from None
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(path, f"fps must be > 0, got {fps}")
    return HandTeacher(left.astype(np.float16), right.astype(np.float16), lm, rm, fps, str(path))


def read_sidecar(path) -> HandTeacher:
    """Read and check a sidecar (format in the module docstring); ``InputError`` naming the file
    for a missing/unreadable file, missing keys, wrong shapes, NaN/inf, empty masks, bad fps."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "hand-teacher sidecar not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            return _validate(p, {k: z[k] for k in z.files})
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - zip/npy parse errors of a corrupt file
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise InputError(p, f"not a readable .npz sidecar ({type(e).__name__}: {first[:120]})") from None


def write_sidecar(path, left, right, left_mask, right_mask, fps: float) -> Path:
    """Check (as ``read_sidecar`` does) and write a sidecar atomically; returns the path."""
    t = _validate(path, {"left": np.asarray(left), "right": np.asarray(right), "left_mask": np.asarray(left_mask),
                         "right_mask": np.asarray(right_mask), "fps": np.float64(fps)})
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, left=t.left, right=t.right, left_mask=t.left_mask, right_mask=t.right_mask, fps=np.float64(t.fps))
    os.replace(tmp, p)
    return p


# ------------------------------------------------------------------ built-in teacher
def _hand_depth(pose_path, kp) -> Optional[np.ndarray]:
    """(T, 2, 21) depth of the two hands' points from the pose file (left, right), or None when
    the file has no depth channel. Same person choice as ``read_pose`` (highest mean confidence)."""
    from pose_format import Pose

    from slt_llm.data.pose import LAYOUTS

    pose = Pose.read(Path(pose_path).read_bytes())
    data = pose.body.data
    if data.shape[-1] < 3:
        return None
    offs, off = {}, 0
    for c in pose.header.components:
        offs[c.name] = (off, len(c.points), c.format if hasattr(c, "format") else c.point_format)
        off += len(c.points)
    hands = LAYOUTS[kp.layout][1]
    if any("Z" not in str(offs[h][2]).upper() for h in hands):
        return None
    conf = np.asarray(pose.body.confidence, np.float32)
    person = int(np.argmax(np.nan_to_num(conf).mean(axis=(0, 2)))) if conf.shape[1] > 1 else 0
    z = np.ma.getdata(data)[:, person, :, 2].astype(np.float32)  # (T, N)
    out = np.stack([z[:, offs[h][0]:offs[h][0] + 21] for h in hands], 1)  # (T,2,21)
    return np.where(np.isfinite(out), out, 0.0)


def keypoint_teacher(kp, pose_path=None) -> HandTeacher:
    """Built-in teacher from ``Keypoints`` (module docstring): (T, 63) per hand, masks, the track's fps.
    Vectorised over frames."""
    from slt_llm.data.layout import LEFT_HAND, RIGHT_HAND

    z = _hand_depth(pose_path, kp) if pose_path is not None else None
    out, masks = [], []
    for k, (sl, mirror) in enumerate(((LEFT_HAND, -1.0), (RIGHT_HAND, 1.0))):
        xy = kp.xy[:, sl].astype(np.float64)  # (T,21,2) pixels
        c = kp.conf[:, sl]
        present = ((c > 0).sum(1) >= MIN_HAND_POINTS) & (c[:, 0] > 0) & (c[:, 9] > 0)
        rel = xy - xy[:, :1]
        rel[..., 0] *= mirror
        palm = np.linalg.norm(rel[:, 9], axis=-1)  # (T,)
        present &= palm > 1e-6
        scale = np.where(present, palm, 1.0)[:, None, None]
        pts = np.zeros(xy.shape[:2] + (3,), np.float64)
        pts[..., :2] = rel / scale
        if z is not None:  # MediaPipe hand z: same units as x (image width), relative to the wrist
            zz = (z[:, k] - z[:, k, :1]) * float(kp.width or 1)
            pts[..., 2] = zz / scale[..., 0]
        pts[c <= 0] = 0.0
        pts[~present] = 0.0
        out.append(pts.reshape(len(pts), 63).astype(np.float16))
        masks.append(present)
    return HandTeacher(out[0], out[1], masks[0], masks[1], float(kp.fps), str(pose_path or kp.source))


def align_teacher(t: HandTeacher, times: np.ndarray, *, hold: float = HOLD_SECONDS):
    """Teacher rows at clip frame times (seconds from the video start).

    Returns ``(feats float32 (N, 2, D) [left, right], mask bool (N, 2))``: row round(t * fps),
    masked out beyond the last row. ``InputError`` (naming the sidecar) when more than half of
    the frames lie beyond the last row + ``hold`` seconds (a frame count that cannot be aligned).
    """
    times = np.asarray(times, np.float64)
    T = t.num_frames
    u = np.round(times * t.fps).astype(np.int64)
    inside = (u >= 0) & (u < T)
    covered = times * t.fps <= (T - 1) + hold * t.fps
    if times.size and float((~covered).mean()) > MAX_UNCOVERED:
        raise InputError(t.source or "<sidecar>",
                         f"hand-teacher sidecar has {T} rows ({T / t.fps:.2f} s at {t.fps:g} fps) but the clip "
                         f"runs to {times[-1]:.2f} s: cannot align it to the video")
    i = np.clip(u, 0, T - 1)
    feats = np.stack([t.left[i], t.right[i]], 1).astype(np.float32)  # (N,2,D)
    mask = np.stack([t.left_mask[i], t.right_mask[i]], 1) & inside[:, None]
    feats[~mask] = 0.0
    return feats, mask


def write_teacher_sidecars(samples, *, pose_dir=None, out_dir=None, overwrite: bool = False) -> tuple[int, int, list]:
    """The built-in teacher's sidecar (:func:`keypoint_teacher`) of each sample's video, beside it
    or in ``out_dir``; one per video (manifest rows that are segments of one video share it); an
    existing sidecar is kept unless ``overwrite``. Returns (written, already there, the
    ``InputError`` messages of the samples without readable keypoints)."""
    from slt_llm.data.clip import find_pose
    from slt_llm.data.pose import read_pose

    done, skipped, errors = 0, 0, []
    seen = set()
    for s in samples:
        out = sidecar_path(s.video, out_dir)
        if out in seen:  # several manifest rows (segments) of one video share its sidecar
            continue
        seen.add(out)
        if out.is_file() and not overwrite:
            skipped += 1
            continue
        try:
            pose = find_pose(s.video, s.pose, pose_dir)
            t = keypoint_teacher(read_pose(pose), pose)
            write_sidecar(out, t.left, t.right, t.left_mask, t.right_mask, t.fps)
            done += 1
        except InputError as e:
            errors.append(str(e))
    return done, skipped, errors
