"""Hand-teacher sidecars (slt_llm.data.hand_teacher), their dataset wiring, the encoder's hand head
and the masked L2 distillation loss."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from slt_llm.data import hand_teacher as H
from slt_llm.data.pose import read_pose
from slt_llm.errors import InputError

REAL = Path(__file__).parent / "data" / "realdata"


def test_builtin_teacher_on_real_keypoints_is_hand_local():
    path = REAL / "football_mediapipe_holistic.pose"
    kp = read_pose(path)
    t = H.keypoint_teacher(kp, path)
    assert t.left.shape == t.right.shape == (62, 63) and t.left.dtype == np.float16
    assert t.fps == pytest.approx(kp.fps)
    assert t.left_mask.sum() == 62 and t.right_mask.sum() == 61  # the right hand is missing in one frame
    pts = t.right.astype(np.float32).reshape(62, 21, 3)
    ok = t.right_mask
    assert np.abs(pts[ok, 0]).max() == 0  # wrist at the origin
    np.testing.assert_allclose(np.linalg.norm(pts[ok, 9, :2], axis=-1), 1.0, atol=2e-3)  # palm length 1
    assert np.abs(pts[~ok]).max() == 0
    assert np.abs(pts[ok, :, 2]).max() > 0.01  # MediaPipe's hand depth is carried
    # by hand: the right hand's index tip of frame 0, wrist-relative / palm length
    f = int(np.flatnonzero(ok)[0])
    xy = kp.xy[f, 32:53]
    want = (xy[8] - xy[0]) / np.linalg.norm(xy[9] - xy[0])
    np.testing.assert_allclose(pts[f, 8, :2], want, atol=3e-3)
    # the left hand is mirrored into a right-hand frame
    lxy = kp.xy[0, 11:32]
    lwant = (lxy[8] - lxy[0]) / np.linalg.norm(lxy[9] - lxy[0]) * np.array([-1.0, 1.0])
    np.testing.assert_allclose(t.left[0].astype(np.float32).reshape(21, 3)[8, :2], lwant, atol=3e-3)
    # a 2-D extractor (no depth channel): z stays 0
    t2 = H.keypoint_teacher(read_pose(REAL / "football_mmpose_wholebody.pose"), REAL / "football_mmpose_wholebody.pose")
    assert np.abs(t2.left.astype(np.float32).reshape(62, 21, 3)[..., 2]).max() == 0


def test_cli_writes_sidecars_that_read_back(tmp_path, capsys):
    from slt_llm.cli import main

    shutil.copy(REAL / "football.mp4", tmp_path / "football.mp4")
    shutil.copy(REAL / "football_mediapipe_holistic.pose", tmp_path / "football.pose")
    assert main(["hand-teacher", str(tmp_path)]) == 0
    t = H.read_sidecar(tmp_path / "football.hands.npz")
    ref = H.keypoint_teacher(read_pose(tmp_path / "football.pose"), tmp_path / "football.pose")
    np.testing.assert_array_equal(t.left, ref.left)
    np.testing.assert_array_equal(t.right_mask, ref.right_mask)
    assert main(["hand-teacher", str(tmp_path)]) == 0 and "1 already there" in capsys.readouterr().out


def _write(path, **over):
    T, D = 10, 4
    arrays = dict(left=np.zeros((T, D), np.float16), right=np.ones((T, D), np.float16),
                  left_mask=np.ones(T, bool), right_mask=np.zeros(T, bool), fps=np.float64(10.0))
    arrays.update(over)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("over, problem", [
    (dict(right=np.ones((9, 4), np.float16)), "must both be (T, D)"),
    (dict(left=np.full((10, 4), np.nan, np.float32)), "NaN"),
    (dict(left_mask=np.zeros(10, bool)), "both masks are empty"),
    (dict(right_mask=np.zeros(7, bool)), "right_mask (7,)"),
    (dict(fps=None), "lacks fps"),
    (dict(fps=np.float64(0.0)), "fps must be > 0"),
])
def test_bad_sidecars_are_one_line_errors_naming_the_file(tmp_path, over, problem):
    p = _write(tmp_path / "v.hands.npz", **over)
    with pytest.raises(InputError) as e:
        H.read_sidecar(p)
    msg = str(e.value)
    assert msg.startswith(str(p)) and problem in msg and "\n" not in msg


def test_corrupt_and_unalignable_sidecars(tmp_path):
    p = tmp_path / "x.hands.npz"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        H.read_sidecar(p)
    t = H.read_sidecar(_write(tmp_path / "y.hands.npz"))  # 10 rows at 10 fps: 1 s
    feats, mask = H.align_teacher(t, np.arange(12) / 10.0)  # 1.1 s of clip: the last rows are held masked
    assert feats.shape == (12, 2, 4) and mask[:10, 0].all() and not mask[10:].any() and not mask[:, 1].any()
    with pytest.raises(InputError, match="cannot align"):
        H.align_teacher(t, np.arange(40) / 10.0)  # 4 s of clip for 1 s of rows


def test_dataset_loads_aligned_teacher_and_skips_bad_sidecars(tiny_corpus, tmp_path):
    from slt_llm.config import ClipConfig
    from slt_llm.data.dataset import SLTDataset, collate_clips
    from slt_llm.data.manifest import read_manifest

    samples = list(read_manifest(tiny_corpus / "train.jsonl"))[:3]
    hands = tmp_path / "hands"
    for s in samples:
        t = H.keypoint_teacher(read_pose(s.pose), s.pose)
        H.write_sidecar(H.sidecar_path(s.video, hands), t.left, t.right, t.left_mask, t.right_mask, t.fps)
    # sample 1: a NaN sidecar; sample 2: no sidecar at all
    _write(H.sidecar_path(samples[1].video, hands), left=np.full((10, 63), np.nan, np.float32),
           right=np.zeros((10, 63), np.float16))
    H.sidecar_path(samples[2].video, hands).unlink()
    cfg = ClipConfig(max_frames=12, full_size=32, hand_size=24, max_fps=6)
    ds = SLTDataset(samples, cfg, hand_teacher=True, hands_dir=hands)
    items = [ds[i] for i in range(3)]
    assert "error" not in items[0]
    assert "NaN" in items[1]["error"] and str(hands) in items[1]["error"]
    assert "no hand-teacher sidecar" in items[2]["error"]
    assert ds.num_skipped == 2
    it = items[0]
    T = it["full"].shape[0]
    assert it["hand_teacher"].shape == (T, 2, 63) and it["hand_teacher_mask"].shape == (T, 2)
    # aligned by time: frame k at time times[k] takes teacher row round(times[k] * fps)
    t0 = H.read_sidecar(H.sidecar_path(samples[0].video, hands))
    rows = np.round(it["times"].numpy() * t0.fps).astype(int)
    np.testing.assert_allclose(it["hand_teacher"][:, 1].numpy(), t0.right[rows].astype(np.float32))
    b = collate_clips([items[0], items[1], ds[0]])
    assert b["hand_teacher"].shape[:3] == (2, T, 2) and b["skipped"][0][0] == samples[1].id
    # without hand_teacher nothing changes
    assert "hand_teacher" not in SLTDataset(samples, cfg)[0]


def test_hand_head_output_feeds_the_frame_features_and_masked_l2_matches_by_hand():
    from slt_llm.config import EncoderConfig
    from slt_llm.models.encoder import HandCentricEncoder, hand_distillation_loss

    torch.manual_seed(0)
    cfg = EncoderConfig(hand_channels=[8], full_channels=[8], keypoint_hidden=16, dim=16, num_layers=1,
                        num_heads=2, temporal_stride=2, use_full=False, use_keypoints=False, hand_head_dim=5)
    enc = HandCentricEncoder(cfg).eval()
    B, T = 2, 6
    batch = {"left": torch.randint(0, 255, (B, T, 3, 16, 16), dtype=torch.uint8),
             "right": torch.randint(0, 255, (B, T, 3, 16, 16), dtype=torch.uint8),
             "full": torch.zeros(B, T, 3, 8, 8, dtype=torch.uint8),
             "frame_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2], dtype=torch.bool)}
    tokens, mask, pred = enc(batch, return_hand=True)
    assert pred.shape == (B, T, 2, 5) and (pred[1, 4:] == 0).all()
    # the head's output is an input of the fused features: zeroing the head changes the tokens
    with torch.no_grad():
        enc.hand_head.weight.zero_()
        enc.hand_head.bias.zero_()
    assert not torch.allclose(enc(batch)[0], tokens)

    target = torch.randn(B, T, 2, 5)
    m = torch.zeros(B, T, 2, dtype=torch.bool)
    m[0, :3, 0] = True
    m[1, 1, 1] = True
    p = torch.randn(B, T, 2, 5, requires_grad=True)
    loss = hand_distillation_loss(p, target, m)
    by_hand = 0.0
    pairs = [(0, 0, 0), (0, 1, 0), (0, 2, 0), (1, 1, 1)]
    for b, t, h in pairs:
        by_hand += sum((float(p.detach()[b, t, h, d]) - float(target[b, t, h, d])) ** 2 for d in range(5)) / 5
    assert float(loss.detach()) == pytest.approx(by_hand / len(pairs), rel=1e-6)
    loss.backward()
    assert p.grad[~m].abs().max() == 0 and p.grad[m].abs().min() > 0  # only frames with a hand
    assert float(hand_distillation_loss(p, target, torch.zeros_like(m)).detach()) == 0.0
