"""Video files and frame folders -> uint8 RGB frames sampled by time.

Public API (contract in docs/ARCHITECTURE.md, "Video"):

``probe_video(path) -> VideoInfo``
    Container/stream metadata plus the display rotation (decodes one frame).
``read_video(path, *, fps=None, max_fps=30.0, max_frames=None, max_side=None,
start=None, end=None, threads=0) -> Frames``
    PyAV decoding with FFmpeg threads, sampling by presentation time,
    seek/stop for clips, frame cap, resize in swscale, rotation applied.
``decode_video(path, **same as read_video) -> LazyFrames``
    The same decode without the RGB stack: kept frames stay at their output
    size in the decoder's pixel format and are converted (bit-identically)
    on access, one at a time (``load_clip`` crops hands from each in turn).
``read_frame_folder(path, *, fps=25.0, max_frames=None, max_side=None, ...) -> Frames``
    PNG/JPG frames sorted naturally (``2.png`` before ``10.png``).
``load_frames(path, **kw) -> Frames``
    Folder -> ``read_frame_folder``, file -> ``read_video``.
``find_inputs(folder) -> list[Path]``
    Video files and frame folders under a folder, in a stable order.

Sampling policy (the same for files and folders)
------------------------------------------------
* Time of a frame = ``pts * time_base`` minus the stream's start time, so
  variable-frame-rate video is sampled by real time, never by frame index.
* The target rate is ``fps`` if given, else the native rate; either way at most
  ``max_fps``. The time axis is cut into slots of ``1/rate`` seconds centred on
  ``t_first + k/rate``; in each slot the frame nearest its centre is kept.
  When the target is at or above the native rate every frame is kept (never
  duplicated).
* ``max_frames``: the clip is subsampled *uniformly over its whole duration*,
  never truncated (the end of a sentence matters). For video, when the
  sampled clip would exceed ``max_frames``, the sampling rate is lowered to
  ``(max_frames - 1) / span``, a grid from the first to the expected last
  frame (``span`` from container metadata), and the final slot keeps the
  clip's last frame; so only the frames kept are converted. If the metadata
  understates the length and more frames come out, they are subsampled by
  index (``np.linspace``, first and last kept) to exactly ``max_frames``; if
  it overstates it by more than half a slot, one frame fewer comes out.
  Frame folders know their length and use the index subsample directly.
* Only kept frames are converted (in swscale: AREA downscale in the source
  pixel format, then the unscaled YUV->RGB fast path; see ``_to_rgb``); dropped
  frames are decoded (unavoidable with inter-frame codecs) but never
  converted.

Output (``Frames``): ``frames`` uint8 (T, H, W, 3), upright; ``times``
float64 (T,) seconds from the clip start (``start`` if given, else the first
frame); ``fps`` the effective rate (``min(target, native)``, times ``(T-1)/(n-1)``
when ``max_frames`` kept T of n sampled frames);
``src_width``/``src_height`` the upright source size; ``scale`` = output width
/ source width (height differs by < 0.5 px of rounding); ``t0`` the absolute
time (seconds in the source) of ``times == 0``, so ``t0 + times`` are
positions in the source video (use that to align keypoints of a whole video
with a clip cut by ``start``/``end``).

Cost: decoding dominates (every frame up to ``end`` is decoded, from the
keyframe before ``start``); conversion costs O(kept frames x output pixels).
Memory: T x H x W x 3 bytes for the output plus FFmpeg's frame-thread buffers.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from slt_llm.errors import InputError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

# frames closer than this (seconds) to start/end are treated as on the boundary
_TIME_EPS = 1e-4
# swscale filter for downscaling: AREA (box average) is the right filter for
# large ratios and measured cheaper than BILINEAR (docs/perf/decode.md)
_INTERPOLATION = "AREA"
# swscale slice threads: a picture up to this many source pixels is converted
# on the calling thread (threads=1). Measured (eval/bench_decode.py machine,
# 2 cores): the thread hand-off costs more than it saves on small pictures
# (96x96 -> RGB 0.015 vs 0.055 ms, 1280x720 -> 112x63 0.31 vs 0.42 ms,
# 640x360 -> RGB 0.20 vs 0.25 ms), while the 1280x720 -> 640x360 downscale
# is as cheap or cheaper with threads; outputs are identical either way.
_SWS_SINGLE_THREAD_PIXELS = 640 * 480


@dataclass
class VideoInfo:
    """Metadata of a video file. ``width``/``height`` are upright (display)
    size, i.e. after ``rotation``; ``coded_width``/``coded_height`` as stored.
    ``rotation``: counter-clockwise degrees the display matrix turns the coded
    picture (0, 90, 180, -90; FFmpeg's ``av_display_rotation_get``).
    ``num_frames`` is the container's count when it has one, else
    ``round(duration * fps)`` (an estimate; edit lists can make decoding yield
    a few frames fewer)."""

    path: str
    fps: float
    num_frames: int
    duration: float
    width: int
    height: int
    rotation: int
    codec: str
    coded_width: int = 0
    coded_height: int = 0
    pix_fmt: str = ""
    has_audio: bool = False


@dataclass
class Frames:
    """Decoded frames: see the module docstring for every field."""

    frames: np.ndarray  # uint8 (T, H, W, 3)
    times: np.ndarray  # float64 (T,)
    fps: float
    src_width: int
    src_height: int
    scale: float
    t0: float = 0.0
    native_fps: float = 0.0
    rotation: int = 0
    source: str = ""
    meta: dict = field(default_factory=dict)
    thumbs: Optional[np.ndarray] = None  # uint8 (T, th, tw, 3) when thumb_side was asked

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def __len__(self) -> int:
        return self.num_frames


# ---------------------------------------------------------------- helpers
def is_video_file(path) -> bool:
    """True for an existing-or-not path whose suffix is a video extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


_NUM = re.compile(r"(\d+)")


def natural_key(name: str):
    """Sort key: digit runs compare as numbers (``images2`` < ``images10``)."""
    parts = _NUM.split(name)
    return [(0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts]


def _out_size(w: int, h: int, max_side: Optional[int]) -> tuple[int, int]:
    """Output (w, h) keeping aspect with the longest side <= max_side; never upscales."""
    if max_side is None or max(w, h) <= max_side:
        return w, h
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    s = max_side / max(w, h)
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


def _thumb_size(w: int, h: int, side: int) -> tuple[int, int]:
    """(w, h) with the longest side exactly ``side`` (up- or downscaled), aspect kept."""
    if side < 1:
        raise ValueError(f"thumb_side must be >= 1, got {side}")
    s = side / max(w, h)
    return max(1, int(round(w * s))), max(1, int(round(h * s)))


def _uniform_indices(n: int, k: int) -> np.ndarray:
    """k indices spread uniformly over range(n), first and last included."""
    if k >= n:
        return np.arange(n)
    if k == 1:
        return np.array([n // 2])
    return np.round(np.linspace(0, n - 1, k)).astype(np.int64)


def _effective_fps(rate: float, kept: int, sampled: int) -> float:
    """Rate after the max_frames subsample: ``kept`` of ``sampled`` frames
    spread over the same span."""
    if sampled <= 1 or kept <= 1:
        return float(rate) if kept == sampled else float(rate) / max(1, sampled)
    return float(rate) * (kept - 1) / (sampled - 1)


class _FrameBuffer:
    """Growable (N, h, w, 3) uint8 buffer: frames are written once into one
    preallocated block (no per-frame list + ``np.stack`` copy: touching fresh
    memory twice cost ~1 s per 113 MB on the shared test machine). Starts at
    the expected frame count; doubles (one copy) if the estimate was short."""

    def __init__(self, capacity: int):
        self.capacity = max(1, int(capacity))
        self.data: Optional[np.ndarray] = None
        self.n = 0

    def append(self, arr: np.ndarray) -> None:
        if self.data is None:
            self.data = np.empty((self.capacity,) + arr.shape, np.uint8)
        elif self.n == self.data.shape[0]:
            grown = np.empty((2 * self.n,) + self.data.shape[1:], np.uint8)
            grown[: self.n] = self.data
            self.data = grown
        self.data[self.n] = arr
        self.n += 1

    def array(self) -> np.ndarray:
        return self.data[: self.n]


class _SlotSampler:
    """Streaming nearest-to-grid selection by time (see module docstring).

    ``offer(t, item)`` returns the ``(dist, t, item)`` that is now final (the
    best of a slot that just closed) or None; ``flush(end)`` returns the last
    one. With ``rate=None`` every item is kept. O(1) per frame; holds at most
    one pending item (an unconverted decoder frame).
    """

    def __init__(self, rate: Optional[float], trim_tail: bool = True, keep_last: bool = False):
        self.rate = rate
        self.trim_tail = trim_tail
        self.keep_last = keep_last  # the final slot yields the clip's last item
        self.origin: Optional[float] = None
        self.slot = -1
        self.best = None  # (dist, t, item)
        self.latest = None  # latest item of the current slot

    def offer(self, t: float, item):
        if self.rate is None:
            out, self.best = self.best, (0.0, t, item)
            return out
        if self.origin is None:
            self.origin = t
        x = (t - self.origin) * self.rate
        slot = int(math.floor(x + 0.5))
        dist = abs(x - slot)
        out = None
        if slot != self.slot:
            out = self.best
            self.slot, self.best = slot, (dist, t, item)
        elif dist < self.best[0]:
            self.best = (dist, t, item)
        if self.keep_last:
            self.latest = (dist, t, item)
        return out

    def flush(self, end: Optional[float] = None):
        """The pending item, unless its grid point lies at or after ``end``
        (the end of the last frame's display, ``t_last + 1/native``): only
        grid points inside the clip count (10 -> 5 fps on 20 frames gives 10
        frames, not 11). Never drops the only item."""
        out, self.best = self.best, None
        if self.keep_last and self.latest is not None:
            out, self.latest = self.latest, None
        if out is not None and self.rate is not None and self.trim_tail and end is not None and self.slot > 0:
            if self.origin + self.slot / self.rate >= end - 1e-6:
                return None
        return out


# ----------------------------------------------------------- rotation
def _display_matrix(frame) -> Optional[tuple[int, int, int, int]]:
    """(a, b, c, d) of the frame's DISPLAYMATRIX side data, each -1/0/1, or None."""
    try:
        for sd in frame.side_data.keys():
            if str(getattr(sd, "type", "")).endswith("DISPLAYMATRIX"):
                raw = bytes(sd)
                if len(raw) != 36:
                    return None
                m = np.frombuffer(raw, dtype="<i4").astype(np.float64)
                a, b, c, d = (m[0], m[1], m[3], m[4])
                norm = max(abs(a), abs(b), abs(c), abs(d))
                if norm == 0:
                    return None
                return tuple(int(round(v / norm)) for v in (a, b, c, d))
    except Exception:  # side-data API differences across PyAV builds
        return None
    return None


def _matrix_from_rotation(rot: int) -> tuple[int, int, int, int]:
    # av_display_rotation_set: [cos, -sin; sin, cos], counter-clockwise
    r = math.radians(rot)
    return (int(round(math.cos(r))), int(round(-math.sin(r))), int(round(math.sin(r))), int(round(math.cos(r))))


def _orientation(frame, stream) -> tuple[tuple[int, int, int, int], int]:
    """The display transform as an axis-aligned matrix (a, b, c, d) and the
    rotation in degrees (counter-clockwise, FFmpeg convention). Sources, in
    order: the frame's display matrix side data, ``frame.rotation``, the
    legacy ``rotate`` stream tag (clockwise degrees). Angles are rounded to a
    multiple of 90 (non-right-angle rotations are not supported)."""
    rot = 0
    try:
        rot = int(round(float(frame.rotation)))
    except Exception:
        rot = 0
    if rot == 0:
        tag = (stream.metadata or {}).get("rotate")
        if tag:
            try:
                rot = -int(round(float(tag)))
            except ValueError:
                rot = 0
    rot = int(round(rot / 90.0)) * 90
    rot = ((rot + 180) % 360) - 180  # -> [-180, 180)
    m = _display_matrix(frame)
    if m is None or not _axis_aligned(m):
        m = _matrix_from_rotation(rot)
    return m, rot


def _axis_aligned(m) -> bool:
    a, b, c, d = m
    return (a != 0 and d != 0 and b == 0 and c == 0) or (a == 0 and d == 0 and b != 0 and c != 0)


def _swaps_axes(m) -> bool:
    """True when the display transform exchanges width and height (m = (a, b, c, d))."""
    return m[0] == 0 and m[2] != 0


def _apply_orientation(arr: np.ndarray, m) -> np.ndarray:
    """Apply display matrix (a, b, c, d) to images (..., H, W, C).

    FFmpeg maps a source point (p, q) (x right, y down) to
    (p', q') = (a p + c q, b p + d q). Cost: one copy of ``arr`` unless the
    matrix is the identity.
    """
    a, b, c, d = m
    if (a, b, c, d) == (1, 0, 0, 1):
        return arr
    h_ax, w_ax = arr.ndim - 3, arr.ndim - 2
    if a == 0:  # axes swap: p' = c q, q' = b p
        axes = list(range(arr.ndim))
        axes[h_ax], axes[w_ax] = w_ax, h_ax
        out = arr.transpose(axes)
        if c < 0:
            out = np.flip(out, axis=w_ax)
        if b < 0:
            out = np.flip(out, axis=h_ax)
    else:  # p' = a p, q' = d q
        out = arr
        if a < 0:
            out = np.flip(out, axis=w_ax)
        if d < 0:
            out = np.flip(out, axis=h_ax)
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------- opening
_MAGIC = (
    (4, b"ftyp"),  # mp4 / mov / m4v
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"free"),
    (4, b"wide"),
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"),  # avi
)


def _looks_like_container(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head[off : off + len(sig)] == sig for off, sig in _MAGIC)


def _ffmpeg_reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(":")[0].strip() or type(e).__name__


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, not a video file (frame folders go through read_frame_folder/load_frames)")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")


def _open(path: Path):
    """Open a container, turning FFmpeg failures into InputError."""
    import av

    _check_file(path)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        if _looks_like_container(path):
            raise InputError(path, f"truncated or corrupt video (FFmpeg could not read it: {_ffmpeg_reason(e)})") from None
        raise InputError(path, f"not a video file (FFmpeg could not read it: {_ffmpeg_reason(e)})") from None
    if not container.streams.video:
        kinds = [s.type for s in container.streams]
        container.close()
        what = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))) or "no streams"
        raise InputError(path, f"no video stream (the file has: {what})")
    return container


