"""Keypoints: ``.pose`` files (pose-format) -> the canonical 53-joint layout.

Supported source layouts (detected from the header's component names and
point counts; see ``LAYOUTS``):

* ``mediapipe_holistic``: POSE_LANDMARKS (33, or a subset named by point),
  FACE_LANDMARKS (468 face-mesh points, or a subset named by index),
  LEFT/RIGHT_HAND_LANDMARKS (21); POSE_WORLD_LANDMARKS is ignored.
* ``openpose_137``: pose_keypoints_2d (BODY_25), face_keypoints_2d (70),
  hand_left/right_keypoints_2d (21).
* ``coco_wholebody_133``: BODY (23), FACE (68), LEFT_HAND, RIGHT_HAND (21),
  as written by MMPose and by OpenPifPaf (both use these component names).

Face points map to eyes and mouth corners: MediaPipe uses the body's LEFT_EYE
/ MOUTH_LEFT... (or face-mesh 263+362 / 33+133 eye corners, 291 / 61 mouth
corners when the body lacks them); OpenPose uses LEye/REye and the iBUG-68
mouth corners FLO_54 (signer's left) / FLO_48 (signer's right); COCO-WholeBody
uses left_eye/right_eye and face-54 / face-48. Hands keep their 21 points in
MediaPipe order (the three layouts share it). "Left" is the signer's left in
all three, as the files name it (checked on the real fixtures: the MediaPipe
left hand's wrist sits on the body's LEFT_WRIST).

Missing points (masked in the file, NaN, or confidence 0) have ``conf == 0``
and ``xy == 0``. Costs: reading is O(T * points) numpy work after
pose-format's parse (a 62-frame 576-point file reads in a few ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from slt_llm.data.layout import (
    CANONICAL_JOINTS,
    HAND,
    J_LEFT_SHOULDER,
    J_RIGHT_SHOULDER,
    NUM_JOINTS,
)
from slt_llm.errors import InputError

__all__ = [
    "Keypoints",
    "read_pose",
    "fill_gaps",
    "normalize",
    "write_pose_holistic",
    "holistic_header",
    "HOLISTIC_POINTS",
    "NUM_HOLISTIC",
]


@dataclass
class Keypoints:
    """Keypoints in the canonical layout (see ``slt_llm.data.layout``).

    xy        float32 (T, 53, 2)  pixels of the pose file's frame (width x height); 0 where missing
    conf      float32 (T, 53)     confidence in [0, 1]; 0 = missing
    fps       frames per second of the keypoint track
    layout    "mediapipe_holistic" | "openpose_137" | "coco_wholebody_133" | "canonical"
    width, height  frame size the pixel coordinates refer to
    gap_mask  bool (T, 53)  true where a point is missing over a gap longer
              than ``max_gap`` (set by ``fill_gaps``; all false from ``read_pose``)
    """

    xy: np.ndarray
    conf: np.ndarray
    fps: float
    layout: str
    width: int
    height: int
    gap_mask: np.ndarray = None  # type: ignore[assignment]
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.xy = np.asarray(self.xy, dtype=np.float32)
        self.conf = np.asarray(self.conf, dtype=np.float32)
        if self.gap_mask is None:
            self.gap_mask = np.zeros(self.conf.shape, dtype=bool)

    @property
    def num_frames(self) -> int:
        return int(self.xy.shape[0])

    @property
    def times(self) -> np.ndarray:
        """float64 (T,) seconds of each keypoint frame."""
        return np.arange(self.num_frames, dtype=np.float64) / float(self.fps)


# ------------------------------------------------------------------ layouts
def _as_list(m: dict) -> list:
    """Mapping keyed by joint name (hands as ``left_hand_<point>``) -> list
    indexed by canonical joint (hand joint names collide with body wrists)."""
    body_face = CANONICAL_JOINTS[: NUM_JOINTS - 42]
    names = body_face + [f"left_hand_{h}" for h in HAND] + [f"right_hand_{h}" for h in HAND]
    return [m.get(n, []) for n in names]


# Each canonical joint maps to a list of alternatives; an alternative is a
# tuple of (component, point) references averaged together. The first
# alternative whose references all exist in the header wins; if none exists
# the joint stays missing (conf 0).
_MP_BODY = "POSE_LANDMARKS"
_MP_FACE = "FACE_LANDMARKS"


def _mp_map() -> dict:
    m = {
        "nose": [((_MP_BODY, "NOSE"),), ((_MP_FACE, "1"),), ((_MP_FACE, "4"),)],
        "left_shoulder": [((_MP_BODY, "LEFT_SHOULDER"),)],
        "right_shoulder": [((_MP_BODY, "RIGHT_SHOULDER"),)],
        "left_elbow": [((_MP_BODY, "LEFT_ELBOW"),)],
        "right_elbow": [((_MP_BODY, "RIGHT_ELBOW"),)],
        "left_wrist": [((_MP_BODY, "LEFT_WRIST"),), (("LEFT_HAND_LANDMARKS", "WRIST"),)],
        "right_wrist": [((_MP_BODY, "RIGHT_WRIST"),), (("RIGHT_HAND_LANDMARKS", "WRIST"),)],
        "left_eye": [((_MP_BODY, "LEFT_EYE"),), ((_MP_FACE, "263"), (_MP_FACE, "362"))],
        "right_eye": [((_MP_BODY, "RIGHT_EYE"),), ((_MP_FACE, "33"), (_MP_FACE, "133"))],
        "mouth_left": [((_MP_BODY, "MOUTH_LEFT"),), ((_MP_FACE, "291"),)],
        "mouth_right": [((_MP_BODY, "MOUTH_RIGHT"),), ((_MP_FACE, "61"),)],
    }
    for side, comp in (("left", "LEFT_HAND_LANDMARKS"), ("right", "RIGHT_HAND_LANDMARKS")):
        for i, name in enumerate(HAND):
            m[f"{side}_hand_{name}"] = [((comp, i),)]
    return _as_list(m)


def _op_map() -> dict:
    b, f = "pose_keypoints_2d", "face_keypoints_2d"
    m = {
        "nose": [((b, "Nose"),)],
        "left_shoulder": [((b, "LShoulder"),)],
        "right_shoulder": [((b, "RShoulder"),)],
        "left_elbow": [((b, "LElbow"),)],
        "right_elbow": [((b, "RElbow"),)],
        "left_wrist": [((b, "LWrist"),), (("hand_left_keypoints_2d", 0),)],
        "right_wrist": [((b, "RWrist"),), (("hand_right_keypoints_2d", 0),)],
        "left_eye": [((b, "LEye"),), ((f, 69),)],
        "right_eye": [((b, "REye"),), ((f, 68),)],
        "mouth_left": [((f, 54),)],
        "mouth_right": [((f, 48),)],
    }
    for side, comp in (("left", "hand_left_keypoints_2d"), ("right", "hand_right_keypoints_2d")):
        for i, name in enumerate(HAND):
            m[f"{side}_hand_{name}"] = [((comp, i),)]
    return _as_list(m)


def _coco_map() -> dict:
    b, f = "BODY", "FACE"
    m = {
        "nose": [((b, "nose"),)],
        "left_shoulder": [((b, "left_shoulder"),)],
        "right_shoulder": [((b, "right_shoulder"),)],
        "left_elbow": [((b, "left_elbow"),)],
        "right_elbow": [((b, "right_elbow"),)],
        "left_wrist": [((b, "left_wrist"),), (("LEFT_HAND", 0),)],
        "right_wrist": [((b, "right_wrist"),), (("RIGHT_HAND", 0),)],
        "left_eye": [((b, "left_eye"),)],
        "right_eye": [((b, "right_eye"),)],
        "mouth_left": [((f, 54),)],
        "mouth_right": [((f, 48),)],
    }
    for side, comp in (("left", "LEFT_HAND"), ("right", "RIGHT_HAND")):
        for i, name in enumerate(HAND):
            m[f"{side}_hand_{name}"] = [((comp, i),)]
    return _as_list(m)


# name -> (body component, hand components, mapping)
LAYOUTS = {
    "mediapipe_holistic": (_MP_BODY, ("LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"), _mp_map()),
    "openpose_137": ("pose_keypoints_2d", ("hand_left_keypoints_2d", "hand_right_keypoints_2d"), _op_map()),
    "coco_wholebody_133": ("BODY", ("LEFT_HAND", "RIGHT_HAND"), _coco_map()),
}
_LAYOUT_MARKERS = {
    "mediapipe_holistic": {"POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"},
    "openpose_137": {"pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d"},
    "coco_wholebody_133": {"BODY", "FACE", "LEFT_HAND", "RIGHT_HAND"},
}


def _detect_layout(path, components: dict) -> str:
    names = set(components)
    desc = ", ".join(f"{n} {len(c.points)}" for n, c in components.items())
    for layout, markers in _LAYOUT_MARKERS.items():
        if not names & markers:
            continue
        body, hands, _ = LAYOUTS[layout]
        if not all(h in names for h in hands):
            raise InputError(path, f"pose file has no hand keypoints (components: {desc}); "
                                   f"need both hand components {', '.join(hands)}")
        for h in hands:
            if len(components[h].points) != 21:
                raise InputError(path, f"hand component {h} has {len(components[h].points)} points, "
                                       f"expected 21 (components: {desc})")
        if layout == "openpose_137" and body in names and len(components[body].points) != 25:
            break  # e.g. OpenPose-135 or COCO-18 body: not a layout we map
        if layout == "coco_wholebody_133" and body in names and len(components[body].points) != 23:
            break
        return layout
    raise InputError(path, "keypoint layout not supported (components: "
                           f"{desc}); supported: MediaPipe Holistic, OpenPose-137, COCO-WholeBody-133")


# --------------------------------------------------------------------- read
def _component_offsets(header) -> dict:
    out, off = {}, 0
    for c in header.components:
        out[c.name] = (off, c)
        off += len(c.points)
    return out


def read_pose(path) -> Keypoints:
    """Read a ``.pose`` file and map it to the canonical layout.

    Returns ``Keypoints`` with xy (T,53,2) float32 pixels of the file's
    width x height, conf (T,53) in [0,1] (0 where the file masks the point,
    holds NaN, or gives confidence 0), the file's fps and the detected layout.
    With several people in the file, the one with the highest mean confidence
    is kept. Raises ``InputError`` naming the file for a missing, empty,
    corrupt, unsupported-layout or hand-less file.
    """
    from pose_format import Pose

    p = Path(path)
    if not p.is_file():
        raise InputError(path, "pose file not found")
    raw = p.read_bytes()
    if not raw:
        raise InputError(path, "pose file is empty")
    try:
        pose = Pose.read(raw)
        data = pose.body.data
        conf_raw = np.asarray(pose.body.confidence, dtype=np.float32)
        fps = float(pose.body.fps)
        width, height = int(pose.header.dimensions.width), int(pose.header.dimensions.height)
        comps = _component_offsets(pose.header)
    except InputError:
        raise
    except Exception as e:  # pose-format raises struct.error, ValueError, IndexError, ...
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise InputError(path, f"not a readable .pose file ({type(e).__name__}: {first[:120]})") from None
    if not comps:
        raise InputError(path, "pose file has no components")
    layout = _detect_layout(path, {n: c for n, (_, c) in comps.items()})
    if data.ndim != 4 or data.shape[-1] < 2:
        raise InputError(path, f"unexpected pose data shape {tuple(data.shape)}")
    T, P, N, _ = data.shape
    if fps <= 0 or not np.isfinite(fps):
        raise InputError(path, f"pose file has invalid fps {fps}")

    mask = np.ma.getmaskarray(data)
    xy_all = np.asarray(np.ma.getdata(data)[..., :2], dtype=np.float32)  # (T,P,N,2)
    c_all = conf_raw.copy()  # (T,P,N)
    bad = mask[..., :2].any(-1) | ~np.isfinite(xy_all).all(-1) | ~np.isfinite(c_all)
    c_all[bad] = 0.0
    c_all = np.clip(c_all, 0.0, 1.0)
    if P == 0 or T == 0:
        xy_p = np.zeros((T, N, 2), np.float32)
        c_p = np.zeros((T, N), np.float32)
    else:
        person = int(np.argmax(c_all.mean(axis=(0, 2)))) if P > 1 else 0
        xy_p, c_p = xy_all[:, person], c_all[:, person]
    xy_p = np.where(c_p[..., None] > 0, xy_p, 0.0).astype(np.float32)

    mapping = LAYOUTS[layout][2]
    xy = np.zeros((T, NUM_JOINTS, 2), np.float32)
    conf = np.zeros((T, NUM_JOINTS), np.float32)
    for j, alts in enumerate(mapping):
        for alt in alts:
            idx = []
            for comp, point in alt:
                if comp not in comps:
                    break
                off, c = comps[comp]
                if isinstance(point, int):
                    if point >= len(c.points):
                        break
                    idx.append(off + point)
                else:
                    if point not in c.points:
                        break
                    idx.append(off + c.points.index(point))
            else:
                cs = c_p[:, idx]  # (T,k)
                ok = (cs > 0).all(axis=1)
                xy[:, j] = np.where(ok[:, None], xy_p[:, idx].mean(axis=1), 0.0)
                conf[:, j] = np.where(ok, cs.min(axis=1), 0.0)
                break
    return Keypoints(xy=xy, conf=conf, fps=fps, layout=layout, width=width, height=height,
                     source=str(path))


# ------------------------------------------------------------------ gaps
def _runs(missing: np.ndarray):
    """(start, stop) index pairs of the True runs of a 1-D bool array."""
    d = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    return zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1))


def fill_gaps(kp: Keypoints, max_gap: int) -> Keypoints:
    """Fill short runs of missing frames per joint; return a new ``Keypoints``.

    A run of missing frames (conf 0) of length <= ``max_gap`` between two
    valid frames is filled by linear interpolation of xy and conf between the
    two neighbours (exact on a linearly moving point). A short run at the
    start or end of the clip holds the nearest valid value. Longer runs (and
    joints never seen) stay missing and are marked in ``gap_mask``.
    Cost: O(T * 53) with a Python loop over joints and runs.
    """
    xy, conf = kp.xy.copy(), kp.conf.copy()
    gap = np.zeros_like(kp.conf, dtype=bool)
    T = xy.shape[0]
    for j in range(xy.shape[1]):
        missing = conf[:, j] <= 0
        if not missing.any():
            continue
        if missing.all():
            gap[:, j] = True
            continue
        for a, b in _runs(missing):
            n = b - a
            if n > max_gap:
                gap[a:b, j] = True
                continue
            if a == 0:  # leading gap: hold the first valid value
                xy[a:b, j], conf[a:b, j] = xy[b, j], conf[b, j]
            elif b == T:  # trailing gap: hold the last valid value
                xy[a:b, j], conf[a:b, j] = xy[a - 1, j], conf[a - 1, j]
            else:
                w = (np.arange(a, b) - (a - 1)) / float(n + 1)  # (n,) in (0,1)
                xy[a:b, j] = (1 - w)[:, None] * xy[a - 1, j] + w[:, None] * xy[b, j]
                conf[a:b, j] = (1 - w) * conf[a - 1, j] + w * conf[b, j]
    return replace(kp, xy=xy, conf=conf, gap_mask=gap | kp.gap_mask & (conf <= 0))


# --------------------------------------------------------------- normalise
def normalize(kp: Keypoints) -> np.ndarray:
    """Body-centred, scale-free keypoints: float32 (T, 53, 3).

    x, y are centred on the neck (mid-point of the shoulders, per frame) and
    divided by the shoulder width (the median over frames where both
    shoulders are seen, robust to a few bad detections); the third channel is
    the confidence; missing points (conf 0) are 0 in all three channels.
    Frames without both shoulders use the median neck of the other frames.
    If no frame shows both shoulders: centre = frame centre, scale = a third
    of the frame's shorter side (a typical shoulder width for an upper-body
    signer shot). Cost: O(T * 53).
    """
    xy, conf = kp.xy.astype(np.float32), kp.conf.astype(np.float32)
    T = xy.shape[0]
    both = (conf[:, J_LEFT_SHOULDER] > 0) & (conf[:, J_RIGHT_SHOULDER] > 0)
    neck = 0.5 * (xy[:, J_LEFT_SHOULDER] + xy[:, J_RIGHT_SHOULDER])  # (T,2)
    width = np.linalg.norm(xy[:, J_LEFT_SHOULDER] - xy[:, J_RIGHT_SHOULDER], axis=-1)  # (T,)
    floor = 1e-3 * max(kp.width, kp.height, 1)
    if both.any() and np.median(width[both]) > floor:
        scale = float(np.median(width[both]))
        centre = np.where(both[:, None], neck, np.median(neck[both], axis=0))
    else:
        scale = max(min(kp.width, kp.height) / 3.0, 1.0)
        centre = np.broadcast_to(np.array([kp.width / 2.0, kp.height / 2.0], np.float32), (T, 2))
    out = np.zeros((T, xy.shape[1], 3), np.float32)
    valid = conf > 0
    out[..., :2] = np.where(valid[..., None], (xy - centre[:, None, :]) / scale, 0.0)
    out[..., 2] = np.where(valid, conf, 0.0)
    return out


# -------------------------------------------------------------------- write
HOLISTIC_BODY_POINTS = [
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE",
    "RIGHT_EYE_OUTER", "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER",
    "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY",
    "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX", "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP", "RIGHT_HIP",
    "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE", "LEFT_HEEL", "RIGHT_HEEL",
    "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX",
]
HOLISTIC_BODY_LIMBS = [
    (15, 21), (16, 20), (18, 20), (3, 7), (14, 16), (23, 25), (28, 30), (11, 23), (27, 31), (6, 8),
    (15, 17), (24, 26), (16, 22), (4, 5), (5, 6), (29, 31), (12, 24), (23, 24), (0, 1), (9, 10),
    (1, 2), (0, 4), (11, 13), (30, 32), (28, 32), (15, 19), (16, 18), (25, 27), (26, 28), (12, 14),
    (17, 19), (2, 3), (11, 12), (27, 29), (13, 15),
]
HOLISTIC_HAND_POINTS = [
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP", "INDEX_FINGER_MCP",
    "INDEX_FINGER_PIP", "INDEX_FINGER_DIP", "INDEX_FINGER_TIP", "MIDDLE_FINGER_MCP",
    "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP", "MIDDLE_FINGER_TIP", "RING_FINGER_MCP",
    "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP", "PINKY_MCP", "PINKY_PIP", "PINKY_DIP",
    "PINKY_TIP",
]
HOLISTIC_HAND_LIMBS = [
    (3, 4), (0, 5), (17, 18), (0, 17), (13, 14), (13, 17), (18, 19), (5, 6), (5, 9), (14, 15),
    (0, 1), (9, 10), (1, 2), (9, 13), (10, 11), (19, 20), (6, 7), (15, 16), (2, 3), (11, 12), (7, 8),
]
HOLISTIC_HAND_COLORS = [
    (232, 232, 232), (192, 0, 0), (227, 35, 35), (262, 70, 70), (297, 105, 105), (0, 0, 192),
    (35, 35, 227), (70, 70, 262), (105, 105, 297), (0, 192, 0), (35, 227, 35), (70, 262, 70),
    (105, 297, 105), (0, 192, 192), (35, 227, 227), (70, 262, 262), (105, 297, 297),
    (255, 128, 0), (255, 178, 102), (255, 153, 51), (255, 128, 0),
]
HOLISTIC_COMPONENTS = [
    ("POSE_LANDMARKS", 33), ("FACE_LANDMARKS", 468), ("LEFT_HAND_LANDMARKS", 21), ("RIGHT_HAND_LANDMARKS", 21),
]
NUM_HOLISTIC = 543
# point index in the (T, 543) holistic arrays
HOLISTIC_POINTS = (
    [f"POSE_LANDMARKS/{n}" for n in HOLISTIC_BODY_POINTS]
    + [f"FACE_LANDMARKS/{i}" for i in range(468)]
    + [f"LEFT_HAND_LANDMARKS/{n}" for n in HOLISTIC_HAND_POINTS]
    + [f"RIGHT_HAND_LANDMARKS/{n}" for n in HOLISTIC_HAND_POINTS]
)


def holistic_header(width: int, height: int):
    """pose-format ``PoseHeader`` of the MediaPipe Holistic layout (XYZC).

    Same component names, point names, point format and body/hand limbs and
    colours as MediaPipe Holistic files written by pose-format; the face
    component carries its 468 points without the tessellation limbs (drawing
    only). POSE_WORLD_LANDMARKS is not written (readers ignore it).
    """
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    comps = [
        PoseHeaderComponent(name="POSE_LANDMARKS", points=list(HOLISTIC_BODY_POINTS),
                            limbs=list(HOLISTIC_BODY_LIMBS), colors=[(255, 0, 0)], point_format="XYZC"),
        PoseHeaderComponent(name="FACE_LANDMARKS", points=[str(i) for i in range(468)],
                            limbs=[], colors=[(128, 0, 0)], point_format="XYZC"),
    ]
    for name in ("LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"):
        comps.append(PoseHeaderComponent(name=name, points=list(HOLISTIC_HAND_POINTS),
                                         limbs=list(HOLISTIC_HAND_LIMBS),
                                         colors=list(HOLISTIC_HAND_COLORS), point_format="XYZC"))
    dims = PoseHeaderDimensions(width=int(width), height=int(height), depth=0)
    return PoseHeader(version=0.2, dimensions=dims, components=comps)


def write_pose_holistic(path, xy: np.ndarray, conf: np.ndarray, fps: float, width: int, height: int) -> Path:
    """Write a MediaPipe Holistic ``.pose`` file (one person, XYZC, z = 0).

    xy float32 (T, 543, 2) pixels, conf (T, 543) in [0, 1]; points with
    conf <= 0 (or non-finite xy) are written masked, i.e. missing. Point order
    is ``HOLISTIC_POINTS`` (33 body, 468 face, 21 left hand, 21 right hand).
    The file is written atomically (temp file + rename). Returns the path.
    """
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    xy = np.asarray(xy, dtype=np.float32)
    conf = np.asarray(conf, dtype=np.float32)
    if xy.ndim != 3 or xy.shape[1:] != (NUM_HOLISTIC, 2):
        raise ValueError(f"xy must be (T, {NUM_HOLISTIC}, 2), got {xy.shape}")
    if conf.shape != xy.shape[:2]:
        raise ValueError(f"conf must be {xy.shape[:2]}, got {conf.shape}")
    T = xy.shape[0]
    bad = (conf <= 0) | ~np.isfinite(conf) | ~np.isfinite(xy).all(-1)  # (T,543)
    data = np.zeros((T, 1, NUM_HOLISTIC, 3), np.float32)
    data[:, 0, :, :2] = np.where(bad[..., None], 0.0, xy)
    c = np.where(bad, 0.0, np.clip(conf, 0.0, 1.0)).astype(np.float32)[:, None, :]
    mask = np.broadcast_to(bad[:, None, :, None], data.shape)
    body = NumPyPoseBody(fps=float(fps), data=np.ma.masked_array(data, mask=mask), confidence=c)
    pose = Pose(holistic_header(width, height), body)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        pose.write(fh)
    tmp.replace(path)
    return path
