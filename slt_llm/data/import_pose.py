"""Keypoints from other extractors -> a normal ``.pose`` file (``slt-llm import-pose``).

    slt-llm import-pose FILE --out X.pose [--layout coco-wholebody|openpose]
                         [--width W --height H --fps F] [--video VIDEO]

What comes in (``FILE``):

* ``.npy``: an array (T, 133, 3) (x, y, score), or (T, P, 133, 3) with a person
  axis; (T, 133, 2) without scores (every point present gets confidence 1).
* ``.npz`` / ``.pkl``: a dict of arrays as rtmlib, MMPose and Uni-Sign users save
  them, e.g. ``{"keypoints": (T, [P,] 133, 2), "scores": (T, [P,] 133)}``, or lists
  of per-frame arrays (a different number of people per frame is fine); other key
  names read: see ``XY_KEYS`` / ``SCORE_KEYS``; ``w``/``h``/``width``/``height``/``fps``
  are read when present. A list of per-frame dicts (``{"keypoints", "scores"}``
  or MMPose's ``{"instances": [{"keypoints", "keypoint_scores"}, ...]}``) too.
  A ``.pkl`` is read with a restricted unpickler (``_ArrayUnpickler``): numpy
  arrays and plain containers only; anything else is refused before it is built,
  so nothing in the file runs. ``.npy``/``.npz`` object arrays go through the same
  unpickler; plain arrays are read with ``allow_pickle=False``.
* ``.json``: AlphaPose whole-body-133 results (``[{"image_id", "keypoints": [x, y,
  c] * 133, "score"}, ...]``, or ``{"frames": [...], "metadata": {...}}``) and
  MMPose's inferencer predictions (``[{"frame_id", "instances": [...]}, ...]``).
* a folder of OpenPose ``*_keypoints.json`` files (BODY_25 + face + hands, 137
  points; ``--layout openpose``).

What goes out: a ``.pose`` file whose header is pose-format's own component
definitions: ``pose_format.utils.cocowholebody133_header.cocowholebody_components()``
(BODY 23, FACE 68, LEFT_HAND 21, RIGHT_HAND 21) for COCO-WholeBody-133 and
``pose_format.utils.openpose.OpenPose_Components`` for OpenPose-137; one person
(XYC), points without a score (score <= 0, NaN) masked. ``slt_llm.data.pose.read_pose``
reads it like the MediaPipe files (layouts ``coco_wholebody_133`` / ``openpose_137``);
the file is read back before it is put in place.

People: with several people in a frame the one with the highest mean keypoint
score is kept, frame by frame (the report counts those frames); a frame without
anyone is all missing. Coordinates: pixels of the frame the extractor saw; arrays
normalised to [0, 1] (all present points within [-0.5, 1.5], as Uni-Sign's
``keypoints / (w, h)``) are scaled by the frame size. Frame size and rate: the
arguments, else what the file records, else the ``video``'s (``probe_video``);
unknown is an error (never a guessed default). With ``video`` the frame count and
rate are checked against it (``clip.check_pose_agrees``) before anything is written.

Cost: O(T * P * N) numpy work plus pose-format's write and one read back.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from slt_llm.errors import InputError

__all__ = ["ImportReport", "import_pose", "load_keypoint_arrays", "LAYOUTS", "XY_KEYS", "SCORE_KEYS",
           "restricted_pickle_load"]

# --layout name -> (points per person, reader layout name of slt_llm.data.pose)
LAYOUTS = {"coco-wholebody": (133, "coco_wholebody_133"), "openpose": (137, "openpose_137")}
XY_KEYS = ("keypoints", "kpts", "keypoints_2d", "keypoint", "pose", "poses", "landmarks", "joints")
SCORE_KEYS = ("scores", "keypoint_scores", "keypoints_scores", "score", "confidence", "confidences", "conf")
_WIDTH_KEYS = ("width", "w", "img_w", "image_width", "frame_width")
_HEIGHT_KEYS = ("height", "h", "img_h", "image_height", "frame_height")
_FPS_KEYS = ("fps", "frame_rate", "framerate")
_NORMALISED_MAX = 1.5  # every present coordinate within [-0.5, 1.5]: normalised to the frame
_OUTSIDE_SHARE = 0.5  # more present points than this off the frame (25% margin): wrong frame size
_POINT_HINTS = {
    17: "COCO-17 body keypoints have no hands",
    26: "Halpe-26 body keypoints have no hands",
    134: "rtmlib's to_openpose=True layout (133 + neck); extract with to_openpose=False",
    136: "Halpe-136 (AlphaPose 136): not COCO-WholeBody-133",
    135: "OpenPose-135: not OpenPose-137 (BODY_25 + face 70 + hands)",
}


@dataclass
class ImportReport:
    """What ``import_pose`` wrote and what it decided on the way (``notes``: one line each)."""

    out: Path
    source_format: str  # "npy" | "npz" | "pkl" | "alphapose-json" | "mmpose-json" | "openpose-folder"
    layout: str  # a key of LAYOUTS
    frames: int
    fps: float
    width: int
    height: int
    multi_person_frames: int = 0  # frames with several people (the highest mean score kept)
    empty_frames: int = 0  # frames without a person (all points missing)
    normalised: bool = False  # coordinates were in [0, 1] and were scaled by width x height
    left_hand_frames: int = 0  # frames in which the reader sees the left / right hand
    right_hand_frames: int = 0
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------ restricted unpickling
def _numpy_core(sub: str):
    import importlib

    try:  # numpy >= 2 pickles name numpy._core; numpy 1.x ones name numpy.core
        return importlib.import_module(f"numpy._core.{sub}")
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module(f"numpy.core.{sub}")


_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str",
             "bytes", "bytearray", "slice", "range"}


def _allowed(module: str, name: str):
    """The object a pickle may name, or None: numpy array / dtype / scalar reconstruction,
    ``_codecs.encode`` (protocol-2 bytes), plain builtins containers and scalars."""
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        return getattr(_numpy_core("multiarray"), name)
    if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
        return getattr(_numpy_core("numeric"), name)
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module == "numpy.dtypes" and name.endswith("DType") and name.isidentifier():
        import numpy.dtypes as dtypes

        obj = getattr(dtypes, name, None)
        return obj if isinstance(obj, type) and issubclass(obj, np.dtype) else None
    if module == "_codecs" and name == "encode":
        import codecs

        return codecs.encode
    if module == "builtins" and name in _BUILTINS:
        import builtins

        return getattr(builtins, name)
    if module == "collections" and name == "OrderedDict":
        from collections import OrderedDict

        return OrderedDict
    return None


class _Refused(pickle.UnpicklingError):
    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class _ArrayUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that builds numpy arrays and plain containers only: ``find_class``
    refuses every other global (functions, classes, ``os.system`` ...) before it is called."""

    def find_class(self, module, name):
        obj = _allowed(module, name)
        if obj is None:
            raise _Refused(f"{module}.{name}")
        return obj

    def persistent_load(self, pid):
        raise _Refused(f"persistent id {pid!r}")


