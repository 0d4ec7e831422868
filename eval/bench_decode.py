"""Decode benchmark: our clip loader vs bare PyAV on a 10 s 1280x720 H.264 clip.

    .venv/bin/python eval/bench_decode.py [--repeats 3] [--cache-dir DIR]

The clip (30 fps, moving textured background + two moving "hands") and a
matching MediaPipe-Holistic ``.pose`` sidecar are generated once into the
cache dir (default: <tmp>/slt_llm_bench_decode) and reused.

Timed in the same run, interleaved, median of ``--repeats``:
  decode_only   PyAV threaded, every frame decoded, nothing converted: the
                floor no loader can go below (information only)
  bare_default  PyAV, every frame -> RGB ndarray at full size, PyAV defaults
  bare          the same with ``thread_type = "AUTO"`` (frame threads): the
                baseline the ratio is taken against (the stronger one)
  read_video    ``slt_llm.data.video.read_video`` at the loader's working side
                (``working_side_for``: sampling, max_frames, decoder resize)
  rv+thumbs     the same plus ``thumb_side=full_size``, with numpy's huge-page
                hint off: exactly the decode call load_clip makes
  loader        ``slt_llm.data.clip.load_clip(video, ClipConfig())``: decode +
                sample + resize + thumbnails + keypoints + hand boxes + crops +
                padding

Frames/s are SOURCE frames per second of wall time (frames in the clip /
seconds), so the ratio loader_fps / bare_fps is time_bare / time_loader.
The last line is ``RESULT loader_fps=... bare_fps=... ratio=...``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_clip(out_dir: Path, seconds: float, width: int, height: int, fps: int) -> tuple[Path, Path]:
    """Write bench.mp4 (libx264, yuv420p, crf 23) and bench.pose once; return their paths."""
    import av

    from slt_llm.data.pose import NUM_HOLISTIC, write_pose_holistic

    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / f"bench_{width}x{height}_{fps}fps_{seconds:g}s.mp4"
    pose = video.with_suffix(".pose")
    if video.exists() and pose.exists():
        return video, pose
    n = int(round(seconds * fps))
    rng = np.random.default_rng(0)
    # smooth texture (low-res noise, upsampled), scrolled every frame: real motion for the codec
    from PIL import Image

    tex = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    tex = np.asarray(Image.fromarray(tex).resize(((width // 8 + 2) * 8, (height // 8 + 2) * 8), Image.BILINEAR))
    xy = np.zeros((n, NUM_HOLISTIC, 2), np.float32)
    conf = np.zeros((n, NUM_HOLISTIC), np.float32)
    cx, cy = width / 2, height / 2
    sh = 0.18 * height  # half shoulder width
    hand_r = int(0.06 * height)
    tmp = video.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"crf": "23", "preset": "veryfast"}
        for t in range(n):
            dx = (3 * t) % 16
            img = tex[dx // 2 : dx // 2 + height, dx : dx + width].copy()
            # body landmarks: nose, shoulders, elbows, wrists (MediaPipe pose indices)
            ph = 2 * np.pi * t / fps
            ls, rs = (cx + sh, cy), (cx - sh, cy)  # signer's left is image right
            lw = (cx + 0.8 * sh + 0.5 * sh * np.sin(ph), cy + 0.6 * sh * np.cos(ph))
            rw = (cx - 0.8 * sh - 0.5 * sh * np.sin(1.3 * ph), cy + 0.5 * sh * np.cos(0.7 * ph))
            le, re_ = (ls[0] + 0.3 * sh, cy + 1.2 * sh), (rs[0] - 0.3 * sh, cy + 1.2 * sh)
            for i, p in {0: (cx, cy - 0.9 * sh), 11: ls, 12: rs, 13: le, 14: re_, 15: lw, 16: rw}.items():
                xy[t, i], conf[t, i] = p, 1.0
            for base, w in ((33 + 468, lw), (33 + 468 + 21, rw)):  # 21 hand points around the wrist
                ang = np.linspace(0, 2 * np.pi, 21, endpoint=False)
                xy[t, base : base + 21, 0] = w[0] + hand_r * np.cos(ang)
                xy[t, base : base + 21, 1] = w[1] - hand_r + hand_r * np.sin(ang)
                conf[t, base : base + 21] = 1.0
                x0, y0 = int(w[0]) - hand_r, int(w[1]) - 2 * hand_r
                img[max(0, y0) : y0 + 2 * hand_r, max(0, x0) : x0 + 2 * hand_r] = (230, 180, 150)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    tmp.replace(video)
    write_pose_holistic(pose, xy, conf, fps=float(fps), width=width, height=height)
    return video, pose


def bare_decode(path: Path, threaded: bool, convert: bool = True) -> int:
    import av

    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if threaded:
            s.thread_type = "AUTO"
        for frame in c.decode(s):
            if convert:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "slt_llm_bench_decode"))
    ap.add_argument("--no-loader", action="store_true", help="time only bare PyAV and read_video")
    args = ap.parse_args(argv)

    from slt_llm.config import ClipConfig
    from slt_llm.data.video import probe_video, read_video

    t = time.perf_counter()
    video, pose = make_clip(Path(args.cache_dir), args.seconds, args.width, args.height, args.fps)
    print(f"clip: {video} ({time.perf_counter() - t:.1f} s to make/find)")
    info = probe_video(video)
    n_src = bare_decode(video, threaded=True)
    print(f"  {info.width}x{info.height} {info.codec} {info.fps:g} fps, {n_src} frames, {video.stat().st_size / 1e6:.1f} MB")

    cfg = ClipConfig()
    load_clip = None
    if not args.no_loader:
        try:
            from slt_llm.data.clip import load_clip
        except ImportError as e:  # clip.py not there yet
            print(f"load_clip unavailable ({e}); timing read_video only")
    side = 512
    if load_clip is not None:
        from slt_llm.data.clip import working_side_for
        from slt_llm.data.pose import fill_gaps, read_pose

        side = working_side_for(fill_gaps(read_pose(pose), cfg.max_gap), cfg)  # what load_clip decodes at

    def run_read_video():
        fr = read_video(video, fps=cfg.fps, max_fps=cfg.max_fps, max_frames=cfg.max_frames,
                        max_side=side, threads=cfg.decode_threads)
        return fr.num_frames

    def run_read_video_thumbs():  # the decode call load_clip makes
        import contextlib

        ctx = contextlib.nullcontext()
        if load_clip is not None:
            from slt_llm.data.clip import _NoHugePages

            ctx = _NoHugePages()
        with ctx:
            fr = read_video(video, fps=cfg.fps, max_fps=cfg.max_fps, max_frames=cfg.max_frames,
                            max_side=side, threads=cfg.decode_threads, thumb_side=cfg.full_size)
        return fr.num_frames

    def run_loader():
        return load_clip(video, cfg, pose=pose).num_frames

    cases = {
        "decode_only": lambda: bare_decode(video, threaded=True, convert=False),
        "bare_default": lambda: bare_decode(video, threaded=False),
        "bare": lambda: bare_decode(video, threaded=True),
        "read_video": run_read_video,
        "rv+thumbs": run_read_video_thumbs,
    }
    if load_clip is not None:
        cases["loader"] = run_loader
    def cpu_seconds() -> float:  # this process, all threads (FFmpeg's included)
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    times: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    out_frames: dict[str, int] = {}
    for _ in range(args.repeats):  # interleaved, so load changes hit all cases alike
        for name, fn in cases.items():
            c, t = cpu_seconds(), time.perf_counter()
            out_frames[name] = fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(cpu_seconds() - c)

    fps = {k: n_src / statistics.median(v) for k, v in times.items()}
    cpu_fps = {k: n_src / statistics.median(v) for k, v in cpu.items()}
    bare = fps["bare"]
    print(f"\nmedian of {args.repeats} (source frames per second of wall time; ratio vs bare; "
          f"the same per CPU-second, steadier on a shared machine):")
    for name in cases:
        v = times[name]
        print(f"  {name:<13} {fps[name]:8.1f} fps  ratio {fps[name] / bare:5.2f}  "
              f"(median {statistics.median(v):.2f} s, min {min(v):.2f} s, {out_frames[name]} frames out)  "
              f"cpu: {cpu_fps[name]:7.1f} fps/cpu-s, ratio {cpu_fps[name] / cpu_fps['bare']:5.2f}")
    if load_clip is not None:
        print(f"  ClipConfig: max_frames={cfg.max_frames} max_fps={cfg.max_fps} working side={side} "
              f"hand={cfg.hand_size} full={cfg.full_size}")
        print(f"RESULT loader_fps={fps['loader']:.1f} bare_fps={bare:.1f} ratio={fps['loader'] / bare:.3f} "
              f"cpu_ratio={cpu_fps['loader'] / cpu_fps['bare']:.3f} read_video_fps={fps['read_video']:.1f} "
              f"work_side={side}")
    else:
        print(f"RESULT loader_fps=nan bare_fps={bare:.1f} ratio=nan read_video_fps={fps['read_video']:.1f} "
              f"read_video_ratio={fps['read_video'] / bare:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
