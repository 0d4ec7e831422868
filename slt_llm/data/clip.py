"""``load_clip``: one video (file or frame folder) + its keypoints -> a ``Clip``.

Steps and costs (T = sampled frames):

1. Find the keypoints (``find_pose``): explicit ``pose``, else beside the
   video, then in ``pose_dir``: ``<video file name>.pose`` (``x.mp4.pose``),
   else ``<stem>.pose`` (``x.pose``, beside first) when no other video or
   frame folder beside the video has the stem ``x`` (``x.mp4`` and ``x.mov``
   never share one: ``x.pose`` is then an ``InputError`` asking for
   ``x.mp4.pose``); else ``InputError`` telling the user to pass ``--pose`` or
   run ``slt-llm extract``. A frame folder ``x/`` takes ``x.pose``. Read them and
   fill gaps up to ``cfg.max_gap`` frames.
2. Decode once (``slt_llm.data.video.decode_video`` for files: the working
   frames stay in the decoder's pixel format and each is converted to RGB
   only when its hands are cut, so no T x H x W x 3 stack is written;
   ``load_frames`` for frame folders) at a working resolution
   chosen from the hand boxes (``working_side_for``): ``working_side(cfg)``
   = max(8 * hand_size, full_size) (512 px for 64-px crops), raised (in
   steps of ``WORK_SIDE_STEP`` = 64 px, up to ``MAX_WORK_SIDE_FACTOR`` x
   hand_size) when the clip's median hand box would span fewer than
   ``hand_size`` pixels there, so a typical hand crop is a downscale, never
   an upsampled blur. football.mp4 (640x360, boxes ~100 px): 512 px, as
   before; the 1280x720 benchmark clip (boxes ~129 px): 640 px (at 512 its
   51-px boxes were upsampled to 64: 26.8 dB against crops from the
   full-resolution frames, 29.4 dB at 640; docs/perf/decode.md). The
   decoder (swscale) also produces the full-frame input
   (``thumb_side=full_size``, scaled from the working picture), so the
   full frame costs padding only.
   Memory: T x side x side*9/16 x 1.5 bytes for 16:9 yuv420p video (57 MB
   for 256 frames at 512, 88 MB at 640; frame folders: x 3 as RGB).
3. Align keypoints to frames BY TIME: the frame at time ``t`` (seconds since
   the video start, i.e. ``start + Frames.times``) takes the keypoint track at
   ``u = t * pose_fps``: linear interpolation between frames floor(u) and
   floor(u)+1 when both hold the point, else the one that holds it. Beyond the
   track's end the last keypoint frame is held, with confidence 0 once it is
   more than ``HOLD_SECONDS`` (0.5 s) away. If more than half of the sampled
   frames fall outside the track (+ 0.5 s), the pose file does not belong to
   this video: ``InputError``. Real keypoint files often have a few frames
   more or fewer than their video; this handles that.
   A frame folder has no rate of its own: it is read at the keypoint track's
   fps, so folder frame i meets keypoint frame i.
   Before that, the keypoints must belong to the video (``check_pose_agrees``):
   the keypoint frame count within max(3 frames, 10%) of the WHOLE video's
   (``start``/``end`` cut a segment of a track that covers the whole file) and
   the track's fps within 5% of the video's native rate (video files; a frame
   folder has none); else an ``InputError`` naming both files and both counts
   (a skipped sample under ``on_error=skip``). Real extractors drop a frame or
   two at the ends (football.mp4: 64 frames, its keypoints 62).
4. Keypoint pixels are in the pose file's width x height; they are rescaled to
   the video's (upright) source size when the two differ.
5. Hand boxes (source pixels) from the aligned keypoints
   (``slt_llm.data.hands.hand_boxes``); crops from the working frames
   (boxes x ``Frames.scale``, ``crop_hands``); the decoder's full-frame
   thumbnails are padded (zero bars, centred) to ``full_size`` x
   ``full_size`` (``pad_square``). If no hand box can be placed in any
   frame: ``InputError`` (a video with no visible hands).

``clip_to_tensors`` turns a Clip into the torch dict the dataset returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from slt_llm.config import ClipConfig
from slt_llm.data.hands import crop_hands, hand_boxes
from slt_llm.data.layout import Clip
from slt_llm.data.pose import Keypoints, fill_gaps, normalize, read_pose
from slt_llm.errors import InputError

__all__ = ["load_clip", "find_pose", "check_pose_agrees", "same_stem_inputs", "align_keypoints", "frame_keypoints", "pad_square",
           "working_side", "working_side_for", "clip_to_tensors", "HOLD_SECONDS"]

HOLD_SECONDS = 0.5  # beyond the keypoint track's end, hold the last frame this long, then conf 0
MAX_UNCOVERED = 0.5  # share of sampled frames outside the track above which the pose is rejected
WORK_SIDE_STEP = 64  # the working side is rounded up to a multiple of this (stable against small box changes)
MAX_WORK_SIDE_FACTOR = 16  # working side <= 16 x hand_size (memory bound: 1024 px for 64-px crops)


# numpy asks the kernel for transparent huge pages (madvise) on arrays >= 4 MB.
# On a busy machine with fragmented memory, faulting in huge pages for the
# decoded working frames (T x side x side*9/16 x 3: ~177 MB at 640 px) goes
# through direct compaction: measured on the shared 2-core test machine,
# load_clip spent 0.69 s of system time with it vs 0.21 s without, and its
# median wall time fell from 3.08 s to 2.12 s (docs/perf/decode.md). So the
# decode runs with numpy's hint switched off (restored afterwards; the hint
# only affects speed, never results). Set to True to keep numpy's default.
NUMPY_HUGEPAGES = False


class _NoHugePages:
    """Context: numpy's madvise(MADV_HUGEPAGE) hint off, previous value restored.

    Uses ``numpy._core.multiarray._set_madvise_hugepage`` (the switch behind
    numpy's documented ``NUMPY_MADVISE_HUGEPAGE`` variable); a no-op when
    ``NUMPY_HUGEPAGES`` is True or the switch is missing. Process-wide while
    active: other threads' allocations only lose the hint meanwhile.
    """

    def __enter__(self):
        self._set, self._prev = None, None
        if NUMPY_HUGEPAGES:
            return self
        try:
            from numpy._core.multiarray import _set_madvise_hugepage
        except ImportError:  # numpy < 2
            try:
                from numpy.core.multiarray import _set_madvise_hugepage
            except ImportError:
                return self
        self._set = _set_madvise_hugepage
        self._prev = _set_madvise_hugepage(False)
        return self

    def __exit__(self, *exc):
        if self._set is not None:
            self._set(self._prev)
        return False


def working_side(cfg: ClipConfig) -> int:
    """Default longer side (pixels) to decode at when no hand box is known:
    max(8 * hand_size, full_size)."""
    return int(max(8 * cfg.hand_size, cfg.full_size))


def working_side_for(kp: Keypoints, cfg: ClipConfig, *, start: Optional[float] = None,
                     end: Optional[float] = None) -> int:
    """Longer side (pixels) to decode at: ``working_side(cfg)``, or more
    when the median hand box would span fewer than ``cfg.hand_size`` pixels
    there (crops stay downscales, not upsampled).

    Boxes come from ``hand_boxes`` on the keypoint track itself (frames in
    [start, end) seconds when given), in the track's pixel frame; the side
    needed is ``hand_size * long_side / median_box``, rounded up to a
    multiple of ``WORK_SIDE_STEP``, capped at ``MAX_WORK_SIDE_FACTOR`` x
    hand_size. The decoder never upscales, so a small source is decoded at
    its own size. ``working_side(cfg)`` when no box can be placed or the
    track has no pixel size. O(track length) numpy.

    A smaller side than ``working_side(cfg)`` for large hands was measured
    and rejected: football.mp4 at 448 px gave hand crops 0.9-2.0 dB further
    from the full-resolution crops than at 512 (docs/perf/decode.md).
    """
    base = working_side(cfg)
    long_side = max(int(kp.width or 0), int(kp.height or 0))
    if kp.num_frames == 0 or long_side <= 0:
        return base
    t = np.arange(kp.num_frames) / float(kp.fps)
    keep = np.ones(kp.num_frames, bool)
    if start is not None:
        keep &= t >= start - 0.5 / float(kp.fps)
    if end is not None:
        keep &= t < end
    boxes = hand_boxes(kp, cfg)[keep]  # (n,2,4) track pixels
    side = (boxes[..., 2] - boxes[..., 0]).ravel()
    side = side[np.isfinite(side) & (side > 0)]
    if side.size == 0:
        return base
    need = cfg.hand_size * long_side / float(np.median(side))
    need = int(np.ceil(need / WORK_SIDE_STEP - 1e-6)) * WORK_SIDE_STEP
    return int(max(base, min(need, MAX_WORK_SIDE_FACTOR * cfg.hand_size)))


def same_stem_inputs(video) -> list:
    """Other videos / frame folders beside ``video`` with its stem (``x.mov`` for ``x.mp4``): those a
    ``<stem>.pose`` could belong to as well. One directory glob."""
    import glob

    from slt_llm.data.video import is_video_file

    v = Path(video)
    if v.is_dir():
        return []
    out = [p for p in v.parent.glob(glob.escape(v.stem) + ".*")
           if p.name != v.name and p.stem == v.stem and p.is_file() and is_video_file(p)]
    if (v.parent / v.stem).is_dir():
        out.append(v.parent / v.stem)
    return sorted(out)


def find_pose(video, pose=None, pose_dir=None) -> Path:
    """The keypoint file of ``video`` per the lookup order (see module docstring): ``<file name>.pose``
    beside the video, then in ``pose_dir``; else ``<stem>.pose`` there, only when no other input
    beside the video shares the stem (else an InputError naming both videos)."""
    if pose is not None:
        p = Path(pose)
        if not p.is_file():
            raise InputError(pose, "pose file not found")
        return p
    v = Path(video)
    full = f"{v.name}.pose"
    stem = None if v.is_dir() else f"{v.stem}.pose"  # a frame folder x/: x.pose is its full name
    folders = [v.parent] + ([Path(pose_dir)] if pose_dir is not None else [])
    for d in folders:  # the full name anywhere first
        if (d / full).is_file():
            return d / full
    for d in folders if stem is not None else []:
        if (d / stem).is_file():
            others = same_stem_inputs(v)
            if others:
                raise InputError(d / stem, f"keypoints of which video? {v.name} and {others[0].name} share the "
                                           f"stem {v.stem!r}; name the file {full} (the video's full name + .pose)")
            return d / stem
    where = " or ".join(str(d / n) for d in folders for n in ([full] + ([stem] if stem else [])))
    raise InputError(video, f"no keypoints found (looked for {where}); put a {full} beside the video or "
                            f"in --pose-dir, or extract them with `slt-llm extract {video} --extractor-model FILE`")


# keypoint frames may differ from the video's by max(3, 10%): detectors drop a few frames at the ends
# (football.mp4: 64 frames, its MediaPipe track 62; the synthetic PHOENIX profile drops up to 3)
POSE_FRAME_TOLERANCE = (3, 0.10)
POSE_FPS_TOLERANCE = 0.05  # relative


def check_pose_agrees(kp: Keypoints, pose_path, video, *, video_frames: Optional[int],
                      video_fps: Optional[float] = None) -> None:
    """InputError (one line naming both files and both counts) when the keypoint track cannot be
    this video's: its frame count off the video's (the whole file's) by more than
    max(``POSE_FRAME_TOLERANCE``), or its fps off the video's native rate by more than 5%.
    ``video_frames``/``video_fps`` None: not known, not checked (a frame folder has no rate)."""
    n_p, f_p = int(kp.num_frames), float(kp.fps)
    fps_bad = bool(video_fps) and f_p > 0 and abs(f_p - video_fps) > POSE_FPS_TOLERANCE * video_fps
    tol = max(POSE_FRAME_TOLERANCE[0], POSE_FRAME_TOLERANCE[1] * video_frames) if video_frames else 0
    frames_bad = bool(video_frames) and abs(n_p - video_frames) > tol
    if not (fps_bad or frames_bad):
        return
    at_v = f" at {video_fps:.4g} fps" if video_fps else ""
    what = "frame rate" if fps_bad and not frames_bad else "frame count"
    raise InputError(pose_path, f"keypoints do not match the video {video}: {n_p} frames at {f_p:.4g} fps vs "
                                f"{video_frames if video_frames else '?'} frames{at_v} (the {what} differs beyond "
                                f"max(3 frames, 10%) / 5% fps); extract the keypoints of this video again")


def align_keypoints(kp: Keypoints, times: np.ndarray, *, hold: float = HOLD_SECONDS):
    """Sample a keypoint track at frame times (seconds from the track's start).

    Returns ``(xy (N,53,2), conf (N,53), covered bool (N,))``: linear
    interpolation between the two neighbouring keypoint frames where both hold
    the point (else the one that holds it); past the last frame the last frame is
    held, its confidence 0 once more than ``hold`` seconds away (``covered``
    false there). O(N * 53).
    """
    T = kp.num_frames
    times = np.asarray(times, dtype=np.float64)
    n = times.shape[0]
    if T == 0:
        return (np.zeros((n,) + kp.xy.shape[1:], np.float32), np.zeros((n, kp.xy.shape[1]), np.float32),
                np.zeros(n, bool))
    u = np.clip(times * float(kp.fps), 0.0, None)  # (N,)
    i0 = np.minimum(np.floor(u).astype(np.int64), T - 1)
    i1 = np.minimum(i0 + 1, T - 1)
    w = np.clip(u - i0, 0.0, 1.0).astype(np.float32)  # 1 past the end, but then i0 == i1
    c0, c1 = kp.conf[i0], kp.conf[i1]  # (N,53)
    both = (c0 > 0) & (c1 > 0)
    near1 = (w >= 0.5)[:, None]
    xy_lin = (1 - w)[:, None, None] * kp.xy[i0] + w[:, None, None] * kp.xy[i1]
    c_lin = (1 - w)[:, None] * c0 + w[:, None] * c1
    # one neighbour lacks the point: take the one that holds it (else the nearer)
    pick1 = np.where((c0 > 0) != (c1 > 0), c1 > 0, near1)
    xy_near = np.where(pick1[..., None], kp.xy[i1], kp.xy[i0])
    c_near = np.where(pick1, c1, c0)
    xy = np.where(both[..., None], xy_lin, xy_near).astype(np.float32)
    conf = np.where(both, c_lin, c_near).astype(np.float32)
    covered = u <= (T - 1) + hold * float(kp.fps)
    conf[~covered] = 0.0
    xy[conf <= 0] = 0.0
    return xy, conf, covered


def pad_square(frames: np.ndarray, size: int, *, channels_first: bool = False) -> np.ndarray:
    """Centre (T,h,w,3) uint8 images with max(h, w) <= ``size`` on black
    ``size`` x ``size`` canvases: uint8 (T, size, size, 3), or
    (T, 3, size, size) with ``channels_first``; bars split evenly (the
    odd pixel after the picture). One vectorised copy (no resampling)."""
    T, h, w = frames.shape[:3]
    if h > size or w > size:
        raise ValueError(f"pad_square: images {w}x{h} do not fit in {size}x{size}")
    y0, x0 = (size - h) // 2, (size - w) // 2
    if channels_first:
        out = np.zeros((T, 3, size, size), np.uint8)
        out[:, :, y0 : y0 + h, x0 : x0 + w] = frames.transpose(0, 3, 1, 2)
        return out
    out = np.zeros((T, size, size, 3), np.uint8)
    out[:, y0 : y0 + h, x0 : x0 + w] = frames
    return out


def frame_keypoints(kp: Keypoints, fr, *, start: Optional[float] = None, pose_path=None):
    """Keypoints aligned to decoded ``Frames`` by time, in the video's source pixels.

    Returns ``(Keypoints (T,53) at the frames' rate, covered bool (T,))``;
    raises ``InputError`` (naming ``pose_path``) when more than half of the
    frames lie beyond the keypoint track (+ ``HOLD_SECONDS``).
    """
    t_abs = np.asarray(fr.times, np.float64) + (float(start) if start else 0.0)
    xy, conf, covered = align_keypoints(kp, t_abs)
    if t_abs.size and float((~covered).mean()) > MAX_UNCOVERED:
        raise InputError(pose_path or kp.source or "<keypoints>",
                         f"keypoints cover {kp.num_frames} frames ({kp.num_frames / kp.fps:.2f} s) but the "
                         f"video runs to {t_abs[-1]:.2f} s: pose file does not match the video")
    src_w, src_h = int(fr.src_width), int(fr.src_height)
    kw, kh = (kp.width or src_w), (kp.height or src_h)
    if (kw, kh) != (src_w, src_h):
        xy = xy * np.array([src_w / kw, src_h / kh], np.float32)
    akp = Keypoints(xy=xy, conf=conf, fps=float(fr.fps), layout=kp.layout, width=src_w, height=src_h,
                    source=kp.source)
    return akp, covered


def load_clip(
    video,
    cfg: ClipConfig,
    *,
    pose: Union[None, str, Path, Keypoints] = None,
    pose_dir=None,
    start: Optional[float] = None,
    end: Optional[float] = None,
    check_pose: bool = True,
) -> Clip:
    """Video + keypoints -> ``Clip`` (shapes in ``slt_llm.data.layout``).

    ``pose`` may be a path or already-read ``Keypoints``. ``start``/``end``
    (seconds) cut a segment of the video; the keypoint track is taken to
    start at the video's time 0, so frame times are offset by ``start``.
    Raises ``InputError`` for a missing/bad video or pose file, a pose file
    that does not belong to the video (``check_pose_agrees``; ``check_pose=False``
    skips that check, for code that cuts tracks on purpose) or does not cover
    it, or a clip where no hand can be placed.
    """
    from slt_llm.data.video import decode_video, load_frames

    v = Path(video)
    if not v.exists():  # said before any keypoint lookup: a missing video is not a missing pose
        raise InputError(video, "video not found" + (" (a symbolic link to a missing file)" if v.is_symlink() else ""))
    if isinstance(pose, Keypoints):
        kp, pose_path = pose, pose.source or "<keypoints>"
    else:
        pose_path = find_pose(video, pose, pose_dir)
        kp = read_pose(pose_path)
    kp = fill_gaps(kp, cfg.max_gap)

    # a frame folder has no rate of its own: it runs at the keypoint track's rate
    # (frame i <-> keypoint frame i), as when `slt-llm extract` made the track
    side = working_side_for(kp, cfg, start=start, end=end)
    with _NoHugePages():
        if Path(video).is_dir():
            fr = load_frames(video, fps=cfg.fps, max_fps=cfg.max_fps, max_frames=cfg.max_frames,
                             max_side=side, start=start, end=end, folder_fps=float(kp.fps),
                             thumb_side=cfg.full_size)
            frames = np.asarray(fr.frames)
        else:  # no RGB stack: each working frame is converted when its hands are cut
            fr = frames = decode_video(video, fps=cfg.fps, max_fps=cfg.max_fps, max_frames=cfg.max_frames,
                                       max_side=side, start=start, end=end, threads=cfg.decode_threads,
                                       thumb_side=cfg.full_size)
    T = frames.shape[0]
    if T == 0:
        raise InputError(video, "no frames decoded")
    meta = getattr(fr, "meta", None) or {}
    if not check_pose:
        pass
    elif Path(video).is_dir():
        check_pose_agrees(kp, pose_path, video, video_frames=meta.get("num_images"))
    else:
        check_pose_agrees(kp, pose_path, video, video_frames=meta.get("num_frames"),
                          video_fps=float(getattr(fr, "native_fps", 0.0) or 0.0) or None)

    akp, covered = frame_keypoints(kp, fr, start=start, pose_path=pose_path)
    boxes = hand_boxes(akp, cfg)  # (T,2,4) source pixels
    if np.isnan(boxes).all():
        raise InputError(pose_path, "no hand can be placed in any frame (no hand, wrist or elbow keypoints)")
    box_work = boxes * np.float32(fr.scale)  # working-frame pixels
    with _NoHugePages():
        # written straight in the Clip's channels-first layout (no transposing copies)
        left, right = crop_hands(frames, box_work, cfg.hand_size, channels_first=True)  # (T,3,h,h) each
        full = pad_square(fr.thumbs, cfg.full_size, channels_first=True)  # (T,3,f,f): padding only
    if hasattr(frames, "release"):
        frames.release()

    return Clip(
        full=full,
        left=left,
        right=right,
        keypoints=normalize(akp),
        boxes=boxes.astype(np.float32),
        times=np.asarray(fr.times, np.float32),
        fps=float(fr.fps),
        source=str(video),
        meta={
            "pose": str(pose_path),
            "layout": kp.layout,
            "pose_frames": kp.num_frames,
            "pose_fps": float(kp.fps),
            "uncovered_frames": int((~covered).sum()),
            "src_size": [akp.width, akp.height],
            "work_size": [int(frames.shape[2]), int(frames.shape[1])],
            "work_side": int(side),
            "hand_frames": [int(np.isfinite(boxes[:, s, 0]).sum()) for s in range(2)],
        },
    )


def clip_to_tensors(clip: Clip) -> dict:
    """Clip -> dict of torch tensors (the fields of the batch contract, no copy).

    full/left/right uint8 (T,3,S,S), keypoints float32 (T,53,3), boxes float32
    (T,2,4) (NaN where no box: consumers that need finite values should use
    ``torch.nan_to_num``), times float32 (T,).
    """
    import torch

    return {
        "full": torch.from_numpy(clip.full),
        "left": torch.from_numpy(clip.left),
        "right": torch.from_numpy(clip.right),
        "keypoints": torch.from_numpy(clip.keypoints),
        "boxes": torch.from_numpy(clip.boxes),
        "times": torch.from_numpy(clip.times),
    }