def restricted_pickle_load(fh, where) -> Any:
    """Unpickle ``fh`` with ``_ArrayUnpickler``; a refused or broken pickle is one
    ``InputError`` naming ``where`` (and the refused class)."""
    try:
        return _ArrayUnpickler(fh).load()
    except _Refused as e:
        raise InputError(where, f"refused to unpickle {e.what}: only numpy arrays and plain containers "
                                "(dict, list, tuple, numbers, strings) are read from a pickle; nothing in it "
                                "was run") from None
    except Exception as e:  # truncated / not a pickle / bad array state
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise InputError(where, f"not a readable pickle ({type(e).__name__}: {first[:120]})") from None


def _read_npy(fh, where) -> np.ndarray:
    """One ``.npy`` stream: plain arrays with ``allow_pickle=False``; object arrays (lists of
    ragged per-frame arrays saved with ``np.save``) through ``restricted_pickle_load``."""
    from numpy.lib import format as npf

    try:
        version = npf.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npf.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = npf.read_array_header_2_0(fh)
        else:
            shape, fortran, dtype = npf._read_array_header(fh, version)
    except Exception as e:
        raise InputError(where, f"not a readable .npy array ({type(e).__name__}: {str(e)[:120]})") from None
    if dtype.hasobject:
        arr = restricted_pickle_load(fh, where)
        return np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
    count = int(np.prod(shape)) if shape else 1
    data = fh.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise InputError(where, f"truncated .npy array ({len(data)} of {count * dtype.itemsize} bytes)")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


