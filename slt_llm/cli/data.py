"""The data commands: ``prepare``, ``inspect``, ``extract``, ``import-pose``, ``describe``, ``hand-teacher``
(argument parsing and what each prints; the work is in ``slt_llm.data``)."""

from __future__ import annotations

from pathlib import Path

from slt_llm.cli.options import Parser

POSE_DIR_HELP = "where <video stem>.pose files are when not beside the videos"


# --------------------------------------------------------------------- prepare
def prepare_parser() -> Parser:
    from slt_llm.data.prepare import DATASETS

    ap = Parser(prog="slt-llm prepare", description="Convert official annotations to JSONL manifests.")
    ap.add_argument("dataset", choices=sorted(DATASETS), help="which dataset's annotation files (" +
                    ", ".join(sorted(DATASETS)) + ")")
    ap.add_argument("--root", required=True, help="the dataset's top folder")
    ap.add_argument("--out", required=True, help="folder for train/dev/test.jsonl")
    ap.add_argument("--video-dir", default=None,
                    help="frame-folder root (phoenix2014t, csl-daily) or raw video folder (how2sign)")
    ap.add_argument("--clip-dir", default=None, help="how2sign: folder of pre-cut <SENTENCE_NAME>.mp4 clips")
    ap.add_argument("--pose-dir", default=None, help="record <id>.pose files found here in the rows")
    ap.add_argument("--keep-missing", action="store_true", help="keep rows whose video is not (yet) there")
    return ap


def prepare(argv: list[str]) -> int:
    from slt_llm.data.prepare import SPLITS, prepare

    a = prepare_parser().parse_args(argv)
    rep = prepare(a.dataset, a.root, a.out, video_dir=a.video_dir, pose_dir=a.pose_dir,
                  clip_dir=a.clip_dir, keep_missing=a.keep_missing)
    for split in SPLITS:
        r = rep[split]
        print(f"{split}: wrote {r['written']} rows to {Path(a.out) / (split + '.jsonl')}; skipped "
              f"{r['skipped_missing_video']} (missing video), {r['skipped_empty_text']} (empty sentence)")
    if rep["rows_outside_out"]:
        print(f"note: {rep['rows_outside_out']} rows point outside {a.out} (the dataset stays where it is); "
              "readers refuse that unless told: data.allow_outside_root=true in the run config, "
              "--allow-outside-root for translate/retrieval")
    return 0


# --------------------------------------------------------------------- inspect
def inspect_parser() -> Parser:
    ap = Parser(prog="slt-llm inspect", description="look at what the data layer makes of one video: "
                "a contact sheet PNG and per-frame hand boxes JSON.")
    ap.add_argument("video", help="video file or frame folder")
    ap.add_argument("--pose", help=".pose file (default: <stem>.pose beside the video, or in --pose-dir)")
    ap.add_argument("--pose-dir", help="folder holding <stem>.pose files")
    ap.add_argument("--out", required=True, help="contact sheet PNG to write")
    ap.add_argument("--json", help="per-frame hand boxes JSON to write")
    ap.add_argument("--frames", type=int, default=8, help="frames on the sheet (default 8)")
    ap.add_argument("--max-frames", type=int, default=2000, help="decode at most this many frames")
    return ap


def inspect(argv: list[str]) -> int:
    from slt_llm.data.inspect import inspect_video

    a = inspect_parser().parse_args(argv)
    info = inspect_video(a.video, a.out, pose=a.pose, pose_dir=a.pose_dir, json_path=a.json,
                         frames=a.frames, max_frames=a.max_frames)
    if info["pose"] is None:
        print(f"{a.video}: {len(info['frames'])} frames at {info['fps']:.2f} fps, {info['width']}x{info['height']}; "
              f"no keypoints found, frames only (hand boxes need keypoints: pass --pose FILE or run "
              f"`slt-llm extract {a.video} --extractor-model FILE`); sheet -> {a.out}"
              + (f", frames -> {a.json}" if a.json else ""))
        return 0
    seen = [sum(f[s] is not None for f in info["frames"]) for s in ("left", "right")]
    print(f"{a.video}: {len(info['frames'])} frames at {info['fps']:.2f} fps, {info['layout']} keypoints; "
          f"hand boxes left {seen[0]}, right {seen[1]}; sheet -> {a.out}" + (f", boxes -> {a.json}" if a.json else ""))
    return 0


