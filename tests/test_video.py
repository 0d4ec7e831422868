"""slt_llm.data.video: real PyAV files in several containers/codecs, real VFR,
rotation metadata, sampling by time, frame folders, and every bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from slt_llm.data.video import (
    VIDEO_EXTENSIONS,
    Frames,
    decode_video,
    find_inputs,
    is_video_file,
    load_frames,
    natural_key,
    probe_video,
    read_frame_folder,
    read_video,
)
from slt_llm.errors import InputError

W, H = 64, 48


# ---------------------------------------------------------------- writers
def grey(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame i as a flat grey level 10 + 10 i (recoverable after lossy coding)."""
    return np.full((h, w, 3), 10 + 10 * i, np.uint8)


def index_of(frames: np.ndarray) -> list[int]:
    return [int(round((float(f.mean()) - 10) / 10)) for f in frames]


def write_video(path, codec, images, *, rate=10, pts_ms=None, rotation=None, hflip=False, gop=None, fmt=None,
                pix_fmt="yuv420p"):
    """Encode RGB images with PyAV. pts_ms: per-frame presentation times (VFR);
    pix_fmt: e.g. yuv444p (4:4:4, odd sizes), yuv420p10le (10-bit)."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height = images[0].shape[1], images[0].shape[0]
        s.pix_fmt = pix_fmt
        if gop:
            s.codec_context.gop_size = gop
        if pts_ms is not None:
            s.codec_context.time_base = Fraction(1, 1000)
            s.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation, hflip=hflip)
        for i, img in enumerate(images):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_ms is not None:
                f.pts, f.time_base = pts_ms[i], Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


def quadrants(w=W, h=H) -> np.ndarray:
    """Asymmetric test card: white top-left, red top-right, green bottom-left."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = 255
    a[: h // 2, w // 2 :] = (255, 0, 0)
    a[h // 2 :, : w // 2] = (0, 255, 0)
    return a


@pytest.fixture(scope="module")
def grey24(tmp_path_factory) -> Path:
    """24 frames at 10 fps (2.4 s), frame i = grey level 10 + 10 i, keyframe every 6."""
    p = tmp_path_factory.mktemp("v") / "grey24.mp4"
    return write_video(p, "libx264", [grey(i) for i in range(24)], rate=10, gop=6)


# ---------------------------------------------------------------- codecs
CASES = [
    ("mp4", "libx264"),
    ("mkv", "libx264"),
    ("webm", "libvpx-vp9"),
    ("avi", "mpeg4"),
    ("mov", "libx264"),
    ("mp4", "libx265"),
    ("mkv", "libsvtav1"),
]


@pytest.mark.parametrize("ext,codec", CASES, ids=[f"{e}-{c}" for e, c in CASES])
def test_containers_and_codecs_sample_by_time(tmp_path, ext, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"encoder {codec} not in this PyAV build")
    n = 20
    p = tmp_path / f"v.{ext}"
    try:
        write_video(p, codec, [grey(i) for i in range(n)], rate=10)
    except av.error.FFmpegError as e:  # e.g. encoder present but refuses tiny sizes
        pytest.skip(f"{codec} could not encode a {W}x{H} clip: {e}")
    fr = read_video(p)
    assert fr.frames.shape == (n, H, W, 3) and fr.frames.dtype == np.uint8
    assert index_of(fr.frames) == list(range(n))
    np.testing.assert_allclose(fr.times, np.arange(n) / 10, atol=2e-3)
    assert fr.fps == pytest.approx(10, rel=1e-3)
    # 5 fps on a 10 fps clip keeps every second frame, chosen by time
    half = read_video(p, fps=5)
    assert index_of(half.frames) == list(range(0, n, 2))
    np.testing.assert_allclose(half.times, np.arange(0, n, 2) / 10, atol=2e-3)
    # seek + stop in this container: frames with 0.5 <= t < 1.2
    cut = read_video(p, start=0.5, end=1.2)
    assert index_of(cut.frames) == list(range(5, 12))
    np.testing.assert_allclose(cut.times, np.arange(7) / 10, atol=2e-3)
    info = probe_video(p)
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    assert info.fps == pytest.approx(10, rel=1e-3)
    assert abs(info.num_frames - n) <= 1


def test_fps_above_native_keeps_every_frame_once_and_max_fps_caps(grey24):
    assert index_of(read_video(grey24, fps=60, max_fps=None).frames) == list(range(24))
    capped = read_video(grey24, fps=60, max_fps=5)
    assert index_of(capped.frames) == list(range(0, 24, 2))
    assert capped.fps == pytest.approx(5)


# ------------------------------------------------------------------- VFR
VFR_MS = [0, 40, 80, 200, 210, 220, 500, 540, 900, 1000]


def test_variable_frame_rate_is_sampled_by_presentation_time(tmp_path):
    p = write_video(tmp_path / "vfr.mp4", "libx264", [grey(i) for i in range(len(VFR_MS))], rate=25, pts_ms=VFR_MS)
    fr = read_video(p)
    assert index_of(fr.frames) == list(range(len(VFR_MS)))
    np.testing.assert_allclose(fr.times, np.array(VFR_MS) / 1000, atol=1e-3)
    # 5 fps: slots of 0.2 s centred on 0, 0.2, 0.4, ...; nearest frame per slot.
    # t*5 = 0 .2 .4 | 1 1.05 1.1 | 2.5 2.7 | 4.5 5.0 -> frames 0, 3, 7, 9
    # (by frame index a 5x decimation would take 0, 5: wrong in time)
    five = read_video(p, fps=5)
    assert index_of(five.frames) == [0, 3, 7, 9]
    np.testing.assert_allclose(five.times, [0, 0.2, 0.54, 1.0], atol=1e-3)


def test_real_vfr_phone_video(realdata):
    path = realdata / "selfie_sign.mp4"
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = np.array([f.pts for f in c.decode(s)], dtype=np.float64) * float(s.time_base)
    fr = read_video(path)
    assert fr.frames.shape == (58, 720, 540, 3)
    assert (fr.src_width, fr.src_height) == (540, 720)
    assert np.all(np.diff(fr.times) > 0)
    np.testing.assert_allclose(fr.times, pts - pts[0], atol=1e-6)
    ten = read_video(path, fps=10, max_side=160)
    assert ten.frames.shape[1:] == (160, 120, 3)
    assert 18 <= len(ten) <= 20
    # every sampled time is a real frame time, and the spacing follows 10 fps
    assert np.all(np.min(np.abs(ten.times[:, None] - (pts - pts[0])[None]), axis=1) < 1e-6)
    assert np.all(np.abs(np.diff(ten.times) - 0.1) < 0.5 / 29.9 + 1e-6)


# -------------------------------------------------------------- real file
def test_real_football(realdata):
    path = realdata / "football.mp4"
    info = probe_video(path)
    assert (info.width, info.height, info.num_frames, info.codec) == (640, 360, 64, "h264")
    assert info.fps == pytest.approx(29.97, abs=1e-3)
    full = read_video(path)
    # the container lists 64 frames but its edit list ends after 62 (the
    # MediaPipe keypoints of this video also have 62 frames)
    assert full.frames.shape == (62, 360, 640, 3)
    np.testing.assert_allclose(full.times, np.arange(62) * 100 / 2997, atol=1e-6)
    small = read_video(path, max_side=160)
    assert small.frames.shape == (62, 90, 160, 3) and small.scale == pytest.approx(0.25)
    assert (small.src_width, small.src_height) == (640, 360)
    # the decoder-side resize matches a reference downscale of the full frame
    ref = np.asarray(Image.fromarray(full.frames[30]).resize((160, 90), Image.BILINEAR, reducing_gap=None), np.float32)
    assert np.abs(small.frames[30].astype(np.float32) - ref).mean() < 6.0
    single = read_video(path, threads=1, max_side=160, max_frames=5)
    multi = read_video(path, threads=4, max_side=160, max_frames=5)
    np.testing.assert_array_equal(single.frames, multi.frames)


# -------------------------------------------------------------- rotation
@pytest.mark.parametrize(
    "ext,rot,hflip,expect",
    [
        ("mp4", 90, False, lambda a: np.rot90(a, 1)),
        ("mov", -90, False, lambda a: np.rot90(a, -1)),
        ("mp4", 180, False, lambda a: np.rot90(a, 2)),
        ("mkv", 90, True, lambda a: np.rot90(a, 1)[:, ::-1]),
    ],
)
def test_rotation_metadata_gives_upright_frames(tmp_path, ext, rot, hflip, expect):
    card = quadrants()
    p = write_video(tmp_path / f"r.{ext}", "libx264", [card] * 3, rate=10, rotation=rot, hflip=hflip)
    want = np.ascontiguousarray(expect(card)).astype(np.float32)
    fr = read_video(p)
    assert fr.frames.shape[1:] == want.shape
    assert np.abs(fr.frames[0].astype(np.float32) - want).mean() < 8.0
    assert (fr.src_width, fr.src_height) == (want.shape[1], want.shape[0])
    assert fr.rotation == (rot if rot != 180 else -180)
    info = probe_video(p)
    assert (info.width, info.height) == (want.shape[1], want.shape[0])
    assert (info.coded_width, info.coded_height) == (W, H)
    small = read_video(p, max_side=32)
    assert max(small.frames.shape[1:3]) == 32
    assert small.frames.shape[1] / small.frames.shape[2] == pytest.approx(want.shape[0] / want.shape[1], rel=0.05)


# ----------------------------------------------- max_frames, start / end
def test_max_frames_is_uniform_over_the_whole_clip(grey24):
    fr = read_video(grey24, max_frames=7)
    idx = index_of(fr.frames)
    assert len(idx) == 7
    assert idx[0] == 0 and idx[-1] == 23  # never truncated: the end is kept
    assert set(np.diff(idx)) <= {3, 4}
    assert fr.fps == pytest.approx(6 / 2.3, rel=0.05)  # 7 frames over 2.3 s
    assert len(read_video(grey24, max_frames=100)) == 24
    one = read_video(grey24, max_frames=1)
    assert len(one) == 1


def test_start_end_seek_and_stop(grey24):
    fr = read_video(grey24, start=1.0, end=2.0)  # keyframes every 6 frames: seek lands before 1.0
    assert index_of(fr.frames) == list(range(10, 20))
    np.testing.assert_allclose(fr.times, np.arange(10) / 10, atol=2e-3)
    assert fr.t0 == 1.0
    cut = read_video(grey24, start=0.5, end=2.05, max_frames=4, fps=5)
    assert index_of(cut.frames)[0] == 5 and index_of(cut.frames)[-1] in (19, 20)
    assert len(cut) == 4


# ------------------------------------------------------------ frame folders
def test_natural_key_orders_dataset_names():
    names = ["images0010.png", "images0002.png", "images0001.png"]
    assert sorted(names, key=natural_key) == ["images0001.png", "images0002.png", "images0010.png"]
    assert sorted(["10.png", "2.png", "1.png"], key=natural_key) == ["1.png", "2.png", "10.png"]


def test_frame_folder_natural_sort_sampling_and_resize(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(1, 13):  # 1.png .. 12.png: a plain sort would put 10, 11, 12 after 1
        Image.fromarray(grey(i - 1, 40, 30)).save(d / f"{i}.png")
    (d / "notes.txt").write_text("not an image")
    fr = read_frame_folder(d, fps=25.0)
    assert index_of(fr.frames) == list(range(12))
    np.testing.assert_allclose(fr.times, np.arange(12) / 25)
    assert (fr.src_width, fr.src_height, fr.fps) == (40, 30, 25.0)
    small = read_frame_folder(d, max_side=20, max_frames=4)
    assert small.frames.shape == (4, 15, 20, 3) and small.scale == 0.5
    assert index_of(small.frames) == [0, 4, 7, 11]
    via = load_frames(d, fps=12.5, folder_fps=25.0)
    assert index_of(via.frames) == list(range(0, 12, 2))


def test_frame_folder_jpeg_decoder_downscale(tmp_path):
    d = tmp_path / "jpg"
    d.mkdir()
    for i in range(3):
        Image.fromarray(grey(i, 210, 260)).save(d / f"images{i + 1:04d}.jpg", quality=95)
    fr = read_frame_folder(d, max_side=64)
    assert fr.frames.shape == (3, 64, 52, 3)
    assert index_of(fr.frames) == [0, 1, 2]


def test_load_frames_dispatch_and_find_inputs(tmp_path, grey24):
    assert isinstance(load_frames(grey24, max_frames=3), Frames)
    assert set(VIDEO_EXTENSIONS) == {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"}
    assert is_video_file("a/B.MP4") and not is_video_file("a/b.pose")
    root = tmp_path / "in"
    for rel in ["b/10.mp4", "b/2.mkv", "a.webm", "phoenix/train/s1/1/images0001.png", "csl/S2/000.jpg", ".hidden/x.mp4"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (root / "README.txt").write_text("x")
    got = [p.relative_to(root).as_posix() for p in find_inputs(root)]
    assert got == ["a.webm", "b/2.mkv", "b/10.mp4", "csl/S2", "phoenix/train/s1/1"]


# --------------------------------------------------------------- bad input
def test_bad_inputs_give_one_line_errors_naming_the_file(tmp_path, grey24):
    def err(fn, *a, **k) -> str:
        with pytest.raises(InputError) as ei:
            fn(*a, **k)
        msg = str(ei.value)
        assert "\n" not in msg
        return msg

    missing = tmp_path / "nope.mp4"
    assert err(read_video, missing) == f"{missing}: file not found"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert err(read_video, empty) == f"{empty}: empty file (0 bytes)"
    trunc = tmp_path / "trunc.mp4"
    trunc.write_bytes(grey24.read_bytes()[: grey24.stat().st_size // 2])
    assert err(read_video, trunc).startswith(f"{trunc}: truncated or corrupt video")
    # index at the front (faststart): opens and decodes, but the tail is missing
    fast = tmp_path / "fast.mp4"
    noise = [np.random.default_rng(i).integers(0, 255, (H, W, 3), dtype=np.uint8) for i in range(30)]
    with av.open(str(fast), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for im in noise:
            for pk in s.encode(av.VideoFrame.from_ndarray(im, format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    assert len(read_video(fast)) == 30
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    msg = err(read_video, cut)
    assert msg.startswith(f"{cut}: truncated video: frames stop at ") and msg.endswith("but the video track is 3.00s long")
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    assert err(read_video, text).startswith(f"{text}: not a video file (FFmpeg could not read it")
    assert err(probe_video, text).startswith(f"{text}: not a video file")
    audio = tmp_path / "audio.m4a"
    with av.open(str(audio), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for k in range(4):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, k * 1024
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    assert err(read_video, audio) == f"{audio}: no video stream (the file has: 1 audio)"
    folder = tmp_path / "noframes"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    assert err(load_frames, folder) == f"{folder}: empty frame folder (no .png/.jpg/.jpeg images)"
    assert "no frames decoded between start=10s and end=12s" in err(read_video, grey24, start=10.0, end=12.0)
    bad_img = tmp_path / "badimg"
    bad_img.mkdir()
    (bad_img / "1.png").write_text("not png")
    assert err(read_frame_folder, bad_img) == f"{bad_img / '1.png'}: not a readable image (UnidentifiedImageError)"


def test_cli_style_message(tmp_path):
    """The message is what `slt-llm` prints after 'error:' (cli.py adds the prefix)."""
    p = tmp_path / "x.mp4"
    p.write_bytes(b"")
    with pytest.raises(InputError) as ei:
        load_frames(p)
    assert ei.value.path == str(p) and ei.value.problem == "empty file (0 bytes)"


def test_frame_buffer_grows_past_a_short_estimate():
    from slt_llm.data.video import _FrameBuffer

    buf = _FrameBuffer(1)
    for i in range(5):
        buf.append(grey(i, 4, 3))
    arr = buf.array()
    assert arr.shape == (5, 3, 4, 3) and index_of(arr) == [0, 1, 2, 3, 4]


def test_find_inputs_on_a_single_frame_folder(tmp_path):
    for i in (1, 2, 10):
        Image.fromarray(grey(i, 8, 8)).save(tmp_path / f"{i}.png")
    assert find_inputs(tmp_path) == [tmp_path]
    with pytest.raises(InputError, match="not a folder"):
        find_inputs(tmp_path / "1.png")


def test_thumbs_match_a_resize_of_the_frames(realdata, tmp_path):
    fr = read_video(realdata / "football.mp4", max_side=320, thumb_side=112, max_frames=8)
    assert fr.thumbs.shape == (8, 63, 112, 3) and fr.frames.shape == (8, 180, 320, 3)
    ref = np.stack([np.asarray(Image.fromarray(f).resize((112, 63), Image.BILINEAR)) for f in fr.frames])
    assert np.abs(fr.thumbs.astype(np.float32) - ref).mean() < 4.0
    rot = write_video(tmp_path / "r.mp4", "libx264", [quadrants()] * 3, rate=10, rotation=90)
    up = read_video(rot, thumb_side=16)
    assert up.thumbs.shape == (3, 16, 12, 3)  # upright, like the frames (64 x 48)
    d = tmp_path / "f"
    d.mkdir()
    for i in range(3):
        Image.fromarray(grey(i, 40, 30)).save(d / f"{i}.png")
    assert load_frames(d, thumb_side=20).thumbs.shape == (3, 15, 20, 3)


def test_decode_video_is_read_video_without_the_rgb_stack(realdata, tmp_path):
    """decode_video: the same frames (bit-identical, converted on access), times,
    thumbnails and geometry as read_video: downscaled, rotated, max_frames-subsampled."""
    rot = write_video(tmp_path / "r.mp4", "libx264", [quadrants()] * 5, rate=10, rotation=90)
    cases = [(realdata / "football.mp4", dict(max_side=320, thumb_side=112, max_frames=9)),
             (rot, dict(max_side=32, thumb_side=16)),
             (realdata / "selfie_sign.mp4", dict(max_side=256, max_frames=12, fps=10))]
    for path, kw in cases:
        ref, lazy = read_video(path, **kw), decode_video(path, **kw)
        assert lazy.shape == ref.frames.shape and len(lazy) == len(ref)
        for i in range(len(ref)):
            np.testing.assert_array_equal(lazy[i], ref.frames[i])
        np.testing.assert_array_equal(lazy.times, ref.times)
        if ref.thumbs is not None:
            np.testing.assert_array_equal(lazy.thumbs, ref.thumbs)
        for k in ("fps", "src_width", "src_height", "scale", "t0", "rotation"):
            assert getattr(lazy, k) == getattr(ref, k), k
    with pytest.raises(InputError, match="not found"):
        decode_video(tmp_path / "missing.mp4")


def test_thumbs_from_the_working_picture_match_thumbs_from_the_source(realdata):
    """Thumbnails are scaled from the downscaled working picture (cheaper); against
    thumbnails scaled straight from the decoded source they differ by rounding only."""
    import av
    from av.video.reformatter import VideoReformatter

    fr = read_video(realdata / "football.mp4", max_side=512, thumb_side=112, max_frames=16)
    with av.open(str(realdata / "football.mp4")) as c:
        src = [f for f in c.decode(c.streams.video[0])]
    keep = np.round(fr.times * fr.native_fps).astype(int)  # football.mp4: constant rate, frames at k / fps
    sc, rgb = VideoReformatter(), VideoReformatter()
    ref = np.stack([rgb.reformat(sc.reformat(src[k], width=112, height=63, interpolation="AREA"),
                                 format="rgb24").to_ndarray() for k in keep])
    mse = ((fr.thumbs.astype(np.float64) - ref) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 40  # measured 55.9 dB on the whole clip
    assert np.abs(fr.thumbs.astype(np.float64).mean() - ref.mean()) < 0.5


def test_thread_settings_do_not_change_pixels(realdata, grey24, monkeypatch):
    """Small pictures are converted on one swscale thread (cheaper); decoding
    and converting with FFmpeg's threads gives the same pixels."""
    from slt_llm.data import video as video_mod

    cases = ((grey24, {}), (realdata / "football.mp4", dict(max_side=320, thumb_side=64, max_frames=8)))
    single = [read_video(path, threads=1, **kw) for path, kw in cases]
    monkeypatch.setattr(video_mod, "_SWS_SINGLE_THREAD_PIXELS", 0)  # every conversion threaded
    for (path, kw), one in zip(cases, single):
        threaded = read_video(path, threads=2, **kw)
        np.testing.assert_array_equal(one.frames, threaded.frames)
        if one.thumbs is not None:
            np.testing.assert_array_equal(one.thumbs, threaded.thumbs)