# ----------------------------------------------------------------------- reading
def _first(d: dict, keys) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None


def _meta_of(d: dict) -> dict:
    """Frame size / rate a dict records (numbers only)."""
    out = {}
    for name, keys in (("width", _WIDTH_KEYS), ("height", _HEIGHT_KEYS), ("fps", _FPS_KEYS)):
        v = _first(d, keys)
        try:
            v = float(np.asarray(v).reshape(-1)[0]) if v is not None else None
        except (TypeError, ValueError, IndexError):
            v = None
        if v is not None and np.isfinite(v) and v > 0:
            out[name] = v
    return out


def _people(xy, conf, where) -> tuple[np.ndarray, np.ndarray, bool]:
    """One frame -> (xy (P,N,2), conf (P,N), had_scores). ``xy`` (N,C) or (P,N,C), C 2 or 3
    (a third channel is the score when ``conf`` is None); ``conf`` (N,) or (P,N)."""
    a = np.asarray(xy, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] not in (2, 3):
        raise InputError(where, f"a frame's keypoints have shape {tuple(np.shape(xy))}; expected (N, 2), "
                                "(N, 3) or (people, N, 2|3)")
    if conf is None:
        if a.shape[-1] == 3:
            return a[..., :2], a[..., 2], True
        return a, np.where(np.isfinite(a).all(-1) & (a != 0).any(-1), 1.0, 0.0), False
    c = np.asarray(conf, dtype=np.float64)
    if c.ndim == 3 and c.shape[-1] == 1:
        c = c[..., 0]
    if c.ndim == 1:
        c = c[None]
    if c.shape != a.shape[:2]:
        raise InputError(where, f"scores of shape {tuple(np.shape(conf))} do not match keypoints of shape "
                                f"{tuple(np.shape(xy))}")
    return a[..., :2], c, True


def _frames_from_arrays(xy, conf, where) -> tuple[list, bool]:
    """Whole-video arrays or per-frame sequences -> list of (xy (P,N,2), conf (P,N))."""
    if isinstance(xy, np.ndarray) and xy.dtype != object:
        if xy.ndim not in (3, 4):
            raise InputError(where, f"keypoints of shape {xy.shape}; expected (T, N, 2|3) or (T, people, N, 2|3)")
        if conf is not None:
            conf = np.asarray(conf, dtype=np.float64) if not (isinstance(conf, np.ndarray) and conf.dtype == object) \
                else conf
            if len(conf) != len(xy):
                raise InputError(where, f"{len(xy)} frames of keypoints but {len(conf)} of scores")
    elif conf is not None and len(conf) != len(xy):
        raise InputError(where, f"{len(xy)} frames of keypoints but {len(conf)} of scores")
    frames, scored = [], True
    for t in range(len(xy)):
        fxy, fc, s = _people(xy[t], None if conf is None else conf[t], where)
        frames.append((fxy, fc))
        scored &= s
    return frames, scored