# --------------------------------------------------------------------- extract
def extract_parser() -> Parser:
    from slt_llm.data.extract import BACKENDS, EXTRACTORS

    ap = Parser(prog="slt-llm extract", description="extract keypoints into .pose sidecars")
    ap.add_argument("input", nargs="?", help="video file, frame folder, or folder of videos")
    ap.option("--extractor-model", old=["--model"],
              help="extractor model file (mediapipe: holistic_landmarker.task)")
    ap.option("--extractor-backend", old=["--backend"], default="mediapipe",
              help=f"extractor backend: {', '.join(sorted(set(BACKENDS) | set(EXTRACTORS)))} (default mediapipe; "
                   f"only mediapipe runs here, the others run outside and come in with slt-llm import-pose); "
                   f"'list' prints what each needs and what is installed")
    ap.option("--out", old=["--out-dir"], help="write <stem>.pose here instead of beside each video")
    ap.add_argument("--overwrite", action="store_true", help="extract even when a sidecar exists")
    return ap


def extract(argv: list[str]) -> int:
    from slt_llm.data.extract import ensure_pose, make_extractor, video_inputs
    from slt_llm.errors import InputError, SLTError

    a = extract_parser().parse_args(argv)
    if a.extractor_backend == "list":
        from slt_llm.data.extract import backend_table

        for name, status, needs in backend_table():
            print(f"{name:<12} {status:<24} {needs}")
        return 0
    if not a.input:
        extract_parser().error("the input (video file, frame folder or folder of videos) is required")
    extractor = make_extractor(a.extractor_backend, model=a.extractor_model)  # a backend it cannot run: one line
    src = Path(a.input)
    if not src.exists():
        raise InputError(src, "input not found")
    videos = video_inputs(src)
    failed = 0
    for v in videos:
        try:
            out = ensure_pose(v, extractor, cache=not a.overwrite, out_dir=a.out)
            print(f"{v} -> {out}")
        except SLTError as e:
            if len(videos) == 1:
                raise
            failed += 1
            print(f"skipped: {e}")
    if len(videos) > 1:
        print(f"{len(videos) - failed}/{len(videos)} videos have keypoints" + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


# --------------------------------------------------------------------- import-pose
def import_pose_parser() -> Parser:
    from slt_llm.data.import_pose import LAYOUTS

    ap = Parser(prog="slt-llm import-pose",
                description="Convert keypoints from another extractor (rtmlib / MMPose / Uni-Sign COCO-WholeBody-133 "
                            "arrays as .npy, .npz or .pkl; AlphaPose-133 or MMPose JSON; a folder of OpenPose JSON "
                            "files) into a .pose file the other commands read. With several people in a frame the "
                            "one with the highest mean keypoint score is kept.")
    ap.add_argument("input", help="keypoint file (.npy .npz .pkl .json) or folder of OpenPose *_keypoints.json")
    ap.add_argument("--out", required=True,
                    help="the .pose file to write (beside the video as <video name>.pose to be found automatically)")
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default=None,
                    help="keypoint layout: coco-wholebody (133 points) or openpose (137: BODY_25 + face + hands); "
                         "default: from the point count")
    ap.add_argument("--width", type=int, default=None, help="frame width in pixels the keypoints refer to")
    ap.add_argument("--height", type=int, default=None, help="frame height in pixels the keypoints refer to")
    ap.add_argument("--fps", type=float, default=None, help="frame rate of the keypoint track")
    ap.add_argument("--video", default=None,
                    help="the video the keypoints come from: fills width, height and fps not given or recorded "
                         "in the file, and checks its frame count and rate against the keypoints")
    return ap


