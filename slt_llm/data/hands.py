"""Hand boxes from keypoints and hand crops from frames.

``hand_boxes`` places one square box per hand per frame:

1. From the hand's own keypoints when at least ``MIN_HAND_POINTS`` of its 21
   points have confidence >= ``HAND_CONF``: centre = centre of the points'
   bounding box, extent = its longer side.
2. Otherwise from the forearm when wrist and elbow are seen: the hand lies
   beyond the wrist along the forearm, centre = wrist + ``FOREARM_CENTRE`` x
   (wrist - elbow), extent = ``FOREARM_EXTENT`` x forearm length. Both
   factors were measured on the real fixtures (football MediaPipe + MMPose,
   OpenPose-137, a long MediaPipe recording): the hand-box centre sits
   0.36-0.52 forearm lengths beyond the wrist (median ~0.4) and the hand's
   extent is 0.74-1.0 forearm lengths (median ~0.75).
3. Otherwise from the wrist alone: centre = wrist, extent = the median extent
   of that hand's keypoint boxes in the clip (or 0.1 x the shorter side).
4. Otherwise NaN; also NaN when the box does not overlap the frame at all
   (an arm hanging out of the shot).

Box side = ``hand_scale`` x extent, clamped to [min_box, max_box] x the
frame's shorter side; then centre and side are smoothed over time by a
centred moving average of ``smooth_window`` frames that ignores frames
without a box (those stay NaN) and never moves a box more than
``MAX_SMOOTH_SHIFT`` (15%) of its side away from the frame's own box, so
fast movements at low frame rates are not cut off. Cost: O(T) numpy per hand.
"""

from __future__ import annotations

import numpy as np

from slt_llm.config import ClipConfig
from slt_llm.data.layout import (
    J_LEFT_ELBOW,
    J_LEFT_WRIST,
    J_RIGHT_ELBOW,
    J_RIGHT_WRIST,
    LEFT_HAND,
    RIGHT_HAND,
)

__all__ = ["hand_boxes", "crop_hands", "smooth_boxes", "HAND_CONF", "MIN_HAND_POINTS"]

HAND_CONF = 0.2  # a hand point counts when its confidence is at least this
MIN_HAND_POINTS = 5  # a hand is "seen" when this many of its 21 points count
FOREARM_CENTRE = 0.4  # hand centre = wrist + 0.4 * (wrist - elbow)
FOREARM_EXTENT = 0.75  # hand extent = 0.75 * forearm length
MAX_SMOOTH_SHIFT = 0.15  # smoothing moves a box by at most this share of its side

_SIDES = ((LEFT_HAND, J_LEFT_WRIST, J_LEFT_ELBOW), (RIGHT_HAND, J_RIGHT_WRIST, J_RIGHT_ELBOW))