def _frame_entry(entry, where) -> tuple[np.ndarray, np.ndarray, bool]:
    """A per-frame item of a list: dict (keypoints + scores, or ``instances``), list of person
    dicts, or an array."""
    if isinstance(entry, dict):
        inst = _first(entry, ("instances", "predictions", "people", "persons"))
        if inst is not None:
            return _frame_entry(list(inst), where)
        xy = _first(entry, XY_KEYS)
        if xy is None:
            raise InputError(where, f"a frame dict without keypoints (keys: {', '.join(map(str, entry))[:120]}; "
                                    f"expected one of {', '.join(XY_KEYS)})")
        return _people(xy, _first(entry, SCORE_KEYS), where)
    if isinstance(entry, (list, tuple)) and (not entry or isinstance(entry[0], dict)):
        if not entry:
            return np.zeros((0, 0, 2)), np.zeros((0, 0)), True
        parts = [_frame_entry(p, where) for p in entry]
        n = {p[0].shape[1] for p in parts}
        if len(n) > 1:
            raise InputError(where, f"people with different point counts in one frame: {sorted(n)}")
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                all(p[2] for p in parts))
    return _people(entry, None, where)


def _frames_from_object(obj, where) -> tuple[list, bool, dict]:
    """A loaded array / dict / list -> (frames, had_scores, recorded meta)."""
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        frames, scored = _frames_from_arrays(obj, None, where)
        return frames, scored, {}
    if isinstance(obj, dict):
        meta = _meta_of(obj)
        xy = _first(obj, XY_KEYS)
        if xy is None:
            frames_list = _first(obj, ("frames", "predictions", "instance_info"))
            if frames_list is not None:
                frames, scored, inner = _frames_from_object(list(frames_list), where)
                return frames, scored, {**inner, **meta}
            raise InputError(where, f"no keypoint array (keys: {', '.join(map(str, obj))[:160]}; expected one of "
                                    f"{', '.join(XY_KEYS)}, with scores under one of {', '.join(SCORE_KEYS)})")
        frames, scored = _frames_from_arrays(xy if isinstance(xy, np.ndarray) else list(xy),
                                             _first(obj, SCORE_KEYS), where)
        return frames, scored, meta
    if isinstance(obj, (list, tuple)) or (isinstance(obj, np.ndarray) and obj.dtype == object):
        items = list(obj)
        if items and all(isinstance(i, dict) for i in items):
            frames, scored = [], True
            for i in items:
                fxy, fc, s = _frame_entry(i, where)
                frames.append((fxy, fc))
                scored &= s
            return frames, scored, {}
        frames, scored = _frames_from_arrays(items, None, where)
        return frames, scored, {}
    raise InputError(where, f"cannot read keypoints from a {type(obj).__name__}")


def _alphapose_frames(raw, where) -> tuple[list, dict]:
    """AlphaPose results (one item per detected person) -> frames grouped by ``image_id``."""
    from pose_format.utils.alphapose import parse_keypoints_and_confidence

    meta = {}
    items = raw
    if isinstance(raw, dict):
        items = raw.get("frames", [])
        meta = {k: v for k, v in (raw.get("metadata") or {}).items() if v is not None}
        meta = _meta_of(meta)
    groups: dict[str, list] = {}
    for it in items:
        try:
            xy, conf, n = parse_keypoints_and_confidence(it["keypoints"])
        except ValueError as e:
            raise InputError(where, f"AlphaPose item {it.get('image_id')!r}: {e}") from None
        if n != 133:
            raise InputError(where, f"AlphaPose {n}-keypoint results (Halpe); only the 133-point "
                                    "COCO-WholeBody model is COCO-WholeBody-133")
        groups.setdefault(str(it.get("image_id", "")), []).append((xy, conf))
    ids = list(groups)
    nums = [re.findall(r"\d+", i) for i in ids]
    if ids and all(nums):  # frame numbers from the image names: a frame nobody was found in stays empty
        idx = [int(m[-1]) for m in nums]
        base = min(idx)
        T = max(idx) - base + 1
        frames = [(np.zeros((0, 133, 2)), np.zeros((0, 133))) for _ in range(T)]
        for i, k in zip(ids, idx):
            frames[k - base] = _stack(groups[i])
    else:
        frames = [_stack(groups[i]) for i in ids]
    return frames, meta


def _stack(people) -> tuple[np.ndarray, np.ndarray]:
    return (np.stack([np.asarray(p[0], np.float64) for p in people]),
            np.stack([np.asarray(p[1], np.float64) for p in people]))


