"""load_clip on a real signer video: contract shapes, time alignment, frame-count mismatch, pose lookup."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pose_format import Pose

from slt_llm.config import ClipConfig
from slt_llm.data.clip import align_keypoints, clip_to_tensors, load_clip
from slt_llm.data.layout import NUM_JOINTS
from slt_llm.data.pose import Keypoints, read_pose
from slt_llm.errors import InputError


def _cut_pose(src, dst, n_frames=None, scale=None):
    """Copy a real .pose file keeping the first n_frames and/or scaling its pixel frame."""
    pose = Pose.read(src.read_bytes())
    if n_frames is not None:
        pose.body.data = pose.body.data[:n_frames]
        pose.body.confidence = pose.body.confidence[:n_frames]
    if scale is not None:
        pose.body.data = pose.body.data * scale
        pose.header.dimensions.width = int(pose.header.dimensions.width * scale)
        pose.header.dimensions.height = int(pose.header.dimensions.height * scale)
    with open(dst, "wb") as fh:
        pose.write(fh)
    return dst


@pytest.fixture(scope="module")
def football_clip(realdata):
    cfg = ClipConfig(max_frames=256, full_size=64, hand_size=32)
    return cfg, load_clip(realdata / "football.mp4", cfg, pose=realdata / "football_mediapipe_holistic.pose")


def test_load_clip_shapes_follow_the_contract(football_clip):
    cfg, clip = football_clip
    T = clip.num_frames
    assert T == 62  # the decodable frames of football.mp4 (its pose file also has 62)
    assert clip.full.shape == (T, 3, 64, 64) and clip.full.dtype == np.uint8
    assert clip.left.shape == clip.right.shape == (T, 3, 32, 32) and clip.left.dtype == np.uint8
    assert clip.keypoints.shape == (T, NUM_JOINTS, 3) and clip.keypoints.dtype == np.float32
    assert clip.boxes.shape == (T, 2, 4) and clip.boxes.dtype == np.float32
    assert clip.times.shape == (T,) and clip.times.dtype == np.float32
    assert np.all(np.diff(clip.times) > 0) and abs(clip.fps - 29.97) < 0.01
    # the hands are real image content (skin on a dark shirt), not padding
    assert clip.left.mean() > 40 and clip.right.mean() > 40
    # letterboxed 16:9 frame: black bars top and bottom, picture in the middle
    assert clip.full[:, :, :8].max() == 0 and clip.full[:, :, 20:44].mean() > 60
    # normalised: shoulders at +-0.5 around the neck
    k = clip.keypoints
    np.testing.assert_allclose(np.median(k[:, 1, 0] - k[:, 2, 0]), 1.0, atol=0.05)
    assert abs(np.median((k[:, 1, 1] + k[:, 2, 1]) / 2)) < 0.05
    assert clip.meta["uncovered_frames"] == 0 and clip.meta["hand_frames"] == [62, 62]
    t = clip_to_tensors(clip)
    assert tuple(t["left"].shape) == (T, 3, 32, 32) and t["keypoints"].dtype.is_floating_point


def test_align_keypoints_interpolates_by_time_and_holds_past_the_end():
    T = 10
    xy = np.zeros((T, NUM_JOINTS, 2), np.float32)
    xy[..., 0] = np.arange(T, dtype=np.float32)[:, None] * 4.0  # x = 40 * seconds at 10 fps
    conf = np.ones((T, NUM_JOINTS), np.float32)
    conf[6, 3] = 0.0  # joint 3 missing at frame 6
    kp = Keypoints(xy=xy, conf=conf, fps=10.0, layout="canonical", width=100, height=100)
    times = np.array([0.0, 0.05, 0.125, 0.55, 0.9, 1.2, 1.5])
    a, c, covered = align_keypoints(kp, times)
    np.testing.assert_allclose(a[:5, 0, 0], 40.0 * times[:5], atol=1e-4)
    np.testing.assert_allclose(a[5, 0, 0], 36.0)  # 0.3 s past the last frame: held
    assert c[5, 0] == 1.0 and covered[5]
    assert c[6, 0] == 0.0 and not covered[6]  # 0.6 s past: beyond HOLD_SECONDS
    # t = 0.55 lies between frames 5 and 6 and joint 3 is missing at 6: nearest valid frame (5)
    np.testing.assert_allclose(a[3, 3, 0], 20.0)


def test_frame_count_mismatch_and_resolution_mismatch(tmp_path, realdata, football_clip):
    cfg, ref = football_clip
    video = realdata / "football.mp4"
    src = realdata / "football_mediapipe_holistic.pose"
    # keypoints end early (40 of 62 frames): refused as another clip's by default (the counts named);
    # with the check off (a deliberately cut track), later frames hold, then lose their keypoints
    cut = _cut_pose(src, tmp_path / "short.pose", n_frames=40)
    with pytest.raises(InputError) as e:
        load_clip(video, cfg, pose=cut)
    assert str(e.value).startswith(f"{cut}: keypoints do not match the video {video}: 40 frames at 29.97 fps vs "
                                   f"64 frames at 29.97 fps")
    short = load_clip(video, cfg, pose=cut, check_pose=False)
    assert short.num_frames == ref.num_frames
    fps = short.meta["pose_fps"]
    late = short.times.astype(np.float64) * fps > 39 + 0.5 * fps
    assert late.sum() == short.meta["uncovered_frames"] > 0
    assert (short.keypoints[late] == 0).all() and np.isnan(short.boxes[late]).all()
    assert (short.left[late] == 0).all()
    np.testing.assert_allclose(short.boxes[:35], ref.boxes[:35], atol=1e-3)  # covered frames unchanged
    np.testing.assert_array_equal(short.left[:35], ref.left[:35])
    # keypoints covering far less than the video: refused, naming the pose file, even with the check off
    with pytest.raises(InputError, match="tiny.pose.*does not match the video"):
        load_clip(video, cfg, pose=_cut_pose(src, tmp_path / "tiny.pose", n_frames=10), check_pose=False)
    # keypoints in a 2x larger pixel frame are rescaled to the video's
    big = load_clip(video, cfg, pose=_cut_pose(src, tmp_path / "big.pose", scale=2.0))
    np.testing.assert_allclose(big.boxes, ref.boxes, atol=0.05)
    np.testing.assert_array_equal(big.left, ref.left)


def test_mmpose_keypoints_and_subsampling(realdata):
    cfg = ClipConfig(max_frames=16, full_size=48, hand_size=24)
    clip = load_clip(realdata / "football.mp4", cfg, pose=realdata / "football_mmpose_wholebody.pose")
    assert clip.num_frames == 16 and clip.left.shape == (16, 3, 24, 24)
    assert clip.times[0] == 0 and clip.times[-1] > 1.9  # spread over the whole clip
    assert np.isfinite(clip.boxes).all()


def test_pose_lookup_order_and_missing_pose(tmp_path, realdata):
    cfg = ClipConfig(max_frames=8, full_size=32, hand_size=16)
    video = tmp_path / "sign.mp4"
    shutil.copy(realdata / "football.mp4", video)
    with pytest.raises(InputError) as e:
        load_clip(video, cfg)
    assert str(e.value).startswith(str(video)) and "slt-llm extract" in str(e.value) and "--pose" in str(e.value)
    pose_dir = tmp_path / "poses"
    pose_dir.mkdir()
    shutil.copy(realdata / "football_mmpose_wholebody.pose", pose_dir / "sign.pose")
    assert load_clip(video, cfg, pose_dir=pose_dir).meta["layout"] == "coco_wholebody_133"
    shutil.copy(realdata / "football_mediapipe_holistic.pose", tmp_path / "sign.pose")  # beside wins
    assert load_clip(video, cfg, pose_dir=pose_dir).meta["layout"] == "mediapipe_holistic"
    explicit = load_clip(video, cfg, pose=pose_dir / "sign.pose", pose_dir=pose_dir)
    assert explicit.meta["layout"] == "coco_wholebody_133"
    with pytest.raises(InputError, match="nope.pose: pose file not found"):
        load_clip(video, cfg, pose=tmp_path / "nope.pose")
    # already-read keypoints are accepted too
    kp = read_pose(realdata / "football_mediapipe_holistic.pose")
    assert load_clip(video, cfg, pose=kp).num_frames == 8


def test_frame_folder_with_pose_beside_it(tmp_path, realdata, football_clip):
    from PIL import Image

    from slt_llm.data.video import load_frames

    cfg, ref = football_clip
    frames = load_frames(realdata / "football.mp4", max_fps=None, max_frames=None).frames[:24]
    folder = tmp_path / "sign01"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:04d}.png", compress_level=1)
    # the folder holds the video's first 24 frames: its keypoints are the track's first 24 (a matching pair)
    _cut_pose(realdata / "football_mediapipe_holistic.pose", tmp_path / "sign01.pose", n_frames=24)
    clip = load_clip(folder, cfg)
    assert clip.num_frames == 24 and abs(clip.fps - 29.97) < 0.01  # read at the track's rate
    # same boxes as the video (away from the folder's last frames, where the smoothing window ends)
    np.testing.assert_allclose(clip.boxes[:20], ref.boxes[:20], atol=0.05)
    assert np.abs(clip.left[:20].astype(int) - ref.left[:20].astype(int)).mean() < 2


def test_working_side_grows_only_for_small_hands(realdata):
    """The decode side keeps the median hand box >= hand_size px (crops are downscales)."""
    from dataclasses import replace

    from slt_llm.data.clip import MAX_WORK_SIDE_FACTOR, working_side, working_side_for
    from slt_llm.data.hands import hand_boxes

    cfg = ClipConfig()
    kp = read_pose(realdata / "football_mediapipe_holistic.pose")  # 640x360, hand boxes ~100 px
    assert working_side_for(kp, cfg) == working_side(cfg) == 512  # big hands: the default side
    # the same hands in a frame twice as large (e.g. a wide shot): 1280 px long side
    wide = replace(kp, width=kp.width * 2, height=kp.height * 2)
    side = working_side_for(wide, cfg)
    med = float(np.nanmedian(hand_boxes(wide, cfg)[..., 2] - hand_boxes(wide, cfg)[..., 0]))
    assert side % 64 == 0 and med * side / 1280 >= cfg.hand_size > med * (side - 64) / 1280
    assert working_side_for(replace(kp, width=kp.width * 8, height=kp.height * 8), cfg) == \
        MAX_WORK_SIDE_FACTOR * cfg.hand_size  # capped (memory)
    # only the [start, end) part of the track counts; no box at all: the default side
    assert working_side_for(wide, cfg, start=0.5, end=1.5) % 64 == 0
    none = replace(kp, conf=np.zeros_like(kp.conf))
    assert working_side_for(none, cfg) == 512


def test_full_frame_from_decoder_thumbs_matches_the_old_letterbox(realdata, football_clip):
    """The full frame is the decoder's thumbnail padded (no resampling in Python):
    same geometry as letterboxing the working frames in PIL, same content within
    the filters' difference (measured 39 dB, mean offset ~1.7 levels)."""
    from slt_llm.data.clip import pad_square
    from slt_llm.data.video import read_video

    cfg, clip = football_clip
    fr = read_video(realdata / "football.mp4", max_frames=cfg.max_frames, max_side=256, thumb_side=cfg.full_size)
    old = letterbox(fr.frames, cfg.full_size).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(clip.full, pad_square(fr.thumbs, cfg.full_size, channels_first=True))
    assert ((old == 0) == (clip.full == 0)).mean() > 0.99  # bars in the same place
    mse = ((old.astype(np.float64) - clip.full) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 33
    with pytest.raises(ValueError, match="do not fit"):
        pad_square(fr.frames, cfg.full_size)


def test_no_huge_pages_context_restores_numpy_setting():
    from numpy._core.multiarray import _set_madvise_hugepage

    from slt_llm.data.clip import _NoHugePages

    prev = _set_madvise_hugepage(True)
    try:
        with _NoHugePages():
            assert _set_madvise_hugepage(False) is False  # off inside
        assert _set_madvise_hugepage(True) is True  # restored
    finally:
        _set_madvise_hugepage(prev)


def test_crops_cut_from_lazily_converted_frames_equal_crops_from_the_rgb_stack(realdata, football_clip):
    """load_clip converts each working frame only when cutting its hands
    (decode_video); the crops are bit-identical to crop_hands on read_video's
    full RGB stack at the same working side."""
    from slt_llm.data.hands import crop_hands
    from slt_llm.data.video import read_video

    cfg, clip = football_clip
    fr = read_video(realdata / "football.mp4", max_frames=cfg.max_frames, max_side=clip.meta["work_side"],
                    thumb_side=cfg.full_size)
    left, right = crop_hands(fr.frames, clip.boxes * np.float32(fr.scale), cfg.hand_size, channels_first=True)
    np.testing.assert_array_equal(clip.left, left)
    np.testing.assert_array_equal(clip.right, right)
    assert clip.meta["work_size"] == [fr.frames.shape[2], fr.frames.shape[1]]


def letterbox(frames: np.ndarray, size: int) -> np.ndarray:
    """Reference for the decoder-thumbnail path (the loader's former full-frame step): downscale (T,H,W,3) uint8 frames to fit ``size`` x ``size``, centred on black bars.

    Returns uint8 (T, size, size, 3). One PIL bilinear resize per frame
    (~1.1 ms per 512x288 frame; ``load_clip`` no longer calls it: the
    decoder's thumbnails + ``pad_square`` replace it).
    """
    from PIL import Image

    T, H, W = frames.shape[:3]
    out = np.zeros((T, size, size, 3), np.uint8)
    if T == 0 or H == 0 or W == 0:
        return out
    s = size / max(H, W)
    nh, nw = max(1, round(H * s)), max(1, round(W * s))
    y0, x0 = (size - nh) // 2, (size - nw) // 2
    for t in range(T):
        img = Image.fromarray(frames[t])
        if (nw, nh) != (W, H):
            img = img.resize((nw, nh), Image.BILINEAR)
        out[t, y0 : y0 + nh, x0 : x0 + nw] = np.asarray(img)
    return out


def test_sidecars_are_matched_by_the_full_video_name(tmp_path, realdata):
    """x.mp4.pose belongs to x.mp4; x.pose to the one video with stem x, and to nobody when x.mp4
    and x.mov both exist (issue 21: they shared it); extraction writes the name lookup reads."""
    from slt_llm.data.clip import find_pose
    from slt_llm.data.extract import sidecar_path

    pose = realdata / "football_mediapipe_holistic.pose"
    mp4, mov = tmp_path / "x.mp4", tmp_path / "x.mov"
    shutil.copy(realdata / "football.mp4", mp4)
    shutil.copy(pose, tmp_path / "x.pose")
    assert find_pose(mp4) == tmp_path / "x.pose"  # one video with stem x: the old name still works
    assert sidecar_path(mp4) == tmp_path / "x.pose"
    shutil.copy(realdata / "football.mp4", mov)
    for v, other in ((mp4, mov), (mov, mp4)):
        with pytest.raises(InputError) as e:
            find_pose(v)
        assert str(e.value) == (f"{tmp_path / 'x.pose'}: keypoints of which video? {v.name} and {other.name} share "
                                f"the stem 'x'; name the file {v.name}.pose (the video's full name + .pose)")
        assert sidecar_path(v) == tmp_path / f"{v.name}.pose"
    shutil.copy(pose, tmp_path / "x.mp4.pose")
    assert find_pose(mp4) == tmp_path / "x.mp4.pose"  # the full name wins, beside or in --pose-dir
    with pytest.raises(InputError, match="keypoints of which video"):
        find_pose(mov)
    poses = tmp_path / "poses"
    poses.mkdir()
    shutil.copy(pose, poses / "x.mov.pose")
    assert find_pose(mov, pose_dir=poses) == poses / "x.mov.pose"
    (tmp_path / "x.pose").unlink()
    with pytest.raises(InputError) as e:
        find_pose(mov)
    assert "no keypoints found" in str(e.value) and "x.mov.pose" in str(e.value)


def test_keypoints_of_another_clip_are_refused_naming_both_files(tmp_path, realdata):
    """A pose file from a longer or shorter clip (frame count beyond max(2, 10%), or another fps)
    is one InputError naming both files and both counts; a skipped sample under on_error=skip.
    The real pair (64 video frames, 62 keypoint frames) passes."""
    from slt_llm.data.clip import check_pose_agrees
    from slt_llm.data.dataset import SLTDataset
    from slt_llm.data.manifest import Sample

    cfg = ClipConfig(max_frames=8, full_size=32, hand_size=16)
    video = realdata / "football.mp4"
    long = realdata / "mediapipe_holistic_long.pose"  # 170 frames at 24 fps: another recording
    with pytest.raises(InputError) as e:
        load_clip(video, cfg, pose=long)
    assert str(e.value).startswith(f"{long}: keypoints do not match the video {video}: 170 frames at 24 fps vs "
                                   f"64 frames at 29.97 fps")
    kp = read_pose(realdata / "football_mediapipe_holistic.pose")
    check_pose_agrees(kp, "p", "v", video_frames=64, video_fps=29.97)  # the real pair: 62 vs 64
    check_pose_agrees(kp, "p", "v", video_frames=68, video_fps=29.97)  # 6 < 10% of 68
    with pytest.raises(InputError, match="62 frames at 29.97 fps vs 70 frames at 29.97 fps"):
        check_pose_agrees(kp, "p", "v", video_frames=70, video_fps=29.97)
    short = Keypoints(xy=kp.xy[:20], conf=kp.conf[:20], fps=kp.fps, layout=kp.layout, width=640, height=360)
    check_pose_agrees(short, "p", "v", video_frames=23, video_fps=29.97)  # 3 frames: the floor
    with pytest.raises(InputError, match="20 frames at 29.97 fps vs 24 frames"):
        check_pose_agrees(short, "p", "v", video_frames=24, video_fps=29.97)
    with pytest.raises(InputError, match="frame rate differs"):
        check_pose_agrees(kp, "p", "v", video_frames=62, video_fps=25.0)
    check_pose_agrees(kp, "p", "v", video_frames=None, video_fps=None)  # nothing known: nothing checked
    ds = SLTDataset([Sample(id="a", video=str(video), pose=str(long), text="t")], cfg, on_error="skip")
    item = ds[0]
    assert item["error"] == str(e.value) and ds.num_skipped == 1
