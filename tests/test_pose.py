"""Keypoint reading (real .pose files of three layouts), writing, gap filling, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

from slt_llm.data.layout import LEFT_HAND, RIGHT_HAND, NUM_JOINTS
from slt_llm.data.pose import (
    HOLISTIC_POINTS,
    Keypoints,
    fill_gaps,
    normalize,
    read_pose,
    write_pose_holistic,
)
from slt_llm.errors import InputError

REAL = {
    "football_mediapipe_holistic.pose": ("mediapipe_holistic", 62),
    "football_mmpose_wholebody.pose": ("coco_wholebody_133", 62),
    "soup_openpifpaf_wholebody.pose": ("coco_wholebody_133", 41),
    "openpose_137.pose": ("openpose_137", 9),
    "mediapipe_holistic_long.pose": ("mediapipe_holistic", 170),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files_load_into_canonical_layout(realdata, name):
    layout, frames = REAL[name]
    kp = read_pose(realdata / name)
    assert kp.layout == layout
    assert kp.xy.shape == (frames, NUM_JOINTS, 2) and kp.xy.dtype == np.float32
    assert kp.conf.shape == (frames, NUM_JOINTS)
    assert kp.fps > 0 and kp.width > 0 and kp.height > 0
    assert ((kp.conf >= 0) & (kp.conf <= 1)).all()
    assert (kp.xy[kp.conf == 0] == 0).all()
    # hand points that are seen lie inside the frame (2% slack for detector jitter)
    hands = np.concatenate([kp.xy[:, LEFT_HAND], kp.xy[:, RIGHT_HAND]], axis=1)
    hc = np.concatenate([kp.conf[:, LEFT_HAND], kp.conf[:, RIGHT_HAND]], axis=1) > 0
    assert hc.sum() > 0.4 * hc.size  # at least one hand is well tracked in every real file
    sx, sy = 0.02 * kp.width, 0.02 * kp.height
    assert (hands[hc][:, 0] >= -sx).all() and (hands[hc][:, 0] <= kp.width + sx).all()
    assert (hands[hc][:, 1] >= -sy).all() and (hands[hc][:, 1] <= kp.height + sy).all()
    # signers face the camera: their left shoulder/eye/mouth corner is on the image's right
    med = lambda j: np.median(kp.xy[kp.conf[:, j] > 0, j], axis=0)  # noqa: E731
    assert med(1)[0] > med(2)[0] + 0.05 * kp.width  # shoulders
    assert med(7)[0] > med(8)[0]  # eyes
    assert med(9)[0] > med(10)[0]  # mouth corners
    # face above shoulders; eyes between the shoulders
    assert med(7)[1] < med(1)[1] and med(8)[1] < med(2)[1]
    assert med(2)[0] < med(8)[0] < med(7)[0] < med(1)[0]
    # the hand's own wrist point sits near the body's wrist (same side, not swapped)
    for hw, bw in ((LEFT_HAND.start, 5), (RIGHT_HAND.start, 6)):
        both = (kp.conf[:, hw] > 0) & (kp.conf[:, bw] > 0)
        if both.any():
            d = np.linalg.norm(kp.xy[both, hw] - kp.xy[both, bw], axis=1)
            shoulder = np.linalg.norm(med(1) - med(2))
            assert np.median(d) < 0.25 * shoulder


def _random_holistic(T=6, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (T, 543, 2)).astype(np.float32)
    conf = rng.uniform(0.05, 1.0, (T, 543)).astype(np.float32)
    return xy, conf


def test_write_read_round_trip_and_header_matches_real_file(tmp_path, realdata):
    xy, conf = _random_holistic()
    conf[2, 40] = 0.0  # a missing face point
    conf[3, 501:522] = 0.0  # left hand lost in frame 3
    path = write_pose_holistic(tmp_path / "x.pose", xy, conf, 25.0, 200, 150)
    pose = Pose.read(path.read_bytes())
    real = Pose.read((realdata / "football_mediapipe_holistic.pose").read_bytes())
    for ours, theirs in zip(pose.header.components, real.header.components[:4]):
        assert (ours.name, ours.points, ours.format) == (theirs.name, theirs.points, theirs.format)
    assert [c.name for c in pose.header.components] == [c.name for c in real.header.components[:4]]
    assert len(HOLISTIC_POINTS) == 543
    assert (pose.header.dimensions.width, pose.header.dimensions.height) == (200, 150)
    assert pose.body.fps == 25.0
    data = np.ma.getdata(pose.body.data)[:, 0, :, :2]
    ok = conf > 0
    np.testing.assert_allclose(data[ok], xy[ok], rtol=0, atol=1e-4)
    np.testing.assert_allclose(pose.body.confidence[:, 0][ok], conf[ok], atol=1e-6)
    assert np.ma.getmaskarray(pose.body.data)[3, 0, 501:522].all()
    # and our reader maps it to the canonical joints
    kp = read_pose(path)
    assert kp.layout == "mediapipe_holistic" and kp.fps == 25.0
    np.testing.assert_allclose(kp.xy[:, 1], xy[:, 11], atol=1e-4)  # LEFT_SHOULDER
    np.testing.assert_allclose(kp.xy[:, 6], xy[:, 16], atol=1e-4)  # RIGHT_WRIST
    np.testing.assert_allclose(kp.xy[:, 7], xy[:, 2], atol=1e-4)  # LEFT_EYE
    np.testing.assert_allclose(kp.xy[:, RIGHT_HAND], xy[:, 522:543], atol=1e-4)
    np.testing.assert_allclose(kp.conf[:, RIGHT_HAND], conf[:, 522:543], atol=1e-6)
    assert (kp.conf[3, LEFT_HAND] == 0).all() and (kp.conf[2, LEFT_HAND] > 0).all()


def _linear_kp(T=30):
    t = np.arange(T, dtype=np.float32)
    xy = np.zeros((T, NUM_JOINTS, 2), np.float32)
    xy[..., 0] = 10 + 2.0 * t[:, None] + np.arange(NUM_JOINTS)[None]
    xy[..., 1] = 50 - 0.5 * t[:, None]
    conf = np.full((T, NUM_JOINTS), 0.9, np.float32)
    return Keypoints(xy=xy, conf=conf, fps=25.0, layout="canonical", width=320, height=240)


def test_fill_gaps_interpolates_short_and_flags_long():
    ref = _linear_kp()
    kp = _linear_kp()
    kp.conf[5:8, 20] = 0  # 3-frame gap
    kp.xy[5:8, 20] = 0
    kp.conf[10:22, 30] = 0  # 12-frame gap
    kp.xy[10:22, 30] = 0
    kp.conf[0:2, 40] = 0  # short gap at the start: held
    out = fill_gaps(kp, max_gap=8)
    np.testing.assert_allclose(out.xy[5:8, 20], ref.xy[5:8, 20], atol=1e-4)
    np.testing.assert_allclose(out.conf[5:8, 20], 0.9, atol=1e-6)
    assert not out.gap_mask[:, 20].any()
    assert (out.conf[10:22, 30] == 0).all() and out.gap_mask[10:22, 30].all()
    assert not out.gap_mask[:10, 30].any() and not out.gap_mask[22:, 30].any()
    np.testing.assert_allclose(out.xy[0:2, 40], np.repeat(ref.xy[2:3, 40], 2, 0))
    assert out.gap_mask.sum() == 12
    # the input is left untouched
    assert (kp.conf[5:8, 20] == 0).all()


def test_normalize_centres_on_neck_and_scales_by_shoulders():
    kp = _linear_kp(T=10)
    kp.xy[:, 1] = [300.0, 200.0]  # left shoulder
    kp.xy[:, 2] = [200.0, 200.0]  # right shoulder
    kp.xy[:, 0] = [250.0, 150.0]  # nose
    kp.xy[3, 1] = [400.0, 210.0]  # one bad frame: the median width ignores it
    kp.conf[4, 11] = 0.0
    n = normalize(kp)
    assert n.shape == (10, NUM_JOINTS, 3) and n.dtype == np.float32
    np.testing.assert_allclose(n[0, 1, :2], [0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(n[0, 2, :2], [-0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(n[0, 0, :2], [0.0, -0.5], atol=1e-6)
    np.testing.assert_allclose(n[..., 2][kp.conf > 0], kp.conf[kp.conf > 0])
    assert (n[4, 11] == 0).all()
    # invariant to translation and scale of the whole track
    kp2 = Keypoints(xy=kp.xy * 3 + 17, conf=kp.conf, fps=25, layout="canonical", width=960, height=720)
    np.testing.assert_allclose(normalize(kp2), n, atol=1e-5)
    # no shoulders anywhere: frame-centre fallback, still finite
    kp.conf[:, 1:3] = 0
    m = normalize(kp)
    assert np.isfinite(m).all() and (m[:, 1:3] == 0).all()


def _write_pose(path, components, n_frames=3):
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=100, height=100, depth=0),
                        components=components)
    n = sum(len(c.points) for c in components)
    data = np.ma.masked_array(np.ones((n_frames, 1, n, 2), np.float32), mask=False)
    body = NumPyPoseBody(fps=25.0, data=data, confidence=np.ones((n_frames, 1, n), np.float32))
    with open(path, "wb") as fh:
        Pose(header, body).write(fh)
    return path


def test_bad_pose_files_raise_input_error_naming_the_file(tmp_path, realdata):
    cases = {}
    junk = tmp_path / "junk.pose"
    junk.write_text("this is not a pose file\n" * 10)
    cases[junk] = "not a readable .pose file"
    empty = tmp_path / "empty.pose"
    empty.write_bytes(b"")
    cases[empty] = "empty"
    cases[tmp_path / "missing.pose"] = "not found"
    trunc = tmp_path / "truncated.pose"
    trunc.write_bytes((realdata / "football_mediapipe_holistic.pose").read_bytes()[:5000])
    cases[trunc] = "not a readable .pose file"
    body_only = _write_pose(tmp_path / "body_only.pose", [
        PoseHeaderComponent(name="POSE_LANDMARKS", points=["NOSE", "LEFT_SHOULDER", "RIGHT_SHOULDER"],
                            limbs=[], colors=[(255, 0, 0)], point_format="XYC")])
    cases[body_only] = "has no hand keypoints (components: POSE_LANDMARKS 3)"
    other = _write_pose(tmp_path / "other.pose", [
        PoseHeaderComponent(name="SKELETON_17", points=[f"p{i}" for i in range(17)],
                            limbs=[], colors=[(255, 0, 0)], point_format="XYC")])
    cases[other] = "layout not supported (components: SKELETON_17 17)"
    for path, expected in cases.items():
        with pytest.raises(InputError) as e:
            read_pose(path)
        msg = str(e.value)
        assert msg.startswith(str(path)) and expected in msg and "\n" not in msg, msg