def _openpose_frames(folder: Path) -> tuple[list, int]:
    """A folder of OpenPose ``*_keypoints.json`` -> frames of (P,137,2), (P,137); numbered
    by pose-format's frame pattern, a missing number is an empty frame."""
    from pose_format.utils.openpose import OPENPOSE_FRAME_PATTERN, OpenPose_Components, get_frame_id

    files = sorted(p for p in folder.iterdir() if p.name.endswith("_keypoints.json"))
    if not files:
        raise InputError(folder, "no OpenPose *_keypoints.json files in this folder")
    sizes = [len(c.points) for c in OpenPose_Components]  # 25, 70, 21, 21
    by_id = {}
    for f in files:
        try:
            fid = get_frame_id(f.name, pattern=OPENPOSE_FRAME_PATTERN)
            people = json.loads(f.read_text()).get("people", [])
        except (ValueError, IndexError, OSError, AttributeError) as e:
            raise InputError(f, f"not an OpenPose frame file ({type(e).__name__}: {str(e)[:100]})") from None
        xy = np.zeros((len(people), sum(sizes), 2))
        conf = np.zeros((len(people), sum(sizes)))
        for p, person in enumerate(people):
            off = 0
            for comp, n in zip(OpenPose_Components, sizes):
                vals = np.asarray(person.get(comp.name) or [], np.float64)
                if vals.size and vals.size != 3 * n:
                    hint = " (COCO-18 body: only BODY_25 is read)" if comp.name == "pose_keypoints_2d" else ""
                    raise InputError(f, f"{comp.name} has {vals.size // 3} points, expected {n}{hint}")
                if vals.size:
                    xy[p, off:off + n] = vals.reshape(n, 3)[:, :2]
                    conf[p, off:off + n] = vals.reshape(n, 3)[:, 2]
                off += n
        by_id[fid] = (xy, conf)
    T = max(by_id) + 1
    empty = (np.zeros((0, sum(sizes), 2)), np.zeros((0, sum(sizes))))
    return [by_id.get(t, empty) for t in range(T)], len(files)


