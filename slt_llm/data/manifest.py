"""JSONL manifests: one sample per line.

A row is a JSON object::

    {"id": "train_0001", "video": "videos/train_0001.mp4", "text": "the man buys a car",
     "pose": "videos/train_0001.pose", "signer": "s1", "start": 1.5, "end": 4.0}

``id`` and ``video`` are required; ``text`` is required unless the reader is
told otherwise (``require_text=False``, e.g. for translation input);
``pose``, ``signer``, ``start``/``end`` (seconds, for clips cut from a longer
video) are optional. Any other keys are kept in ``Sample.extra`` and written
back unchanged (the synthetic corpus stores its gloss sequence there).

Paths (``video``, ``pose``) are relative to the manifest's folder (its
*root*) unless absolute. A path may not leave the root: not through ``..``,
not as an absolute path elsewhere, not through a symlink inside the root that
points outside it (the path's real location, ``os.path.realpath``, must lie
under the root's real location). Such a row is refused with one line naming
the manifest and the line, unless the reader is told
``allow_outside_root=True`` (``data.allow_outside_root=true`` in a run
config, ``--allow-outside-root`` on ``slt-llm translate``), e.g. for the
manifests ``slt-llm prepare`` writes next to a dataset kept elsewhere.
``read_manifest`` returns ``Sample`` objects with absolute, normalised paths
(not symlink-resolved); ``write_manifest`` writes paths relative to the
manifest's folder when they lie inside it.

Cost: reading is O(rows) JSON parsing plus path normalisation and one
``realpath`` per path (a few ``lstat`` calls, no file is opened besides the
manifest itself); existence of the video/pose files is checked later, per
sample, by the dataset.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from slt_llm.errors import InputError

KNOWN_KEYS = ("id", "video", "text", "pose", "signer", "start", "end")


@dataclass
class Sample:
    """One manifest row with absolute paths.

    ``video`` is a video file or a frame folder; ``text`` is the target
    sentence (``""`` when the manifest has none and text was not required);
    ``start``/``end`` are seconds inside ``video`` (None = from the start / to
    the end); ``extra`` holds the row's other keys.
    """

    id: str
    video: str
    text: str = ""
    pose: Optional[str] = None
    signer: Optional[str] = None
    start: Optional[float] = None
    end: Optional[float] = None
    extra: dict = field(default_factory=dict)


class Manifest(list):
    """``list[Sample]`` read from a manifest, with ``.errors`` and ``.path``.

    ``errors`` is a list of ``InputError`` for the rows that were skipped
    (empty unless ``on_error="skip"`` was used); each message names the
    manifest file and the line number.
    """

    def __init__(self, samples: Iterable[Sample] = (), errors: Optional[list] = None, path: str = ""):
        super().__init__(samples)
        self.errors: list[InputError] = list(errors or [])
        self.path = path


_ALLOW_HINT = "(pass --allow-outside-root / data.allow_outside_root=true if you trust this manifest)"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _resolve(base: Path, value, key: str, where: str, allow_outside_root: bool = False) -> str:
    """``value`` -> absolute normalised path; ``base`` is the manifest's
    folder, already symlink-resolved. Outside ``base`` -> ``InputError``
    unless ``allow_outside_root``."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(where, f"{key!r} must be a non-empty string path")
    p = Path(value)
    if p.is_absolute():
        out = os.path.normpath(str(p))
    else:
        norm = os.path.normpath(value)
        if norm == ".." or norm.startswith(".." + os.sep) or norm.startswith("../"):
            if not allow_outside_root:
                raise InputError(where, f"{key} path {value!r} leaves the manifest's folder through '..' {_ALLOW_HINT}")
        out = os.path.normpath(str(base / norm))
    if not allow_outside_root:
        root = str(base)
        if not _inside(os.path.realpath(out), root):
            if p.is_absolute() and not _inside(out, root):
                raise InputError(where, f"{key} path {value!r} is an absolute path outside the manifest's folder {root} {_ALLOW_HINT}")
            raise InputError(where, f"{key} path {value!r} leads outside the manifest's folder {root} through a symlink "
                             f"(to {os.path.realpath(out)}) {_ALLOW_HINT}")
    return out


def _seconds(value, key: str, where: str) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(where, f"{key} must be a number of seconds, got {value!r}") from None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise InputError(where, f"{key} must be a finite, non-negative number of seconds, got {value!r}")
    return value