def _moving_average_nan(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over axis 0 ignoring NaN rows; NaN rows stay NaN.

    x: (T, D). The window shrinks at the clip ends. O(T * D) via cumulative sums.
    """
    if window <= 1 or x.shape[0] == 0:
        return x.copy()
    valid = np.isfinite(x).all(axis=1)  # (T,)
    v = np.where(valid[:, None], x, 0.0)
    cs = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(v, axis=0)])  # (T+1,D)
    cn = np.concatenate([[0], np.cumsum(valid)])  # (T+1,)
    T, h = x.shape[0], window // 2
    lo = np.clip(np.arange(T) - h, 0, T)
    hi = np.clip(np.arange(T) + (window - h), 0, T)
    n = (cn[hi] - cn[lo]).astype(np.float64)
    out = (cs[hi] - cs[lo]) / np.maximum(n, 1)[:, None]
    out[~valid] = np.nan
    return out


def smooth_boxes(boxes: np.ndarray, window: int, max_shift: float = None) -> np.ndarray:
    """Smooth (T, 2, 4) square boxes: moving average of centre and side per hand.

    The smoothed centre and side stay within ``max_shift`` (default
    ``MAX_SMOOTH_SHIFT`` = 0.15) x the frame's own box side of the unsmoothed
    values: jitter is averaged out, but a fast movement (a hand crossing the
    frame in a few frames, frequent at 12-25 fps) cannot drag the box off the
    hand.
    """
    max_shift = MAX_SMOOTH_SHIFT if max_shift is None else max_shift
    out = np.full_like(boxes, np.nan, dtype=np.float32)
    for s in range(boxes.shape[1]):
        b = boxes[:, s].astype(np.float64)
        raw = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0]], axis=1)
        cs = _moving_average_nan(raw, window)
        lim = (max_shift * raw[:, 2])[:, None]
        cs = raw + np.clip(cs - raw, -lim, lim)
        half = cs[:, 2] / 2
        out[:, s] = np.stack([cs[:, 0] - half, cs[:, 1] - half, cs[:, 0] + half, cs[:, 1] + half], axis=1)
    return out


def hand_boxes(kp, cfg: ClipConfig) -> np.ndarray:
    """Square hand boxes per frame: float32 (T, 2, 4) = (left, right) x (x0, y0, x1, y1).

    In the pixel coordinates of ``kp`` (``kp.width`` x ``kp.height``); NaN
    where no box can be placed. See the module docstring for the rules.
    """
    xy, conf = kp.xy, kp.conf
    T = xy.shape[0]
    short = float(min(kp.width, kp.height))
    lo_side, hi_side = cfg.min_box * short, cfg.max_box * short
    boxes = np.full((T, 2, 4), np.nan, np.float32)
    for s, (hand, jw, je) in enumerate(_SIDES):
        pts, pc = xy[:, hand], conf[:, hand]  # (T,21,2), (T,21)
        ok_pt = pc >= HAND_CONF
        seen = ok_pt.sum(axis=1) >= MIN_HAND_POINTS  # (T,)
        big = np.float32(1e9)
        pmin = np.where(ok_pt[..., None], pts, big).min(axis=1)  # (T,2)
        pmax = np.where(ok_pt[..., None], pts, -big).max(axis=1)
        centre = np.full((T, 2), np.nan)
        extent = np.full(T, np.nan)
        centre[seen] = (pmin[seen] + pmax[seen]) / 2
        extent[seen] = (pmax[seen] - pmin[seen]).max(axis=1)
        # forearm fallback
        arm = ~seen & (conf[:, jw] > 0) & (conf[:, je] > 0)
        fore = xy[:, jw] - xy[:, je]  # (T,2)
        flen = np.linalg.norm(fore, axis=1)
        arm &= flen > 1e-3
        centre[arm] = xy[arm, jw] + FOREARM_CENTRE * fore[arm]
        extent[arm] = FOREARM_EXTENT * flen[arm]
        # wrist-only fallback
        wrist = ~seen & ~arm & (conf[:, jw] > 0)
        if wrist.any():
            typical = float(np.median(extent[seen])) if seen.any() else 0.1 * short
            centre[wrist] = xy[wrist, jw]
            extent[wrist] = typical
        side = np.clip(cfg.hand_scale * extent, lo_side, hi_side)
        half = side / 2
        boxes[:, s] = np.stack(
            [centre[:, 0] - half, centre[:, 1] - half, centre[:, 0] + half, centre[:, 1] + half], axis=1
        )
    # a box that does not overlap the frame at all (e.g. an arm hanging out of
    # the shot) holds nothing to crop: no box
    outside = (boxes[..., 2] <= 0) | (boxes[..., 3] <= 0) | (boxes[..., 0] >= kp.width) | (boxes[..., 1] >= kp.height)
    boxes[outside] = np.nan
    return smooth_boxes(boxes, cfg.smooth_window)


def crop_hands(frames: np.ndarray, boxes: np.ndarray, size: int, *, channels_first: bool = False) -> np.ndarray:
    """Crop and resize hand boxes: uint8 (T, 2, size, size, 3).

    ``channels_first=True`` returns the same crops as uint8
    (2, T, 3, size, size) instead: hand-major, so ``out[0]``/``out[1]`` are
    contiguous (T, 3, size, size) arrays (the ``Clip.left``/``right``
    layout) without a transposing copy of the whole stack.

    frames uint8 (T, H, W, 3), or any object with ``shape`` (T, H, W, 3) whose
    ``frames[t]`` is one (H, W, 3) frame (``slt_llm.data.video.LazyFrames``:
    each frame is then converted once, both hands cut from it, and dropped);
    boxes (T, 2, 4) in the frames' pixel
    coordinates (x0, y0, x1, y1), widened to whole pixels (floor/ceil). A box
    partly outside the frame is zero-padded (the hand keeps its place in the
    crop); a NaN box, or one that misses the frame, gives an all-zero crop.

    The box arithmetic (rounding, clipping, padding offsets) is done for all
    T x 2 boxes at once in numpy; each placed box then costs one slice and
    one PIL bilinear (antialiased) resize, the reference filter: outputs are
    bit-identical to slicing + ``Image.resize(BILINEAR)`` per box. A box that
    lies inside the frame is resized straight from a view of the frame (no
    padded copy). Cost: O(T * 2 * box area); ~0.15 ms per 90 px box -> 64 px
    (measured; a pure-numpy fixed-point replica of the filter was slower, see
    docs/perf/decode.md).
    """
    from PIL import Image

    T, H, W = frames.shape[:3]
    S = boxes.shape[1] if boxes.ndim == 3 else 0
    out = np.zeros((S, T, 3, size, size) if channels_first else (T, S, size, size, 3), np.uint8)
    if T == 0 or S == 0:
        return out
    b = np.asarray(boxes, np.float64)
    ok = np.isfinite(b).all(axis=-1)  # (T,S)
    bz = np.where(ok[..., None], b, 0.0)
    x0, y0 = np.floor(bz[..., 0]).astype(np.int64), np.floor(bz[..., 1]).astype(np.int64)
    x1 = np.maximum(np.ceil(bz[..., 2]).astype(np.int64), x0 + 1)
    y1 = np.maximum(np.ceil(bz[..., 3]).astype(np.int64), y0 + 1)
    ok &= (x1 > 0) & (y1 > 0) & (x0 < W) & (y0 < H)
    sx0, sy0 = np.maximum(x0, 0), np.maximum(y0, 0)
    sx1, sy1 = np.minimum(x1, W), np.minimum(y1, H)
    inside = (sx0 == x0) & (sy0 == y0) & (sx1 == x1) & (sy1 == y1)
    dims = (size, size)
    bilinear = Image.BILINEAR
    for t, s in zip(*np.nonzero(ok)):  # t ascending: each frame fetched once (both hands)
        frame = frames[t]
        if inside[t, s]:
            patch = frame[y0[t, s] : y1[t, s], x0[t, s] : x1[t, s]]
        else:
            patch = np.zeros((y1[t, s] - y0[t, s], x1[t, s] - x0[t, s], 3), np.uint8)
            patch[sy0[t, s] - y0[t, s] : sy1[t, s] - y0[t, s], sx0[t, s] - x0[t, s] : sx1[t, s] - x0[t, s]] = \
                frame[sy0[t, s] : sy1[t, s], sx0[t, s] : sx1[t, s]]
        img = Image.fromarray(patch)
        crop = np.asarray(img.resize(dims, bilinear) if img.size != dims else img)  # (size,size,3)
        if channels_first:
            out[s, t] = crop.transpose(2, 0, 1)
        else:
            out[t, s] = crop
    return out
