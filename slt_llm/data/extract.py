"""Keypoint extraction: a pluggable backend interface and a ``.pose`` sidecar cache.

    slt-llm extract INPUT --extractor-model FILE [--extractor-backend mediapipe] [--out DIR] [--overwrite]

INPUT is a video file, a frame folder, or a folder of videos (every video file
in it, not recursive). Each video gets a ``<stem>.pose`` sidecar beside it (or
in ``--out``), in the MediaPipe Holistic layout written by
``slt_llm.data.pose.write_pose_holistic``; ``load_clip`` finds it there.
A sidecar newer than its video is reused, not re-extracted.

``BACKENDS`` names every extractor people use and what each needs; only MediaPipe runs inside
``slt-llm extract`` (when ``mediapipe`` is installed). rtmlib, MMPose, OpenPose, AlphaPose and
pose-format's own ``video_to_pose`` run outside it (none is installable here, or they are not pip
packages), and their output comes in through ``slt-llm import-pose`` (``data/import_pose.py``) or,
for ``video_to_pose``, is a ``.pose`` already; asking ``extract`` for one of them is one line
saying so. ``slt-llm extract --extractor-backend list`` prints the table with what is installed.

Backends implement ``KeypointExtractor.extract(video) -> Extraction`` (xy
(T,543,2) source pixels, conf (T,543), fps, width, height; Holistic point
order ``slt_llm.data.pose.HOLISTIC_POINTS``) and are registered with
``register_extractor(name, factory)``; ``make_extractor(name, **kw)`` builds
one. The built-in ``mediapipe`` backend runs MediaPipe's Tasks
HolisticLandmarker: it needs ``pip install mediapipe`` and a model file the
user downloads (``holistic_landmarker.task`` from Google's MediaPipe models
page, https://ai.google.dev/edge/mediapipe/solutions/vision/holistic_landmarker);
nothing is downloaded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from slt_llm.data.pose import NUM_HOLISTIC, read_pose, write_pose_holistic
from slt_llm.errors import ConfigError, InputError

__all__ = [
    "Extraction",
    "KeypointExtractor",
    "MediaPipeExtractor",
    "register_extractor",
    "make_extractor",
    "EXTRACTORS",
    "BACKENDS",
    "Backend",
    "backend_table",
    "sidecar_path",
    "ensure_pose",
    "video_inputs",
]

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass
class Extraction:
    """Keypoints of one video in MediaPipe Holistic layout.

    xy float32 (T, 543, 2) source pixels; conf float32 (T, 543), 0 = missing;
    fps of the keypoint track; width, height of the (upright) source video.
    """

    xy: np.ndarray
    conf: np.ndarray
    fps: float
    width: int
    height: int

    def __iter__(self):  # allows ``xy, conf, fps, w, h = extractor.extract(v)``
        return iter((self.xy, self.conf, self.fps, self.width, self.height))


class KeypointExtractor:
    """Interface: ``extract(video_path) -> Extraction``. ``name`` is written in logs."""

    name = "base"

    def extract(self, video_path) -> Extraction:  # pragma: no cover - interface
        raise NotImplementedError


EXTRACTORS: dict[str, Callable[..., KeypointExtractor]] = {}


@dataclass(frozen=True)
class Backend:
    """A keypoint extractor people use and what it takes here. ``package``: the import that says
    it is installed; ``runs_here``: ``slt-llm extract`` runs it itself (a registered factory);
    otherwise ``needs`` says how to run it and bring its output in (``slt-llm import-pose``)."""

    name: str
    needs: str
    package: str = ""
    runs_here: bool = False


# every backend slt-llm knows of; `slt-llm extract --extractor-backend list` prints this table
BACKENDS: dict[str, Backend] = {b.name: b for b in [
    Backend("mediapipe", "pip install mediapipe, and a holistic_landmarker.task model file you download "
                         "(https://ai.google.dev/edge/mediapipe/solutions/vision/holistic_landmarker), given as "
                         "--extractor-model; writes MediaPipe Holistic .pose sidecars", "mediapipe", True),
    Backend("pose-format", "pose-format's own video_to_pose (MediaPipe's legacy Holistic, bundled models): "
                           "pip install 'mediapipe<0.10.30' simple-video-utils, then run it yourself: "
                           "video_to_pose -i clip.mp4 --format mediapipe -o clip.mp4.pose", "mediapipe"),
    Backend("rtmlib", "rtmlib (pip install rtmlib onnxruntime; COCO-WholeBody-133 with RTMPose) is not run by "
                      "slt-llm: run its Wholebody model yourself, save keypoints + scores (.npy/.npz/.pkl), then "
                      "slt-llm import-pose FILE --video clip.mp4 --out clip.mp4.pose", "rtmlib"),
    Backend("mmpose", "MMPose (mmpose, mmcv, mmdet: OpenMMLab installs) is not run by slt-llm: run its wholebody "
                      "inferencer yourself (or pose-format's pose_format.utils.mmposewholebody."
                      "estimate_mmpose_wholebody with the video's fps/width/height: a .pose slt-llm reads as is), "
                      "save arrays or its JSON, then slt-llm import-pose FILE --video clip.mp4 --out clip.mp4.pose",
            "mmpose"),
    Backend("openpose", "OpenPose (a compiled binary, not a pip package): run it yourself with --write_json DIR "
                        "(BODY_25 + hands + face), then slt-llm import-pose DIR --layout openpose --video clip.mp4 "
                        "--out clip.mp4.pose"),
    Backend("alphapose", "AlphaPose (halpe/COCO-WholeBody-133 models; a source install) is not run by slt-llm: run "
                         "it yourself (its alphapose-results.json), then slt-llm import-pose "
                         "alphapose-results.json --video clip.mp4 --out clip.mp4.pose", "alphapose"),
]}


def _installed(package: str) -> bool:
    import importlib.util

    return bool(package) and importlib.util.find_spec(package) is not None


def backend_table() -> list[tuple[str, str, str]]:
    """(name, status, what it needs) of every known and registered backend; status is ``runs here``
    (registered and its package installed), ``not installed`` (registered, package missing) or
    ``run it yourself`` (slt-llm does not run it; its package installed or not)."""
    rows = []
    for name in sorted(set(BACKENDS) | set(EXTRACTORS)):
        b = BACKENDS.get(name, Backend(name, "registered with register_extractor", runs_here=True))
        if name in EXTRACTORS and b.runs_here:
            status = "runs here" if (not b.package or _installed(b.package)) else "not installed"
        else:
            status = "run it yourself" + (" (installed)" if _installed(b.package) else "")
        rows.append((name, status, b.needs))
    return rows


def register_extractor(name: str, factory: Callable[..., KeypointExtractor]) -> None:
    """Register a backend factory: ``factory(model=..., **kw) -> KeypointExtractor``."""
    EXTRACTORS[name] = factory


def make_extractor(name: str, **kw) -> KeypointExtractor:
    """Build a registered backend. A backend slt-llm knows but does not run (rtmlib, MMPose,
    OpenPose, AlphaPose, pose-format's video_to_pose) and an unknown name are one ConfigError
    line each, saying what to do instead."""
    if name not in EXTRACTORS:
        if name in BACKENDS:
            raise ConfigError(f"keypoint extractor {name!r}: {BACKENDS[name].needs}")
        raise ConfigError(f"unknown keypoint extractor {name!r} (known: {', '.join(sorted(set(BACKENDS) | set(EXTRACTORS)))}"
                          f"; `slt-llm extract --extractor-backend list` says what each needs)")
    return EXTRACTORS[name](**kw)


# ---------------------------------------------------------------- mediapipe
class MediaPipeExtractor(KeypointExtractor):
    """MediaPipe Tasks HolisticLandmarker in VIDEO mode, one person.

    ``model``: path to ``holistic_landmarker.task``. Frames are decoded at
    the native rate and full size (PyAV); each goes through the landmarker
    once (CPU cost ~ tens of ms per frame). Normalised landmarks are scaled to
    source pixels; pose points take MediaPipe's visibility as confidence,
    face/hand points confidence 1 when the part is detected, else 0 (missing).
    MediaPipe's left/right hands are the signer's, as in Holistic files.
    """

    name = "mediapipe"

    def __init__(self, model=None, **kw):
        if model is None:
            raise ConfigError(
                "the mediapipe extractor needs --extractor-model PATH to a MediaPipe holistic_landmarker.task file "
                "(download it from https://ai.google.dev/edge/mediapipe/solutions/vision/holistic_landmarker)")
        if not Path(model).is_file():
            raise InputError(model, "MediaPipe model file not found (download holistic_landmarker.task from "
                                    "https://ai.google.dev/edge/mediapipe/solutions/vision/holistic_landmarker)")
        try:
            import mediapipe  # noqa: F401
            from mediapipe.tasks.python import vision  # noqa: F401
        except ImportError:
            raise ConfigError("keypoint extraction with MediaPipe needs the mediapipe package: "
                              "pip install mediapipe") from None
        self.model = str(model)
        self.options = kw

    def extract(self, video_path) -> Extraction:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        from slt_llm.data.video import load_frames

        fr = load_frames(video_path, fps=None, max_fps=None)
        W, H = int(fr.src_width), int(fr.src_height)
        T = fr.frames.shape[0]
        xy = np.zeros((T, NUM_HOLISTIC, 2), np.float32)
        conf = np.zeros((T, NUM_HOLISTIC), np.float32)
        opts = vision.HolisticLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=self.model), running_mode=vision.RunningMode.VIDEO)
        parts = (("pose_landmarks", 0, 33), ("face_landmarks", 33, 468),
                 ("left_hand_landmarks", 501, 21), ("right_hand_landmarks", 522, 21))
        fw, fh = fr.frames.shape[2], fr.frames.shape[1]
        with vision.HolisticLandmarker.create_from_options(opts) as lm:
            for t in range(T):
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(fr.frames[t]))
                res = lm.detect_for_video(image, int(round(fr.times[t] * 1000)))
                for attr, off, n in parts:
                    pts = getattr(res, attr, None) or []
                    if pts and isinstance(pts[0], (list, tuple)):
                        pts = pts[0]
                    for i, p in enumerate(pts[:n]):
                        xy[t, off + i] = (p.x * fw / fr.scale, p.y * fh / fr.scale)
                        vis = getattr(p, "visibility", None)
                        conf[t, off + i] = float(vis) if (attr == "pose_landmarks" and vis is not None) else 1.0
        return Extraction(xy=xy, conf=np.clip(conf, 0, 1), fps=float(fr.fps), width=W, height=H)


register_extractor("mediapipe", MediaPipeExtractor)


# -------------------------------------------------------------------- cache
def sidecar_path(video, out_dir=None) -> Path:
    """``<stem>.pose`` beside the video (or frame folder), or in ``out_dir``; ``<file name>.pose``
    (``x.mp4.pose``) when another video beside it shares the stem (``x.mov``), as
    ``slt_llm.data.clip.find_pose`` looks them up."""
    from slt_llm.data.clip import same_stem_inputs

    v = Path(video)
    name = v.name if v.is_dir() or same_stem_inputs(v) else v.stem
    return (Path(out_dir) if out_dir is not None else v.parent) / f"{name}.pose"


def _newest_mtime(video: Path) -> float:
    if video.is_dir():
        return max([video.stat().st_mtime] + [p.stat().st_mtime for p in video.iterdir()])
    return video.stat().st_mtime


def ensure_pose(video, extractor: KeypointExtractor, cache=True, *, out_dir=None) -> Path:
    """Path of the video's keypoint sidecar, extracting it first if needed.

    With ``cache`` true an existing sidecar that reads back (``read_pose``)
    and is not older than the video is reused; otherwise the extractor runs
    and its result is written with ``write_pose_holistic`` (atomically).
    Raises ``InputError`` for a missing video or an extraction of the wrong
    shape.
    """
    video = Path(video)
    if not video.exists():
        raise InputError(video, "video not found")
    out = sidecar_path(video, out_dir)
    if cache and out.is_file() and out.stat().st_mtime >= _newest_mtime(video):
        try:
            read_pose(out)
            return out
        except InputError:
            pass  # unreadable cache: extract again
    res = extractor.extract(video)
    xy, conf, fps, width, height = res
    xy, conf = np.asarray(xy, np.float32), np.asarray(conf, np.float32)
    if xy.ndim != 3 or xy.shape[1:] != (NUM_HOLISTIC, 2) or conf.shape != xy.shape[:2]:
        raise InputError(video, f"extractor {getattr(extractor, 'name', '?')} returned xy {xy.shape}, "
                                f"conf {conf.shape}; expected (T, {NUM_HOLISTIC}, 2) and (T, {NUM_HOLISTIC})")
    if xy.shape[0] == 0:
        raise InputError(video, "no frames to extract keypoints from")
    return write_pose_holistic(out, xy, conf, fps, width, height)


def video_inputs(path: Path) -> list[Path]:
    """The videos of ``path``: a folder -> its video files (not recursive; none: the folder itself,
    a frame folder); a file -> itself."""
    if path.is_dir():
        vids = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        return vids or [path]  # no video files: the folder is a frame folder
    return [path]