def load_keypoint_arrays(src) -> tuple[list, bool, dict, str]:
    """Read ``src`` -> (frames: list of (xy (P,N,2), conf (P,N)) float64, had_scores,
    recorded meta {width, height, fps}, source format). Raises ``InputError`` naming ``src``."""
    src = Path(src)
    if src.is_dir():
        frames, _ = _openpose_frames(src)
        return frames, True, {}, "openpose-folder"
    if not src.is_file():
        raise InputError(src, "keypoint file not found")
    suffix = src.suffix.lower()
    if suffix == ".npy":
        with open(src, "rb") as fh:
            obj = _read_npy(fh, src)
        frames, scored, meta = _frames_from_object(obj, src)
        return frames, scored, meta, "npy"
    if suffix == ".npz":
        try:
            zf = zipfile.ZipFile(src)
        except (zipfile.BadZipFile, OSError) as e:
            raise InputError(src, f"not a readable .npz archive ({e})") from None
        with zf:
            obj = {}
            for name in zf.namelist():
                if name.endswith(".npy"):
                    with zf.open(name) as fh:
                        arr = _read_npy(io.BytesIO(fh.read()), f"{src}[{name[:-4]}]")
                    obj[name[:-4]] = arr[()] if arr.ndim == 0 and arr.dtype == object else arr
        if len(obj) == 1 and _first(obj, XY_KEYS) is None:  # np.savez(f, arr): one unnamed array
            obj = next(iter(obj.values()))
        frames, scored, meta = _frames_from_object(obj, src)
        return frames, scored, meta, "npz"
    if suffix in (".pkl", ".pickle"):
        with open(src, "rb") as fh:
            obj = restricted_pickle_load(fh, src)
        frames, scored, meta = _frames_from_object(obj, src)
        return frames, scored, meta, "pkl"
    if suffix == ".json":
        try:
            raw = json.loads(src.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(src, f"not readable JSON ({str(e)[:120]})") from None
        items = raw.get("frames", []) if isinstance(raw, dict) else raw
        if isinstance(items, list) and items and isinstance(items[0], dict) and "image_id" in items[0]:
            frames, meta = _alphapose_frames(raw, src)
            return frames, True, meta, "alphapose-json"
        frames, scored, meta = _frames_from_object(raw, src)
        return frames, scored, meta, "mmpose-json"
    raise InputError(src, f"unknown keypoint file type {suffix or '(none)'}: expected .npy, .npz, .pkl, "
                          ".json or a folder of OpenPose *_keypoints.json files")


# ----------------------------------------------------------------------- import
def _one_person(frames: list, n_points: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per frame the person with the highest mean score -> xy (T,N,2), conf (T,N),
    frames with several people, frames with nobody."""
    T = len(frames)
    xy = np.zeros((T, n_points, 2))
    conf = np.zeros((T, n_points))
    multi = empty = 0
    for t, (fxy, fc) in enumerate(frames):
        if fxy.shape[0] == 0:
            empty += 1
            continue
        if fxy.shape[0] > 1:
            multi += 1
            k = int(np.argmax(np.nan_to_num(fc, nan=0.0).mean(axis=1)))
        else:
            k = 0
        xy[t], conf[t] = fxy[k], fc[k]
    return xy, conf, multi, empty


def _points_hint(n: int, layout: Optional[str]) -> str:
    want = " or ".join(f"{LAYOUTS[k][0]} ({k})" for k in ([layout] if layout else LAYOUTS))
    hint = f"; {_POINT_HINTS[n]}" if n in _POINT_HINTS else ""
    return f"{n} points per person, expected {want}{hint}"


def import_pose(src, out, *, layout: Optional[str] = None, width: Optional[int] = None,
                height: Optional[int] = None, fps: Optional[float] = None, video=None) -> ImportReport:
    """Convert the keypoints in ``src`` (see the module docstring) to the ``.pose`` file ``out``.

    ``layout`` ("coco-wholebody" | "openpose"; None: from the point count) must match the
    file's point count. ``width``/``height`` (pixels) and ``fps`` override what the file
    records; ``video`` fills what is still unknown (``probe_video``) and is checked against
    the result (frame count and rate, ``check_pose_agrees``). Writes atomically and only
    after the written file has been read back by ``read_pose``. Raises ``InputError``.
    """
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

    from slt_llm.data.clip import check_pose_agrees
    from slt_llm.data.layout import LEFT_HAND, RIGHT_HAND
    from slt_llm.data.pose import read_pose
    from slt_llm.data.video import probe_video

    if layout is not None and layout not in LAYOUTS:
        raise InputError(src, f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    frames, scored, meta, fmt = load_keypoint_arrays(src)
    if fmt == "openpose-folder" and layout not in (None, "openpose"):
        raise InputError(src, f"a folder of OpenPose JSON files is the openpose layout, not {layout}")
    counts = {f[0].shape[1] for f in frames if f[0].shape[0]}
    if not frames or not counts:
        raise InputError(src, f"no keypoints in the file ({len(frames)} frames, nobody detected)")
    if len(counts) > 1:
        raise InputError(src, f"frames with different point counts: {sorted(counts)}")
    n = counts.pop()
    if layout is None:
        layout = next((k for k, (pts, _) in LAYOUTS.items() if pts == n), None)
        if layout is None:
            raise InputError(src, _points_hint(n, None))
    elif LAYOUTS[layout][0] != n:
        raise InputError(src, _points_hint(n, layout))

    notes = []
    vinfo = probe_video(video) if video is not None else None
    sources = {"width": width, "height": height, "fps": fps}
    for k in sources:
        if sources[k] is None and k in meta:
            sources[k] = meta[k]
            notes.append(f"{k} {meta[k]:g} from the file")
        elif sources[k] is not None and k in meta and abs(float(sources[k]) - meta[k]) > 1e-6 * meta[k]:
            notes.append(f"{k} {float(sources[k]):g} given; the file says {meta[k]:g}")
        if sources[k] is None and vinfo is not None:
            sources[k] = getattr(vinfo, k)
    if sources["width"] is None or sources["height"] is None:
        raise InputError(src, "frame size unknown (the file does not record it): give the width and height "
                              "in pixels of the video the keypoints were extracted from (--width W --height H, "
                              "or --video VIDEO)")
    if sources["fps"] is None:
        raise InputError(src, "frame rate unknown (the file does not record it): give the video's frame rate "
                              "(--fps F, or --video VIDEO)")
    W, H, rate = int(round(float(sources["width"]))), int(round(float(sources["height"]))), float(sources["fps"])
    if W <= 0 or H <= 0 or not np.isfinite(rate) or rate <= 0:
        raise InputError(src, f"invalid frame size {W}x{H} or rate {rate}")

    xy, conf, multi, empty = _one_person(frames, n)  # (T,N,2), (T,N)
    T = xy.shape[0]
    bad = ~np.isfinite(xy).all(-1) | ~np.isfinite(conf) | (conf <= 0)
    present = ~bad
    normalised = False
    if present.any() and np.abs(np.where(present[..., None], xy - 0.5, 0.0)).max() <= _NORMALISED_MAX - 0.5:
        normalised = True
        xy = xy * np.array([W, H], np.float64)
        notes.append(f"coordinates were normalised to [0, 1]: scaled by {W}x{H}")
    if present.any():
        p = xy[present]
        off = (p[:, 0] < -0.25 * W) | (p[:, 0] > 1.25 * W) | (p[:, 1] < -0.25 * H) | (p[:, 1] > 1.25 * H)
        if off.mean() > _OUTSIDE_SHARE:
            raise InputError(src, f"{off.mean():.0%} of the keypoints lie outside a {W}x{H} frame (x up to "
                                  f"{p[:, 0].max():.0f}, y up to {p[:, 1].max():.0f}): the frame size is not the "
                                  "one the keypoints were extracted at")
    if not scored:
        notes.append("no scores in the file: every point present gets confidence 1")
    if multi:
        notes.append(f"several people in {multi} of {T} frames: kept the one with the highest mean keypoint "
                     "score in each frame")
    if empty:
        notes.append(f"nobody in {empty} of {T} frames: all points missing there")
    if float(conf[present].max(initial=0.0)) > 1.0:
        notes.append(f"scores above 1 (max {conf[present].max():.2f}) are kept in the file; the reader "
                     "clips confidences to [0, 1]")

    if layout == "coco-wholebody":
        from pose_format.utils.cocowholebody133_header import cocowholebody_components

        components = cocowholebody_components()
    else:
        from pose_format.utils.openpose import OpenPose_Components

        components = OpenPose_Components
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=W, height=H, depth=0),
                        components=components)
    data = np.where(bad[..., None], 0.0, xy).astype(np.float32)[:, None]  # (T,1,N,2)
    c = np.where(bad, 0.0, conf).astype(np.float32)[:, None]  # (T,1,N)
    mask = np.broadcast_to(bad[:, None, :, None], data.shape)
    pose = Pose(header, NumPyPoseBody(fps=rate, data=np.ma.masked_array(data, mask=mask), confidence=c))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            pose.write(fh)
        kp = read_pose(tmp)  # the project reads it as it reads its own files
        if vinfo is not None:
            check_pose_agrees(kp, src, video, video_frames=vinfo.num_frames, video_fps=vinfo.fps)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    seen = [int((kp.conf[:, joints] > 0).any(axis=1).sum()) for joints in (LEFT_HAND, RIGHT_HAND)]
    return ImportReport(out=out, source_format=fmt, layout=layout, frames=T, fps=rate, width=W, height=H,
                        multi_person_frames=multi, empty_frames=empty, normalised=normalised,
                        left_hand_frames=seen[0], right_hand_frames=seen[1], notes=notes)