def import_pose(argv: list[str]) -> int:
    from slt_llm.data.import_pose import import_pose as convert

    a = import_pose_parser().parse_args(argv)
    r = convert(a.input, a.out, layout=a.layout, width=a.width, height=a.height, fps=a.fps, video=a.video)
    print(f"{a.input} ({r.source_format}) -> {r.out}: {r.frames} frames, {r.layout}, {r.width}x{r.height} at "
          f"{r.fps:.4g} fps; left hand in {r.left_hand_frames}/{r.frames} frames, right hand in "
          f"{r.right_hand_frames}/{r.frames}")
    for note in r.notes:
        print(f"  note: {note}")
    return 0


# --------------------------------------------------------------------- describe
def describe_parser() -> Parser:
    from slt_llm.data.describe import SEGMENT

    ap = Parser(prog="slt-llm describe",
                description="Describe each video's hand movements (from its keypoints) into a JSONL file.")
    ap.add_argument("input", help="manifest (.jsonl), folder of videos / .pose files, or one video")
    ap.add_argument("--out", required=True, help="descriptions JSONL to write")
    ap.add_argument("--pose-dir", default=None, help=POSE_DIR_HELP)
    ap.add_argument("--segment", type=int, default=SEGMENT, help=f"keypoint frames per segment (default {SEGMENT})")
    return ap


def describe(argv: list[str]) -> int:
    from slt_llm.data.describe import describe_samples, input_samples, write_descriptions
    from slt_llm.errors import InputError, SLTError

    a = describe_parser().parse_args(argv)
    if a.segment < 2:
        raise InputError("--segment", f"must be >= 2 frames, got {a.segment}")
    samples = input_samples(Path(a.input), a.pose_dir)
    rows, errors = describe_samples(samples, segment=a.segment, pose_dir=a.pose_dir)
    if len(samples) == 1 and errors:
        raise SLTError(errors[0])  # one input: its error is the command's error (one line)
    write_descriptions(a.out, rows)
    for e in errors:
        print(f"skipped: {e}")
    print(f"wrote {a.out}: {len(rows)} description(s)" + (f", {len(errors)} skipped" if errors else ""))
    return 1 if errors else 0


# --------------------------------------------------------------------- hand-teacher
def hand_teacher_parser() -> Parser:
    ap = Parser(prog="slt-llm hand-teacher",
                description="Write built-in hand-teacher sidecars (<stem>.hands.npz) from the keypoints.")
    ap.add_argument("input", help="manifest (.jsonl), folder of videos / .pose files, or one video")
    ap.add_argument("--pose-dir", default=None, help=POSE_DIR_HELP)
    ap.option("--out", old=["--out-dir"], default=None, help="write the sidecars here instead of beside each video")
    ap.add_argument("--overwrite", action="store_true", help="rewrite existing sidecars")
    return ap


def hand_teacher(argv: list[str]) -> int:
    from slt_llm.data.describe import input_samples
    from slt_llm.data.hand_teacher import write_teacher_sidecars
    from slt_llm.errors import SLTError

    a = hand_teacher_parser().parse_args(argv)
    samples = input_samples(Path(a.input), a.pose_dir)
    done, skipped, errors = write_teacher_sidecars(samples, pose_dir=a.pose_dir, out_dir=a.out,
                                                   overwrite=a.overwrite)
    if len(samples) == 1 and errors:
        raise SLTError(errors[0])
    for e in errors:
        print(f"skipped: {e}")
    print(f"hand-teacher: wrote {done} sidecar(s)" + (f", {skipped} already there" if skipped else "")
          + (f", {len(errors)} failed" if errors else ""))
    return 1 if errors else 0


PARSERS = {"prepare": prepare_parser, "inspect": inspect_parser, "extract": extract_parser,
           "import-pose": import_pose_parser, "describe": describe_parser, "hand-teacher": hand_teacher_parser}
RUN = {"prepare": prepare, "inspect": inspect, "extract": extract, "import-pose": import_pose, "describe": describe,
       "hand-teacher": hand_teacher}