def parse_row(row, base: Path, where: str, *, require_text: bool = True, allow_outside_root: bool = False) -> Sample:
    """One decoded JSON row -> ``Sample`` (raises ``InputError(where, ...)``);
    ``base``: the manifest's folder (symlink-resolved), see ``_resolve``."""
    if not isinstance(row, dict):
        raise InputError(where, f"expected a JSON object, got {type(row).__name__}")
    for key in ("id", "video"):
        if key not in row or row[key] is None or (isinstance(row[key], str) and not row[key].strip()):
            raise InputError(where, f"missing {key!r}")
    sid = row["id"]
    if isinstance(sid, bool) or not isinstance(sid, (str, int)):
        raise InputError(where, f"'id' must be a string, got {sid!r}")
    sid = str(sid)
    video = _resolve(base, row["video"], "video", where, allow_outside_root)
    pose = _resolve(base, row["pose"], "pose", where, allow_outside_root) if row.get("pose") is not None else None
    text = row.get("text")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError(where, f"'text' must be a string, got {type(text).__name__}")
    if require_text and not text.strip():
        raise InputError(where, f"empty sentence for id {sid!r}")
    start = _seconds(row.get("start"), "start", where)
    end = _seconds(row.get("end"), "end", where)
    if start is not None and end is not None and start >= end:
        raise InputError(where, f"start ({start}) must be before end ({end}) for id {sid!r}")
    signer = row.get("signer")
    extra = {k: v for k, v in row.items() if k not in KNOWN_KEYS}
    return Sample(
        id=sid, video=video, text=text, pose=pose,
        signer=None if signer is None else str(signer), start=start, end=end, extra=extra,
    )


def jsonl_objects(path, missing: str):
    """``(line number, row dict)`` of every non-blank line of a JSONL file. Raises
    ``InputError(path, ...)`` when the file is missing (``missing`` says what it is and how
    to get one) and, naming the line, for a line that is not JSON or not an object."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, missing)
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(p, f"line {n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise InputError(p, f"line {n}: not a JSON object")
        yield n, row


def read_manifest(path, *, require_text: bool = True, on_error: str = "raise",
                  allow_outside_root: bool = False) -> Manifest:
    """Read a JSONL manifest into a ``Manifest`` (a ``list[Sample]``).

    on_error: ``"raise"`` stops at the first bad row with an ``InputError``
    whose message is ``"<manifest>:<line>: <problem>"``; ``"skip"`` leaves bad
    rows out and records those errors in the result's ``.errors``. Blank lines
    are ignored. Bad rows: invalid JSON, missing id/video, a duplicate id (the
    later row is the bad one), a path leaving the manifest's folder (``..``,
    absolute elsewhere, or a symlink pointing out; all allowed with
    ``allow_outside_root``), an empty sentence (when ``require_text``),
    start >= end.
    A missing or unreadable manifest file always raises.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "manifest not found" if not path.exists() else "manifest is not a file")
    base = path.resolve().parent
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(path, "manifest is not UTF-8 text") from None
    out = Manifest(path=str(path))
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(where, f"invalid JSON ({e.msg} at column {e.colno})") from None
            sample = parse_row(row, base, where, require_text=require_text, allow_outside_root=allow_outside_root)
            if sample.id in seen:
                raise InputError(where, f"duplicate id {sample.id!r} (first on line {seen[sample.id]})")
            seen[sample.id] = lineno
            out.append(sample)
        except InputError as err:
            if on_error == "raise":
                raise
            out.errors.append(err)
    return out


def _rel(p: Optional[str], base: Path) -> Optional[str]:
    if p is None:
        return None
    ap = Path(os.path.abspath(p))
    try:
        return ap.relative_to(base).as_posix()
    except ValueError:
        return str(ap)


def sample_to_row(sample: Sample, base) -> dict:
    """``Sample`` -> JSON row with paths relative to ``base`` when inside it."""
    base = Path(os.path.abspath(base))
    row: dict = {"id": sample.id, "video": _rel(sample.video, base), "text": sample.text}
    if sample.pose is not None:
        row["pose"] = _rel(sample.pose, base)
    if sample.signer is not None:
        row["signer"] = sample.signer
    if sample.start is not None:
        row["start"] = float(sample.start)
    if sample.end is not None:
        row["end"] = float(sample.end)
    for k, v in sample.extra.items():
        if k not in row:
            row[k] = v
    return row


def write_manifest(path, samples: Iterable[Sample]) -> Path:
    """Write samples as JSONL, atomically (temp file in the same folder + rename).

    Paths inside the manifest's folder are written relative to it, others
    absolute. Sample paths that are relative are taken relative to the current
    directory. Returns the manifest path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(sample_to_row(s, base), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