def _native_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            r = float(rate)
            if 0 < r < 1000:
                return r
    return 25.0


def _stream_start(stream) -> float:
    if stream.start_time is not None and stream.time_base:
        return float(stream.start_time * stream.time_base)
    return 0.0


def _duration(container, stream) -> Optional[float]:
    """Stream length in seconds from metadata (None when unknown)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration) / 1_000_000 - max(0.0, _stream_start(stream) - (container.start_time or 0) / 1_000_000)
    if stream.frames:
        return stream.frames / _native_fps(stream)
    return None


def _set_threads(stream, threads: int) -> None:
    cc = stream.codec_context
    if threads == 1:
        cc.thread_count = 1
        return
    cc.thread_type = "AUTO"  # frame + slice threads
    cc.thread_count = max(0, int(threads))  # 0: FFmpeg picks (number of cores)


def _frame_time(frame, stream, prev: Optional[float], native: float) -> float:
    if frame.pts is not None:
        return float(frame.pts * stream.time_base) - _stream_start(stream)
    return 0.0 if prev is None else prev + 1.0 / native


def _decode_from(container, stream, start: Optional[float], native: float):
    """Decoded frames from the keyframe at or before ``start`` (all frames
    when ``start`` is None/0). If the index sends the seek past ``start``
    (broken or coarse indexes), decoding restarts from the beginning so no
    frame in range is lost."""
    import av

    if start is None or start <= 0:
        yield from container.decode(stream)
        return
    offset = int((start + _stream_start(stream)) / stream.time_base)
    try:
        container.seek(offset, stream=stream, backward=True, any_frame=False)
    except av.error.FFmpegError:
        container.seek(0, stream=stream, backward=True)
    it = container.decode(stream)
    first = next(it, None)
    if first is None:
        return
    if first.pts is not None and _frame_time(first, stream, None, native) > start + _TIME_EPS:
        container.seek(0, stream=stream, backward=True)  # landed after start: start over
        yield from container.decode(stream)
        return
    yield first
    yield from it


def _check_truncated(path, stream, native: float, last_t: Optional[float], end: Optional[float]) -> None:
    """InputError when frames stop well before the video track's own length.

    A file cut short with its index at the front (mp4 ``faststart``) opens
    and decodes without any FFmpeg error; only the missing tail shows it.
    Checked only when the track states its length (``stream.duration``: mp4,
    mov, avi; Matroska/WebM usually do not), with a tolerance of
    max(0.5 s, 5%) so that edit lists and rounding never trigger it.
    """
    if last_t is None or not stream.duration or not stream.time_base:
        return
    track_end = float(stream.duration * stream.time_base)
    expected = track_end if end is None else min(end, track_end)
    got = last_t + 1.0 / native
    if expected - got > max(0.5, 0.05 * track_end):
        raise InputError(path, f"truncated video: frames stop at {got:.2f}s but the video track is {track_end:.2f}s long")


def _sws_threads(frame) -> int:
    """swscale threads for converting ``frame``: 1 for small pictures, else 0 (auto)."""
    return 1 if frame.width * frame.height <= _SWS_SINGLE_THREAD_PIXELS else 0


def _to_small(frame, size: tuple[int, int], scaler, rgb):
    """Decoder frame -> a frame at ``size`` = (w, h): AREA downscale in the
    frame's own pixel format (the decoder frame itself when no scaling is
    needed; scaled straight to RGB for pixel formats swscale cannot scale
    in place). ``_rgb_array`` turns the result into RGB."""
    import av

    if (frame.width, frame.height) == size:
        return frame
    th = _sws_threads(frame)
    try:
        return scaler.reformat(frame, width=size[0], height=size[1], interpolation=_INTERPOLATION, threads=th)
    except (ValueError, av.error.FFmpegError):  # pragma: no cover - exotic pixel formats
        return rgb.reformat(frame, width=size[0], height=size[1], format="rgb24", interpolation=_INTERPOLATION,
                            threads=th)


def _rgb_array(small, rgb) -> np.ndarray:
    """A frame already at its output size -> uint8 (h, w, 3) (swscale's unscaled fast path)."""
    return rgb.reformat(small, format="rgb24", threads=_sws_threads(small)).to_ndarray()


def _to_rgb(frame, size: tuple[int, int], scaler, rgb) -> np.ndarray:
    """Decoder frame -> uint8 (h, w, 3) RGB at ``size`` = (w, h), in swscale.

    Downscaling is done in the frame's own pixel format (AREA filter), then
    the small frame is converted to RGB by swscale's unscaled fast path. On
    eval/bench_decode.py this used ~25% less CPU than one scaled
    YUV->RGB pass and matched a reference resize's mean colour better
    (docs/perf/decode.md). ``scaler``/``rgb`` are VideoReformatters kept for
    the whole clip (a cached SwsContext each; a fresh ``frame.reformat``
    builds a new one per frame).
    """
    return _rgb_array(_to_small(frame, size, scaler, rgb), rgb)


# ------------------------------------------------------------------ probe
def probe_video(path) -> VideoInfo:
    """Metadata of a video file. Cost: opens the file and decodes its first
    frame (to read the display rotation). Raises InputError on bad files."""
    import av

    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        native = _native_fps(stream)
        dur = _duration(container, stream)
        n = int(stream.frames or 0)
        if n <= 0 and dur is not None:
            n = int(round(dur * native))
        m, rot = (1, 0, 0, 1), 0
        try:
            for frame in container.decode(stream):
                m, rot = _orientation(frame, stream)
                break
        except av.error.FFmpegError as e:
            raise InputError(path, f"corrupt video data (FFmpeg: {_ffmpeg_reason(e)})") from None
        cw, ch = stream.codec_context.width, stream.codec_context.height
        w, h = (ch, cw) if _swaps_axes(m) else (cw, ch)
        return VideoInfo(
            path=str(path),
            fps=native,
            num_frames=n,
            duration=float(dur) if dur is not None else n / native,
            width=w,
            height=h,
            rotation=rot,
            codec=stream.codec_context.name,
            coded_width=cw,
            coded_height=ch,
            pix_fmt=stream.codec_context.pix_fmt or "",
            has_audio=bool(container.streams.audio),
        )
    finally:
        container.close()


# ------------------------------------------------------------------- video
def _check_args(fps, max_fps, max_frames, start, end):
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if max_fps is not None and not max_fps > 0:
        raise ValueError(f"max_fps must be > 0, got {max_fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if start is not None and start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")


def _target_rate(fps, max_fps, native) -> float:
    rate = float(fps) if fps is not None else native
    if max_fps is not None:
        rate = min(rate, float(max_fps))
    return rate


def read_video(
    path,
    *,
    fps: Optional[float] = None,
    max_fps: Optional[float] = 30.0,
    max_frames: Optional[int] = None,
    max_side: Optional[int] = None,
    start: Optional[float] = None,
    end: Optional[float] = None,
    threads: int = 0,
    thumb_side: Optional[int] = None,
    lazy: bool = False,
) -> Frames:
    """Decode a video file into upright RGB frames sampled by time.

    Args:
        fps: target rate (None: native); always capped at ``max_fps``.
        max_frames: cap; uniform subsample over the whole clip (module docstring).
        max_side: longest output side in pixels (downscale only), done by swscale.
        start, end: seconds in the source (0 = first frame); frames with
            ``start <= t < end`` are kept. Seeks to the keyframe before ``start``.
        threads: FFmpeg decoding threads; 0 = automatic, 1 = no threading.
        thumb_side: also return ``Frames.thumbs``, each kept frame scaled by
            swscale so that its longest side is exactly ``thumb_side`` (e.g.
            the clip's full-frame input: letterboxing it is then only
            padding). Scaled (AREA, still in the decoder's pixel format) from
            the already-downscaled working picture when the thumbnail fits
            in it, else from the decoded picture: 640x360 -> 112x63 costs
            ~0.3 ms/frame here vs ~0.7 ms from 1280x720 (docs/perf/decode.md).
        lazy: return ``LazyFrames`` instead (``decode_video``).

    Returns ``Frames`` (frames uint8 (T,H,W,3), times float64 (T,)).
    Raises ``InputError`` for missing/empty/corrupt/non-video files and for a
    range that decodes no frame. Cost: see the module docstring.
    """
    return _read_video(path, fps=fps, max_fps=max_fps, max_frames=max_frames, max_side=max_side,
                       start=start, end=end, threads=threads, thumb_side=thumb_side, lazy=lazy)


class LazyFrames:
    """The kept frames of a video at their output size, still in the
    decoder's pixel format (yuv420p: half the bytes of RGB), converted to
    upright RGB one at a time on access: ``lazy[i]`` -> uint8 (H, W, 3).

    Same fields as ``Frames`` except ``frames``; ``shape`` is the (T, H, W, 3)
    an RGB stack would have. Accessing the same index twice in a row
    converts once. Pixels are bit-identical to ``read_video``'s
    ``frames[i]`` (the same swscale conversion). Use it to consume frames
    without materialising a T x H x W x 3 array (``load_clip`` crops the
    hands from each frame in turn): fresh memory is expensive to fault in on
    a busy machine (docs/perf/decode.md). Not picklable (holds decoder frames).
    """

    def __init__(self, kept: list, shape: tuple, m, **fields):
        from av.video.reformatter import VideoReformatter

        self._kept, self.shape, self._m = kept, tuple(shape), m
        self._rgb = VideoReformatter()
        self._last: tuple = (-1, None)
        for k in ("times", "fps", "src_width", "src_height", "scale", "t0", "native_fps", "rotation",
                  "source", "meta", "thumbs"):
            setattr(self, k, fields[k])

    @property
    def num_frames(self) -> int:
        return len(self._kept)

    def __len__(self) -> int:
        return len(self._kept)

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        if self._last[0] != i:
            self._last = (i, _apply_orientation(_rgb_array(self._kept[i], self._rgb), self._m))
        return self._last[1]

    def release(self) -> None:
        """Drop the decoder frames (memory) once consumed."""
        self._kept, self._last = [], (-1, None)


def decode_video(path, **options) -> LazyFrames:
    """``read_video(path, lazy=True, **options)``: ``read_video`` without the RGB
    stack: same keyword arguments, sampling, thumbnails, times and errors; the
    kept frames come back as ``LazyFrames`` (converted to RGB on access,
    bit-identical to ``read_video``'s). Saves converting and writing
    T x H x W x 3 bytes up front (177 MB for 256 frames at 640x360)."""
    return read_video(path, lazy=True, **options)


def _read_video(path, *, fps, max_fps, max_frames, max_side, start, end, threads, thumb_side, lazy):
    import av
    from av.video.reformatter import VideoReformatter

    _check_args(fps, max_fps, max_frames, start, end)
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        _set_threads(stream, threads)
        native = _native_fps(stream)
        rate = _target_rate(fps, max_fps, native)
        dur = _duration(container, stream)

        # expected span of the clip (first..last frame), to spread max_frames over it
        lo = start or 0.0
        hi = dur if dur is not None else None
        if end is not None:
            hi = end if hi is None else min(hi, end)
        by_cap = False  # rate lowered to spread max_frames over the clip
        if max_frames is not None and hi is not None:
            span = hi - lo - 1.0 / native
            if span > 0 and max_frames > 1 and span * min(rate, native) + 1 > max_frames:
                # a grid of max_frames points from the first to the expected
                # last frame; the final slot keeps the clip's last frame
                rate, by_cap = min(rate, (max_frames - 1) / span), True

        # at or above the native rate every frame is kept (VFR included)
        capped = rate < native * (1 - 1e-6)
        sampler = _SlotSampler(rate if capped else None, trim_tail=not by_cap, keep_last=by_cap)
        if hi is not None:
            n_est = int(math.ceil((hi - lo) * (rate if capped else native))) + 2
        else:
            n_est = 64
        if max_frames is not None and by_cap:
            n_est = max_frames + 1
        buf = _FrameBuffer(n_est) if not lazy else None
        kept: list = []  # lazy: frames at output size, decoder pixel format
        tbuf = _FrameBuffer(n_est) if thumb_side is not None else None
        times: list[float] = []
        m, rot = (1, 0, 0, 1), 0
        size = tsize = None  # coded (w, h) to convert to (frames, thumbs)
        prev_t: Optional[float] = None
        last_in_range: Optional[float] = None
        first_in_range: Optional[float] = None
        t_clip0 = start if start is not None else None

        scaler, rgb = VideoReformatter(), VideoReformatter()
        tscaler, trgb = VideoReformatter(), VideoReformatter()

        def convert(t: float, frame) -> None:
            nonlocal m, rot, size, tsize
            if size is None:
                m, rot = _orientation(frame, stream)
                cw, ch = frame.width, frame.height
                swap = _swaps_axes(m)
                uw, uh = (ch, cw) if swap else (cw, ch)
                ow, oh = _out_size(uw, uh, max_side)
                size = (oh, ow) if swap else (ow, oh)
                if thumb_side is not None:
                    tw, th = _thumb_size(uw, uh, thumb_side)
                    tsize = (th, tw) if swap else (tw, th)
            small = _to_small(frame, size, scaler, rgb)
            if lazy:
                kept.append(small)
            else:
                buf.append(_rgb_array(small, rgb))
            if tbuf is not None:
                # from the working picture when the thumbnail is a downscale of it
                src = small if (tsize[0] <= size[0] and tsize[1] <= size[1]) else frame
                tbuf.append(_to_rgb(src, tsize, tscaler, trgb))
            times.append(t)

        try:
            for frame in _decode_from(container, stream, start, native):
                t = _frame_time(frame, stream, prev_t, native)
                if prev_t is not None and t <= prev_t:  # non-monotonic / duplicate pts
                    continue
                prev_t = t
                if start is not None and t < start - _TIME_EPS:
                    continue
                if end is not None and t >= end - _TIME_EPS:
                    break
                last_in_range = t
                if first_in_range is None:
                    first_in_range = t
                done = sampler.offer(t, frame)
                if done is not None:
                    convert(done[1], done[2])
        except av.error.FFmpegError as e:
            at = f" after {last_in_range:.2f}s" if last_in_range is not None else ""
            raise InputError(path, f"corrupt video data{at} (FFmpeg: {_ffmpeg_reason(e)})") from None
        _check_truncated(path, stream, native, last_in_range, end)
        last = sampler.flush(None if last_in_range is None else last_in_range + 1.0 / native)
        if last is not None:
            convert(last[1], last[2])
        if not times:
            if start is not None or end is not None:
                length = f"{dur:.2f}s" if dur is not None else "unknown length"
                raise InputError(
                    path,
                    f"no frames decoded between start={start if start is not None else 0:g}s and "
                    f"end={f'{end:g}s' if end is not None else 'the end'} (video is {length})",
                )
            raise InputError(path, "no frames could be decoded")

        n_sampled = len(times)
        frames = buf.array() if not lazy else None  # (T, h, w, 3) coded orientation, no copy
        thumbs = tbuf.array() if tbuf is not None else None
        if max_frames is not None and n_sampled > max_frames:
            idx = _uniform_indices(n_sampled, max_frames)
            if lazy:
                kept = [kept[i] for i in idx]
            else:
                frames = frames[idx]
            thumbs = thumbs[idx] if thumbs is not None else None
            times = [times[i] for i in idx]
        if not lazy:
            frames = _apply_orientation(frames, m)
        if thumbs is not None:
            thumbs = _apply_orientation(thumbs, m)
        t_arr = np.asarray(times, dtype=np.float64)
        t0 = float(t_clip0) if t_clip0 is not None else float(first_in_range)
        t_arr = t_arr - t0
        cw, ch = stream.codec_context.width, stream.codec_context.height
        src_w, src_h = (ch, cw) if _swaps_axes(m) else (cw, ch)
        eff = _effective_fps(rate if capped else native, len(t_arr), n_sampled)
        total = int(stream.frames or 0) or (int(round(dur * native)) if dur else 0)
        # the whole file's frame count (the container's, else duration x rate; None when unknown): what a
        # keypoint file of this video must roughly have (clip.check_pose_agrees), whatever start/end cut
        meta = {"codec": stream.codec_context.name, "num_frames": total or None}
        if lazy:
            ow, oh = (size[1], size[0]) if _swaps_axes(m) else size  # upright
            return LazyFrames(kept, (len(kept), oh, ow, 3), m, times=t_arr, fps=float(eff), src_width=int(src_w),
                              src_height=int(src_h), scale=float(ow) / float(src_w), t0=t0, native_fps=native,
                              rotation=rot, source=str(path), meta=meta, thumbs=thumbs)
        return Frames(
            frames=frames,
            times=t_arr,
            fps=float(eff),
            src_width=int(src_w),
            src_height=int(src_h),
            scale=float(frames.shape[2]) / float(src_w),
            t0=t0,
            native_fps=native,
            rotation=rot,
            source=str(path),
            meta=meta,
            thumbs=thumbs,
        )
    finally:
        container.close()


# ------------------------------------------------------------ frame folders
def list_images(path) -> list[Path]:
    """Image files (.png/.jpg/.jpeg) directly in ``path``, naturally sorted."""
    path = Path(path)
    return sorted((p for p in path.iterdir() if p.is_file() and _is_image(p)), key=lambda p: natural_key(p.name))


def _load_image(p: Path, size: Optional[tuple[int, int]]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            if size is not None and im.format == "JPEG":
                im.draft("RGB", size)  # DCT-domain downscale (cheap) before resize
            im = im.convert("RGB")
            if size is not None and im.size != size:
                im = im.resize(size, Image.BILINEAR, reducing_gap=2.0)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(p, f"not a readable image ({type(e).__name__})") from None


def read_frame_folder(
    path,
    *,
    fps: float = 25.0,
    max_frames: Optional[int] = None,
    max_side: Optional[int] = None,
    target_fps: Optional[float] = None,
    max_fps: Optional[float] = None,
    start: Optional[float] = None,
    end: Optional[float] = None,
    thumb_side: Optional[int] = None,
) -> Frames:
    """Read a folder of PNG/JPG frames (natural order) as a clip.

    ``fps`` is the folder's frame rate (PHOENIX-2014T and CSL-Daily: 25);
    frame i is at time i / fps. Optional ``target_fps``/``max_fps`` resample
    by time and ``start``/``end`` cut a range, with the same policy as
    ``read_video``; ``max_frames`` subsamples uniformly over the whole clip.
    Only kept images are opened; JPEGs are downscaled in the decoder
    (``Image.draft``) when ``max_side`` asks for a smaller size.
    ``thumb_side``: as in ``read_video`` (thumbs resized from the kept frames).
    Returns ``Frames``; raises ``InputError`` for a missing or empty folder,
    an unreadable image, or images of different sizes.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    _check_args(target_fps, max_fps, max_frames, start, end)
    if not path.exists():
        raise InputError(path, "folder not found")
    if not path.is_dir():
        raise InputError(path, "not a folder of frames")
    images = list_images(path)
    if not images:
        raise InputError(path, "empty frame folder (no .png/.jpg/.jpeg images)")
    all_t = np.arange(len(images), dtype=np.float64) / fps
    idx = np.arange(len(images))
    if start is not None:
        idx = idx[all_t[idx] >= start - _TIME_EPS]
    if end is not None:
        idx = idx[all_t[idx] < end - _TIME_EPS]
    if idx.size == 0:
        raise InputError(path, f"no frames between start={start or 0:g}s and end={end}s ({len(images)} frames at {fps:g} fps)")
    rate = _target_rate(target_fps, max_fps, fps)
    if rate < fps:
        sampler = _SlotSampler(rate)
        sel = []
        for i in idx:
            done = sampler.offer(float(all_t[i]), int(i))
            if done is not None:
                sel.append(done[2])
        last = sampler.flush(float(all_t[idx[-1]]) + 1.0 / fps)
        if last is not None:
            sel.append(last[2])
        idx = np.asarray(sel, dtype=np.int64)
    n_sampled = idx.size
    if max_frames is not None and n_sampled > max_frames:
        idx = idx[_uniform_indices(n_sampled, max_frames)]

    try:
        with Image.open(images[idx[0]]) as im:
            src_w, src_h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(images[idx[0]], f"not a readable image ({type(e).__name__})") from None
    ow, oh = _out_size(src_w, src_h, max_side)
    size = None if (ow, oh) == (src_w, src_h) else (ow, oh)
    out = np.empty((idx.size, oh, ow, 3), dtype=np.uint8)
    thumbs = None
    if thumb_side is not None:
        tw, th = _thumb_size(src_w, src_h, thumb_side)
        thumbs = np.empty((idx.size, th, tw, 3), dtype=np.uint8)
    for k, i in enumerate(idx):
        arr = _load_image(images[i], size)
        if arr.shape != out.shape[1:]:
            raise InputError(images[i], f"image size {arr.shape[1]}x{arr.shape[0]} differs from the folder's first kept frame {src_w}x{src_h}")
        out[k] = arr
        if thumbs is not None:
            thumbs[k] = np.asarray(Image.fromarray(arr).resize((tw, th), Image.BILINEAR, reducing_gap=2.0))
    t = all_t[idx]
    t0 = float(start) if start is not None else 0.0
    return Frames(
        frames=out,
        times=t - t0,
        fps=_effective_fps(min(rate, fps), idx.size, n_sampled),
        src_width=int(src_w),
        src_height=int(src_h),
        scale=ow / src_w,
        t0=t0,
        native_fps=float(fps),
        rotation=0,
        source=str(path),
        meta={"num_images": len(images)},
        thumbs=thumbs,
    )


# ---------------------------------------------------------------- dispatch
def load_frames(path, *, folder_fps: float = 25.0, **options) -> Frames:
    """A frame folder -> ``read_frame_folder`` (its rate is ``folder_fps``,
    resampled to ``fps``/``max_fps`` like a video); anything else ->
    ``read_video``. ``options``: ``read_video``'s keyword arguments and
    defaults, the same policy for both (``threads`` only decodes files)."""
    p = Path(path)
    if not p.is_dir():
        return read_video(p, **options)
    import inspect

    bound = inspect.signature(read_video).bind(p, **options)  # same keywords, same defaults
    bound.apply_defaults()
    o = bound.arguments
    if o["lazy"]:
        raise ValueError("lazy=True decodes video files only, not frame folders")
    return read_frame_folder(p, fps=folder_fps, max_frames=o["max_frames"], max_side=o["max_side"],
                             target_fps=o["fps"], max_fps=o["max_fps"], start=o["start"], end=o["end"],
                             thumb_side=o["thumb_side"])


def find_inputs(folder) -> list[Path]:
    """Video files and frame folders under ``folder`` (recursive), sorted
    naturally by relative path. A frame folder is a folder that holds images
    and no subfolder holding images (so PHOENIX-2014T's ``<id>/1/`` layout
    yields the inner folder). Hidden files and folders are skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    found: list[Path] = []
    has_images: dict[Path, bool] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        d = Path(dirpath)
        imgs = False
        for name in filenames:
            if name.startswith("."):
                continue
            p = d / name
            if is_video_file(p):
                found.append(p)
            elif _is_image(p):
                imgs = True
        has_images[d] = imgs
    image_dirs = {d for d, v in has_images.items() if v}
    for d in image_dirs:
        if d == root:
            continue  # the root itself is the input, not one of many
        if not any(o != d and d in o.parents for o in image_dirs):
            found.append(d)
    if root in image_dirs and not any(o != root for o in image_dirs) and not any(is_video_file(p) for p in found):
        found.append(root)
    return sorted(found, key=lambda p: natural_key(str(p.relative_to(root))))
