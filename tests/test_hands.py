"""Hand boxes (keypoints, forearm fallback, smoothing, two real detectors agreeing) and crops."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from slt_llm.config import ClipConfig
from slt_llm.data.hands import crop_hands, hand_boxes
from slt_llm.data.layout import LEFT_HAND, NUM_JOINTS, RIGHT_HAND
from slt_llm.data.pose import Keypoints, read_pose


def _iou(a, b):
    x0, y0 = np.maximum(a[..., 0], b[..., 0]), np.maximum(a[..., 1], b[..., 1])
    x1, y1 = np.minimum(a[..., 2], b[..., 2]), np.minimum(a[..., 3], b[..., 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_two_real_detectors_give_agreeing_boxes_on_the_hands(realdata):
    """MediaPipe Holistic and MMPose whole-body keypoints of the same video.

    The two detectors put their 21 hand points in slightly different places
    (MMPose's points are ~2-3 px off MediaPipe's on a ~75 px hand), so the boxes
    cannot be equal; measured: mean IoU ~0.88, worst frame ~0.77, centres within
    ~6% of the box side. A swapped hand, a box on the wrong body part or a
    scale error would give IoU near 0 and centre distances of a box side or
    more, so these tolerances separate right from wrong with margin.
    """
    cfg = ClipConfig()
    mp = read_pose(realdata / "football_mediapipe_holistic.pose")
    mm = read_pose(realdata / "football_mmpose_wholebody.pose")
    a, b = hand_boxes(mp, cfg), hand_boxes(mm, cfg)
    assert a.shape == b.shape == (62, 2, 4) and a.dtype == np.float32
    both = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)  # (T,2)
    assert both.mean() > 0.95
    iou = _iou(a, b)
    for s in range(2):
        assert np.mean(iou[both[:, s], s]) > 0.75
        assert np.min(iou[both[:, s], s]) > 0.6
        side = a[both[:, s], s, 2] - a[both[:, s], s, 0]
        ca = (a[both[:, s], s, :2] + a[both[:, s], s, 2:]) / 2
        cb = (b[both[:, s], s, :2] + b[both[:, s], s, 2:]) / 2
        assert np.max(np.linalg.norm(ca - cb, axis=1) / side) < 0.15
    # the boxes really hold the hands: each detector's hand points lie in the other's box
    for kp, boxes in ((mp, b), (mm, a)):
        for s, hand in ((0, LEFT_HAND), (1, RIGHT_HAND)):
            pts, ok = kp.xy[:, hand], kp.conf[:, hand] > 0.2
            bx = boxes[:, s][:, None, :]
            inside = (pts[..., 0] >= bx[..., 0]) & (pts[..., 0] <= bx[..., 2]) & \
                     (pts[..., 1] >= bx[..., 1]) & (pts[..., 1] <= bx[..., 3])
            assert inside[ok].mean() > 0.97
    # square, clamped to [min_box, max_box] of the shorter side
    side = a[..., 2] - a[..., 0]
    np.testing.assert_allclose(side, a[..., 3] - a[..., 1], rtol=1e-5)
    assert (side >= cfg.min_box * 360 - 1e-3).all() and (side <= cfg.max_box * 360 + 1e-3).all()


def _arm_kp(T=6):
    xy = np.zeros((T, NUM_JOINTS, 2), np.float32)
    conf = np.zeros((T, NUM_JOINTS), np.float32)
    xy[:, 1], xy[:, 2] = [200, 100], [120, 100]  # shoulders
    xy[:, 3], xy[:, 5] = [200, 200], [200, 150]  # left elbow, left wrist (forearm pointing up)
    conf[:, [1, 2, 3, 5]] = 1.0
    return Keypoints(xy=xy, conf=conf, fps=25.0, layout="canonical", width=320, height=240)


def test_forearm_fallback_puts_the_box_beyond_the_wrist():
    cfg = ClipConfig(smooth_window=5)
    boxes = hand_boxes(_arm_kp(), cfg)
    left = boxes[:, 0]
    centre = (left[:, :2] + left[:, 2:]) / 2
    # wrist (200,150), elbow (200,200): the hand is above the wrist, on the forearm's line
    np.testing.assert_allclose(centre, np.tile([200.0, 150.0 - 0.4 * 50.0], (6, 1)), atol=1e-4)
    np.testing.assert_allclose(left[:, 2] - left[:, 0], cfg.hand_scale * 0.75 * 50.0, atol=1e-4)
    assert np.isnan(boxes[:, 1]).all()  # right side: no hand, wrist or elbow -> no box


def test_keypoint_box_wrist_only_clamping_and_smoothing():
    cfg = ClipConfig(smooth_window=3, hand_scale=1.5, min_box=0.1, max_box=0.5)
    kp = _arm_kp(T=7)
    hand = np.array([[0, 0], [10, 0], [20, 0], [0, 20], [20, 20], [10, 10]], np.float32)  # 20x20 px
    for t in range(7):  # moving right 3 px/frame with +-2 px jitter
        kp.xy[t, LEFT_HAND.start : LEFT_HAND.start + 6] = hand + [100 + 3 * t + 2 * (-1) ** t, 50]
        kp.conf[t, LEFT_HAND.start : LEFT_HAND.start + 6] = 0.9
    kp.conf[3, LEFT_HAND] = 0.0  # frame 3: hand lost, forearm fallback
    kp.xy[:, 6], kp.conf[:, 6] = [60, 60], 1.0  # right wrist only, no elbow, no hand
    raw = hand_boxes(kp, ClipConfig(smooth_window=1, hand_scale=1.5, min_box=0.1, max_box=0.5))
    np.testing.assert_allclose(raw[0, 0], [112 - 15, 60 - 15, 112 + 15, 60 + 15], atol=1e-4)
    # wrist only: centred on the wrist, size = typical extent of the other hand's keypoint boxes
    # (none seen for the right hand -> 0.1 x shorter side, then clamped to >= min_box)
    np.testing.assert_allclose((raw[:, 1, :2] + raw[:, 1, 2:]) / 2, np.tile([60, 60], (7, 1)), atol=1e-4)
    np.testing.assert_allclose(raw[:, 1, 2] - raw[:, 1, 0], 0.1 * 240 * 1.5, atol=1e-4)
    # tiny hands are clamped to min_box of the shorter side
    tiny = _arm_kp(T=2)
    tiny.xy[:, LEFT_HAND] = 100 + np.random.default_rng(0).uniform(0, 2, (2, 21, 2))
    tiny.conf[:, LEFT_HAND] = 1
    t_boxes = hand_boxes(tiny, cfg)
    np.testing.assert_allclose(t_boxes[:, 0, 2] - t_boxes[:, 0, 0], 0.1 * 240, atol=1e-4)
    # smoothing: the centre is the mean over a 3-frame window of the raw centres (jitter averaged out)
    sm = hand_boxes(kp, cfg)
    rc = (raw[:, 0, :2] + raw[:, 0, 2:]) / 2
    sc = (sm[:, 0, :2] + sm[:, 0, 2:]) / 2
    np.testing.assert_allclose(sc[5], rc[4:7].mean(0), atol=1e-4)
    np.testing.assert_allclose(sc[0], rc[0:2].mean(0), atol=1e-4)  # window shrinks at the ends
    # frame 3 jumps to the forearm box (~110 px away): its neighbours move at most 15% of their side
    side = raw[:, 0, 2] - raw[:, 0, 0]
    for t in (2, 4):
        assert np.abs(sc[t] - rc[t]).max() <= 0.15 * side[t] + 1e-4
        assert np.abs(sc[t] - rc[t]).max() > 0.15 * side[t] - 1e-3  # the clamp is what limits it

def test_crop_hands_slices_resizes_and_zero_pads():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 60, 80, 3), dtype=np.uint8)
    boxes = np.full((2, 2, 4), np.nan, np.float32)
    boxes[0, 0] = [10, 20, 42, 52]  # inside: 32x32 -> 16x16
    boxes[0, 1] = [-10, -10, 10, 10]  # partly outside: top-left quadrant padded
    boxes[1, 0] = [70, 50, 90, 70]  # partly outside bottom-right
    crops = crop_hands(frames, boxes, 16)
    assert crops.shape == (2, 2, 16, 16, 3) and crops.dtype == np.uint8
    ref = np.asarray(Image.fromarray(frames[0, 20:52, 10:42]).resize((16, 16), Image.BILINEAR))
    np.testing.assert_array_equal(crops[0, 0], ref)
    padded = np.zeros((20, 20, 3), np.uint8)
    padded[10:, 10:] = frames[0, :10, :10]
    np.testing.assert_array_equal(crops[0, 1], np.asarray(Image.fromarray(padded).resize((16, 16), Image.BILINEAR)))
    assert crops[0, 1, :7, :7].max() == 0 and crops[0, 1, 9:, 9:].max() > 0
    assert crops[1, 0, 9:, 9:].max() == 0 and crops[1, 0, :7, :7].max() > 0
    assert crops[1, 1].max() == 0  # NaN box -> empty crop


@pytest.mark.parametrize("name", ["openpose_137.pose", "soup_openpifpaf_wholebody.pose", "mediapipe_holistic_long.pose"])
def test_boxes_for_other_real_layouts_are_finite_and_inside(realdata, name):
    kp = read_pose(realdata / name)
    boxes = hand_boxes(kp, ClipConfig())
    ok = np.isfinite(boxes).all(-1)
    assert ok[:, 1].mean() > 0.8  # the right (dominant) hand is placed in most frames of every file
    b = boxes[ok]  # every placed box overlaps the frame
    assert (b[:, 2] > 0).all() and (b[:, 0] < kp.width).all()
    assert (b[:, 3] > 0).all() and (b[:, 1] < kp.height).all()
    if name == "mediapipe_holistic_long.pose":
        # the left arm hangs below the shot here: a box is only placed where it reaches into the frame
        assert ok[:, 0].mean() < 0.5


def test_crop_hands_channels_first_is_the_same_crops_hand_major():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (5, 50, 70, 3), dtype=np.uint8)
    c = rng.uniform([-20, -20], [70, 50], (5, 2, 2))
    boxes = np.concatenate([c, c + rng.uniform(4, 40, (5, 2, 1))], -1).astype(np.float32)
    boxes[2, 1] = np.nan
    a = crop_hands(frames, boxes, 12)
    b = crop_hands(frames, boxes, 12, channels_first=True)
    assert b.shape == (2, 5, 3, 12, 12) and b[0].flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(b, a.transpose(1, 0, 4, 2, 3))
    # every crop equals slicing + zero padding + one PIL bilinear resize (the reference)
    for t in range(5):
        for s in range(2):
            x0, y0, x1, y1 = boxes[t, s]
            if not np.isfinite(boxes[t, s]).all():
                assert a[t, s].max() == 0
                continue
            x0, y0, x1, y1 = int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))
            if x1 <= 0 or y1 <= 0 or x0 >= 70 or y0 >= 50:  # misses the frame: empty crop
                assert a[t, s].max() == 0
                continue
            pad = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
            sy, sx = slice(max(y0, 0), min(y1, 50)), slice(max(x0, 0), min(x1, 70))
            pad[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0] = frames[t, sy, sx]
            ref = np.asarray(Image.fromarray(pad).resize((12, 12), Image.BILINEAR))
            np.testing.assert_array_equal(a[t, s], ref)
