"""``slt-llm prepare``: official annotation files -> ``OUT/{train,dev,test}.jsonl``.

Datasets and the files read (``--root`` is the dataset's top folder):

phoenix2014t
    ``PHOENIX-2014-T.{train,dev,test}.corpus.csv`` (in ``ROOT/annotations/manual``
    or ``ROOT``), ``|``-separated with header
    ``name|video|start|end|speaker|orth|translation``. The video column is a
    frame-folder glob (``<name>/1/*.png``) under
    ``ROOT/features/fullFrame-210x260px/<split>/`` (``--video-dir`` replaces
    ``ROOT/features/fullFrame-210x260px``); start/end are -1 (whole folder,
    frames at 25 fps). text = translation, signer = speaker, gloss = orth.
csl-daily
    ``split_1.txt`` (``name|split`` lines, header optional) and the sentence
    labels (in ``ROOT/sentence_label`` or ``ROOT``): ``video_map.txt``
    (``|``-separated with a header naming ``name`` and ``char`` and/or
    ``word``; the sentence is the characters joined without spaces), or a
    ``labels.tsv``/``labels.csv`` with columns ``name`` and ``text``, or
    ``csl2020ct_v2.pkl``. The pickle is read with a loader that allows no
    class or function at all (plain dicts/lists/strings/numbers only), so it
    cannot run code; a pickle that needs anything else is refused with a
    message saying how to convert it. Frame folders:
    ``ROOT/sentence/frames_512x512/<name>/`` (``--video-dir`` replaces it).
how2sign
    ``how2sign_realigned_{train,val,test}.csv`` (tab-separated, columns
    VIDEO_ID, VIDEO_NAME, SENTENCE_ID, SENTENCE_NAME, START_REALIGNED,
    END_REALIGNED, SENTENCE; in ``ROOT`` or one or two folders below); val
    becomes dev. A pre-cut ``<SENTENCE_NAME>.mp4`` in ``--clip-dir`` (default
    ``ROOT/clips``) or in the video folder is used as is; otherwise the clip
    is cut from ``<video dir>/<VIDEO_NAME>.mp4`` (default ``ROOT/raw_videos``)
    by start/end seconds.

Rows whose video (or frame folder) is missing or empty, or whose sentence is
empty, are skipped and counted (``--keep-missing`` keeps rows whose video is
absent, e.g. to prepare manifests before copying the videos). With
``--pose-dir``, keypoint files found there are recorded in the rows:
``<name>.pose`` (PHOENIX-2014T, CSL-Daily; for PHOENIX pass it here, since its
frame folders are all called ``1`` and the by-stem lookup at load time cannot
find them), ``<SENTENCE_NAME>.pose`` for a pre-cut How2Sign clip and
``<VIDEO_NAME>.pose`` for a raw How2Sign video.
A summary is printed and written to ``OUT/prepare_report.json``. The rows
point at the dataset where it lies, usually outside ``OUT``: manifest readers
refuse such paths unless told (``data.allow_outside_root=true``,
``--allow-outside-root``; see ``slt_llm.data.manifest``); the report counts
them (``rows_outside_out``) and the command prints a note.
Cost: one directory listing per frame folder (to check it is not empty).
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
from pathlib import Path
from typing import Optional

from slt_llm.data.manifest import Sample, write_manifest
from slt_llm.errors import InputError

SPLITS = ("train", "dev", "test")
IMAGE_EXT = (".png", ".jpg", ".jpeg")


class Counter:
    """Per-split tally of written and skipped rows."""

    def __init__(self):
        self.written = 0
        self.missing_video = 0
        self.empty_text = 0
        self.examples: list = []  # first few skipped (id, reason)

    def skip(self, sid: str, reason: str, kind: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 5:
            self.examples.append([sid, reason])

    def as_dict(self) -> dict:
        return {"written": self.written, "skipped_missing_video": self.missing_video,
                "skipped_empty_text": self.empty_text, "skipped_examples": self.examples}


def _find(root: Path, names, subdirs=("",)) -> Optional[Path]:
    for sub in subdirs:
        for n in names:
            p = root / sub / n
            if p.is_file():
                return p
    for n in names:  # one or two levels below the root
        for pat in (f"*/{n}", f"*/*/{n}"):
            hits = sorted(root.glob(pat))
            if hits:
                return hits[0]
    return None


def _frame_folder_ok(p: Path) -> bool:
    try:
        return p.is_dir() and any(e.is_file() and e.name.lower().endswith(IMAGE_EXT) for e in os.scandir(p))
    except OSError:
        return False


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text") from None


def _columns(path: Path, header: list, required, hint: str) -> dict:
    """Column index of each ``required`` name in an annotation file's ``header``;
    InputError naming the missing ones (and ``hint``) otherwise."""
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(path, f"header lacks column(s) {', '.join(missing)} ({hint})")
    return {c: header.index(c) for c in required}


def _pose_for(pose_dir: Optional[Path], sid: str) -> Optional[str]:
    if pose_dir is None:
        return None
    p = pose_dir / f"{sid}.pose"
    return str(p) if p.is_file() else None


def _add(samples, counter: Counter, sample: Sample, video_ok: bool, keep_missing: bool) -> None:
    if not sample.text.strip():
        counter.skip(sample.id, "empty sentence", "empty_text")
        return
    if not video_ok and not keep_missing:
        counter.skip(sample.id, f"video not found or empty: {sample.video}", "missing_video")
        return
    samples.append(sample)
    counter.written += 1


# ------------------------------------------------------------------ PHOENIX-2014T
PHOENIX_COLUMNS = ["name", "video", "start", "end", "speaker", "orth", "translation"]


def prepare_phoenix(root: Path, video_dir: Optional[Path], pose_dir: Optional[Path], keep_missing: bool):
    frames_root = video_dir or root / "features" / "fullFrame-210x260px"
    out = {}
    for split in SPLITS:
        name = f"PHOENIX-2014-T.{split}.corpus.csv"
        path = _find(root, [name], ("annotations/manual", "annotations", ""))
        if path is None:
            raise InputError(root / "annotations" / "manual" / name, "annotation file not found under --root")
        lines = _read_text(path).splitlines()
        if not lines:
            raise InputError(path, "empty annotation file")
        header = [h.strip().lower() for h in lines[0].split("|")]
        col = _columns(path, header, PHOENIX_COLUMNS, f"expected {'|'.join(PHOENIX_COLUMNS)}")
        samples, counter, seen = [], Counter(), set()
        for lineno, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            f = line.split("|")
            if len(f) != len(header):
                raise InputError(f"{path}:{lineno}", f"expected {len(header)} '|'-separated fields, got {len(f)}")
            sid = f[col["name"]].strip()
            if sid in seen:
                raise InputError(f"{path}:{lineno}", f"duplicate name {sid!r}")
            seen.add(sid)
            glob = f[col["video"]].strip() or f"{sid}/1/*.png"
            rel = Path(glob)
            folder_rel = rel.parent if any(ch in rel.name for ch in "*?[") else rel
            if ".." in folder_rel.parts or folder_rel.is_absolute():
                raise InputError(f"{path}:{lineno}", f"video column {glob!r} leaves the frame folder")
            folder = frames_root / split / folder_rel
            if not _frame_folder_ok(folder) and _frame_folder_ok(frames_root / split / sid):
                folder = frames_root / split / sid
            start = float(f[col["start"]]) if f[col["start"]].strip() not in ("", "-1") else None
            end = float(f[col["end"]]) if f[col["end"]].strip() not in ("", "-1") else None
            s = Sample(id=sid, video=str(folder), text=f[col["translation"]].strip(),
                       pose=_pose_for(pose_dir, sid), signer=f[col["speaker"]].strip() or None,
                       start=start, end=end, extra={"gloss": f[col["orth"]].strip()})
            _add(samples, counter, s, _frame_folder_ok(folder), keep_missing)
        out[split] = (samples, counter)
    return out


# ------------------------------------------------------------------ CSL-Daily
class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler that resolves no class or function: only plain containers,
    strings and numbers can be built, so loading cannot run code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _convert_hint(path: Path) -> str:
    return (f"convert it once, where you trust the file, to {path.parent / 'labels.tsv'} with columns "
            "name<TAB>text (e.g. python -c \"import pickle,csv,sys; d=pickle.load(open('csl2020ct_v2.pkl','rb'));"
            " w=csv.writer(open('labels.tsv','w'),delimiter='\\t'); w.writerow(['name','text']);"
            " [w.writerow([r['name'], ''.join(r['label_char'])]) for r in d['info']]\")")


def _csl_labels_from_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = _NoGlobalsUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise InputError(path, f"refusing to unpickle: it needs more than plain data ({e}); {_convert_hint(path)}") from None
    info = data.get("info") if isinstance(data, dict) else data
    if not isinstance(info, list) or not all(isinstance(r, dict) and "name" in r for r in info):
        raise InputError(path, "unexpected structure (expected {'info': [{'name': ..., 'label_char': [...]}]}); "
                               + _convert_hint(path))
    out = {}
    for r in info:
        chars = r.get("label_char") or r.get("label_word") or r.get("text") or ""
        out[str(r["name"])] = "".join(chars) if isinstance(chars, (list, tuple)) else str(chars)
    return out


def _csl_labels(root: Path) -> tuple[dict, Path]:
    subdirs = ("sentence_label", "")
    p = _find(root, ["video_map.txt"], subdirs)
    if p is not None:
        lines = [ln for ln in _read_text(p).splitlines() if ln.strip()]
        header = [h.strip().lower() for h in lines[0].split("|")] if lines else []
        if "name" not in header or not ({"char", "word"} & set(header)):
            raise InputError(p, "expected a '|'-separated header with 'name' and 'char' or 'word' columns")
        ci = header.index("char") if "char" in header else header.index("word")
        ni = header.index("name")
        out = {}
        for lineno, ln in enumerate(lines[1:], start=2):
            f = ln.split("|")
            if len(f) != len(header):
                raise InputError(f"{p}:{lineno}", f"expected {len(header)} fields, got {len(f)}")
            out[f[ni].strip()] = "".join(f[ci].split())
        return out, p
    for n, delim in (("labels.tsv", "\t"), ("labels.csv", ",")):
        p = _find(root, [n], subdirs)
        if p is not None:
            rows = list(csv.reader(io.StringIO(_read_text(p)), delimiter=delim))
            header = [h.strip().lower() for h in rows[0]] if rows else []
            if "name" not in header or "text" not in header:
                raise InputError(p, "expected a header with 'name' and 'text' columns")
            ni, ti = header.index("name"), header.index("text")
            return {r[ni].strip(): r[ti].strip() for r in rows[1:] if len(r) > max(ni, ti)}, p
    p = _find(root, ["csl2020ct_v2.pkl"], subdirs)
    if p is not None:
        return _csl_labels_from_pickle(p), p
    raise InputError(root / "sentence_label", "no sentence labels found (video_map.txt, labels.tsv/.csv or csl2020ct_v2.pkl)")


def prepare_csl_daily(root: Path, video_dir: Optional[Path], pose_dir: Optional[Path], keep_missing: bool):
    frames_root = video_dir or root / "sentence" / "frames_512x512"
    split_path = _find(root, ["split_1.txt"], ("sentence_label", ""))
    if split_path is None:
        raise InputError(root / "sentence_label" / "split_1.txt", "split file not found under --root")
    labels, label_path = _csl_labels(root)
    splits: dict[str, list] = {s: [] for s in SPLITS}
    for lineno, ln in enumerate(_read_text(split_path).splitlines(), start=1):
        if not ln.strip():
            continue
        f = [x.strip() for x in ln.split("|")]
        if len(f) != 2:
            raise InputError(f"{split_path}:{lineno}", f"expected 'name|split', got {ln!r}")
        if lineno == 1 and f[0].lower() == "name":
            continue
        split = {"val": "dev"}.get(f[1].lower(), f[1].lower())
        if split not in splits:
            raise InputError(f"{split_path}:{lineno}", f"unknown split {f[1]!r} (train, dev, test)")
        splits[split].append(f[0])
    out = {}
    for split in SPLITS:
        samples, counter = [], Counter()
        for name in splits[split]:
            if name not in labels:
                counter.skip(name, f"no sentence in {label_path.name}", "empty_text")
                continue
            folder = frames_root / name
            s = Sample(id=name, video=str(folder), text=labels[name], pose=_pose_for(pose_dir, name))
            _add(samples, counter, s, _frame_folder_ok(folder), keep_missing)
        out[split] = (samples, counter)
    return out


# ------------------------------------------------------------------ How2Sign
H2S_COLUMNS = ["VIDEO_ID", "VIDEO_NAME", "SENTENCE_ID", "SENTENCE_NAME", "START_REALIGNED", "END_REALIGNED", "SENTENCE"]


def prepare_how2sign(root: Path, video_dir: Optional[Path], pose_dir: Optional[Path], keep_missing: bool,
                     clip_dir: Optional[Path] = None):
    raw_dir = video_dir or root / "raw_videos"
    clip_dir = clip_dir or root / "clips"
    out = {}
    for split, fname in (("train", "train"), ("dev", "val"), ("test", "test")):
        name = f"how2sign_realigned_{fname}.csv"
        path = _find(root, [name], ("", "annotations", "text"))
        if path is None:
            raise InputError(root / name, "annotation file not found under --root")
        rows = list(csv.reader(io.StringIO(_read_text(path)), delimiter="\t", quoting=csv.QUOTE_NONE))
        if not rows:
            raise InputError(path, "empty annotation file")
        header = [h.strip() for h in rows[0]]
        col = _columns(path, header, H2S_COLUMNS, "is it tab-separated?")
        samples, counter, seen = [], Counter(), set()
        for lineno, r in enumerate(rows[1:], start=2):
            if not any(x.strip() for x in r):
                continue
            if len(r) < len(header):
                raise InputError(f"{path}:{lineno}", f"expected {len(header)} tab-separated fields, got {len(r)}")
            sid = r[col["SENTENCE_NAME"]].strip()
            if sid in seen:
                raise InputError(f"{path}:{lineno}", f"duplicate SENTENCE_NAME {sid!r}")
            seen.add(sid)
            try:
                start, end = float(r[col["START_REALIGNED"]]), float(r[col["END_REALIGNED"]])
            except ValueError:
                raise InputError(f"{path}:{lineno}", "START_REALIGNED/END_REALIGNED must be seconds") from None
            if not 0 <= start < end:
                raise InputError(f"{path}:{lineno}", f"start ({start}) must be >= 0 and before end ({end})")
            text = r[col["SENTENCE"]].strip()
            pre = next((p for p in (clip_dir / f"{sid}.mp4", raw_dir / f"{sid}.mp4") if p.is_file()), None)
            if pre is not None:
                video, s0, s1 = pre, None, None
            else:
                video, s0, s1 = raw_dir / f"{r[col['VIDEO_NAME']].strip()}.mp4", start, end
            ok = video.is_file() and video.stat().st_size > 0
            # keypoints belong to the file that is read: <SENTENCE_NAME>.pose for a clip,
            # <VIDEO_NAME>.pose for a raw video (its track starts at the video's time 0)
            s = Sample(id=sid, video=str(video), text=text, pose=_pose_for(pose_dir, video.stem), start=s0, end=s1,
                       extra={"video_id": r[col["VIDEO_ID"]].strip(), "sentence_id": r[col["SENTENCE_ID"]].strip()})
            _add(samples, counter, s, ok, keep_missing)
        out[split] = (samples, counter)
    return out


# ------------------------------------------------------------------ entry points
DATASETS = {"phoenix2014t": prepare_phoenix, "csl-daily": prepare_csl_daily, "how2sign": prepare_how2sign}


def prepare(dataset: str, root, out, *, video_dir=None, pose_dir=None, clip_dir=None,
            keep_missing: bool = False) -> dict:
    """Convert ``dataset`` under ``root`` to ``out/{train,dev,test}.jsonl``.

    Returns the report: ``{split: {"written", "skipped_missing_video",
    "skipped_empty_text", "skipped_examples"}, "dataset", "root", "out"}``
    (also written to ``out/prepare_report.json``). Raises ``InputError`` for a
    missing or malformed annotation file (naming it, and the line).
    """
    if dataset not in DATASETS:
        raise InputError(dataset, f"unknown dataset (choose from {', '.join(DATASETS)})")
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputError(root, "--root is not a folder")
    vd = Path(video_dir).resolve() if video_dir else None
    pd_ = Path(pose_dir).resolve() if pose_dir else None
    kw = {"clip_dir": Path(clip_dir).resolve() if clip_dir else None} if dataset == "how2sign" else {}
    result = DATASETS[dataset](root, vd, pd_, keep_missing, **kw)
    out = Path(out)
    report: dict = {"dataset": dataset, "root": str(root), "out": str(out.resolve())}
    base = os.path.realpath(out)
    outside = 0
    for split in SPLITS:
        samples, counter = result[split]
        write_manifest(out / f"{split}.jsonl", samples)
        report[split] = counter.as_dict()
        outside += sum(1 for s_ in samples if any(
            p_ is not None and not (os.path.realpath(p_) + os.sep).startswith(base + os.sep) for p_ in (s_.video, s_.pose)))
    # rows pointing outside OUT are refused by manifest readers unless the user allows it
    report["rows_outside_out"] = outside
    tmp = out / ".prepare_report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    os.replace(tmp, out / "prepare_report.json")
    return report
