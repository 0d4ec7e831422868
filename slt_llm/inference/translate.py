"""``slt-llm translate``: resumable batch translation of a folder of videos or a manifest.

    slt-llm translate --model DIR --input PATH --out FILE [--batch-size B]
        [--num-beams N] [--max-new-tokens T] [--pose-dir DIR] [--device cpu|cuda]
        [--num-workers W] [--extractor-model FILE] [--extractor-backend NAME]
        [--llm DIR] [--clip KEY=VALUE ...] [--retry-errors] [--allow-outside-root]
        [--no-progress]

What happens, in order:

1. The model folder is opened once (``open_model_folder``: checked for
   completeness, ``meta.json``, ``slt_config.yaml`` and the clip settings
   read once; the same object later builds the model) and the keypoint
   extractor (if asked for) is built before any video is opened: a problem
   is one ``ConfigError``/``InputError`` line. Clip settings come from the
   folder (``clip_config_of``).
2. Inputs are listed: a folder is searched recursively for videos of the
   supported containers and frame folders (``slt_llm.data.video.find_inputs``,
   stable sorted order; id = path relative to the folder without extension);
   a ``.jsonl`` file is read as a manifest (``text`` optional).
3. The output (JSONL, or CSV when the name ends in ``.csv``) is read if it
   exists: ids already there are skipped (a partial last line left by a kill
   is cut off first, so that input is redone; no id is ever written twice).
   With ``--retry-errors`` the error rows of the inputs are first removed
   (one atomic rewrite), so those inputs are translated again and their new
   rows take the place of the old ones.
4. Pending inputs are ordered by estimated frames (container metadata, no decoding)
   and cut into batches of similar length (``data.dataset.length_sorted_batches``,
   longest first); a DataLoader with ``num_workers`` processes
   decodes and crops (``SLTDataset``) single samples, every worker helping
   to fill each batch, while the main process collates and runs the model
   (on CPU with fewer torch threads while the workers hold the cores:
   ``compute_threads``); ``SLTModel.generate`` decodes with the KV cache
   (greedy or beam).
5. After each batch its rows are appended, flushed and fsync'ed, so an
   interruption (Ctrl-C, SIGKILL) loses at most the batch in flight. A sample
   that cannot be read gets a row with ``error`` (the one-line reason) and the
   run goes on; the exit status is 1 when any input failed. Inputs without
   keypoints go through the extractor in the worker (sidecar cache) when one
   is configured, else get an error row.

Under ``accelerate launch`` (or torchrun) with N processes each rank takes
every N-th pending input and writes ``OUTPUT.part-R`` (same format); at the end
rank 0 appends the shards' new rows to OUTPUT (ids already there are skipped,
so a merge is idempotent) and removes the shards. Leftover shards of an
interrupted run are merged first by the next run, whatever its process count.

Costs: one container probe per pending input (metadata only) for the length
ordering; decoding is the DataLoader's; memory is up to two batches of clips in flight
(over all workers) plus the model.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from slt_llm.errors import ConfigError, InputError, SLTError

FIELDS = ("id", "path", "translation", "error")


# --------------------------------------------------------------------- model folder
def check_model_dir(model_dir: str | Path, llm_path: Optional[str] = None) -> dict:
    """Raise ``ConfigError`` naming what is missing when ``model_dir`` is not a
    complete ``SLTModel.save_pretrained`` folder (or its base LLM is not
    found). Reads only small files; no weights are loaded. Delegates to
    ``slt_llm.models.slt_model.check_model_dir``."""
    from slt_llm.models.slt_model import check_model_dir as _check

    return _check(Path(model_dir), llm_path=llm_path)


def open_model_folder(model_dir: str | Path, llm_path: Optional[str] = None):
    """The model folder opened once for a run (``slt_llm.models.slt_model.open_model_folder``):
    checked like :func:`check_model_dir`, its clip settings read; a ``ModelFolder`` that
    :func:`clip_config_of` and ``SLTModel.from_pretrained`` take in place of the path."""
    from slt_llm.models.slt_model import open_model_folder as _open

    return _open(Path(model_dir), llm_path=llm_path)


def clip_config_of(model_dir, overrides: Optional[list] = None, *, warn: bool = False):
    """The ``ClipConfig`` the model was trained with (``config.read_clip_settings``:
    the folder's ``clip.yaml``), plus ``key=value`` overrides (e.g.
    ``max_frames=128``) coerced like any config value (``config.apply_overrides``);
    the defaults when the folder records none (with a warning when ``warn``).
    ``model_dir``: a folder, or a ``ModelFolder`` already opened (nothing is read again)."""
    from slt_llm.config import ClipConfig, apply_overrides, read_clip_settings

    if hasattr(model_dir, "clip") and hasattr(model_dir, "path"):  # a ModelFolder
        cfg, model_dir = model_dir.clip, model_dir.path
    else:
        cfg = read_clip_settings(model_dir)
    if cfg is None:
        if warn:
            print(f"translate: warning: {model_dir} records no clip settings; using the ClipConfig defaults "
                  "(pass --clip KEY=VALUE to match training)", file=sys.stderr)
        cfg = ClipConfig()
    return apply_overrides(cfg, overrides, prefix="data.clip")


# --------------------------------------------------------------------- inputs
@dataclass
class Item:
    """One input: ``id`` (output key), ``sample`` (a manifest ``Sample``)."""

    id: str
    path: str
    sample: object


@dataclass
class Inputs:
    items: list
    errors: list = field(default_factory=list)  # InputError of unreadable manifest rows


def list_inputs(path: str | Path, allow_outside_root: bool = False) -> Inputs:
    """Folder -> every video / frame folder under it (stable order); a file ->
    a JSONL manifest (``require_text=False``; bad rows, including paths outside
    the manifest's folder unless ``allow_outside_root``, are reported, not fatal)."""
    from slt_llm.data.manifest import Sample, read_manifest

    p = Path(path)
    if p.is_dir():
        from slt_llm.data.video import find_inputs

        found = [Path(f) for f in find_inputs(p)]
        rel = [f.relative_to(p) if f.is_relative_to(p) else Path(f.name) for f in found]
        stems = [str(r.with_suffix("")) if r.suffix and not (p / r).is_dir() else str(r) for r in rel]
        counts: dict = {}
        for s in stems:
            counts[s] = counts.get(s, 0) + 1
        items = []
        for f, r, s in zip(found, rel, stems):
            rid = (s if counts[s] == 1 else str(r)).replace(os.sep, "/")
            items.append(Item(rid, str(f), Sample(id=rid, video=str(f.resolve()), text="")))
        if not items:
            from slt_llm.data.video import VIDEO_EXTENSIONS

            raise InputError(p, f"no videos or frame folders found here ({' '.join(VIDEO_EXTENSIONS)}, or "
                                f"folders of images); nothing to translate")
        return Inputs(items)
    if not p.exists():
        raise InputError(p, "input not found (expected a folder of videos or a .jsonl manifest)")
    if p.suffix.lower() != ".jsonl":
        raise InputError(p, "input is a file but not a .jsonl manifest (pass a folder of videos or a manifest)")
    man = read_manifest(p, require_text=False, on_error="skip", allow_outside_root=allow_outside_root)
    items = [Item(s.id, s.video, s) for s in man]
    if not items and not getattr(man, "errors", []):
        raise InputError(p, "the manifest has no rows; nothing to translate")
    return Inputs(items, list(getattr(man, "errors", [])))


def length_batches(items: list, batch_size: int, clip_cfg) -> list:
    """Indices into ``items`` cut into batches of similar length, longest first
    (``data.dataset.length_sorted_batches``), from each input's estimated number
    of sampled frames (``data.dataset.estimate_frames``: metadata only)."""
    from slt_llm.data.dataset import estimate_frames, length_sorted_batches

    return length_sorted_batches([estimate_frames(it.sample, clip_cfg) for it in items], batch_size)


# --------------------------------------------------------------------- output rows
def _clean(s) -> Optional[str]:
    return None if s is None else " ".join(str(s).split())


class RowFile:
    """Append-only JSONL/CSV of translate rows with crash-safe appends.

    ``load()`` returns the rows already there (after cutting off a partial last
    line); ``append(rows)`` writes, flushes and fsyncs.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        name = self.path.name.lower()
        self.csv = name.endswith(".csv") or ".csv.part-" in name

    def check_writable(self, input_path: Optional[str | Path] = None) -> None:
        """Refuse, before anything is touched, an output we must not write into: the input itself,
        a folder, a device or other non-regular file, or an existing file that is not a translate
        output (any complete line that is not one of our rows: a manifest, metrics.json, ...).
        A missing or empty file is fine."""
        p = self.path
        if input_path is not None and p.exists() and Path(input_path).exists():
            if os.path.samefile(p, input_path):
                raise InputError(p, "is the input; give another output file")
        if not p.exists():
            if p.is_symlink():
                raise InputError(p, "is a dangling symbolic link; give a .jsonl or .csv file name")
            return
        if p.is_dir():
            raise InputError(p, "output is a folder; give a .jsonl or .csv file name")
        if not p.is_file():
            raise InputError(p, "is not a regular file (a device, a pipe, ...); give a .jsonl or .csv file name")
        self._parse(p.read_bytes())

    def _parse(self, data: bytes) -> tuple[list, int]:
        """(rows of the complete lines, byte length of those lines). InputError naming the file
        when a line is not a translate row; a partial last line must look like the start of one
        of our rows (a run killed mid-write), else the file is not ours either."""
        p = self.path
        cut = len(data) if not data or data.endswith(b"\n") else data.rfind(b"\n") + 1
        text = data[:cut].decode("utf-8", errors="replace")
        partial = data[cut:]
        rows: list = []
        if self.csv:
            if text.strip():
                reader = csv.DictReader(io.StringIO(text))
                if reader.fieldnames is None or list(reader.fieldnames) != list(FIELDS):
                    raise InputError(p, f"existing file is not a translate output (its CSV header is "
                                        f"{reader.fieldnames}, expected {list(FIELDS)}); refusing to write into it")
                for r in reader:
                    rows.append({k: (r.get(k) or None) for k in FIELDS})
            elif partial and not b"id,path,translation,error".startswith(partial[:26]):
                raise InputError(p, "existing file is not a translate output; refusing to write into it")
            return rows, cut
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(p, f"line {n} of the existing file is not JSON: not a translate output; "
                                    f"refusing to write into it (move it away)") from None
            if not isinstance(r, dict) or "id" not in r or "translation" not in r or set(r) - set(FIELDS):
                keys = ", ".join(sorted(r)) if isinstance(r, dict) else type(r).__name__
                raise InputError(p, f"line {n} of the existing file is not a translate row ({keys}); refusing "
                                    f"to write into a file translate did not make")
            rows.append(r)
        if partial.strip() and not partial.lstrip().startswith(b'{"id"'):
            raise InputError(p, "the last line of the existing file is not a translate row; refusing to write into it")
        return rows, cut

    def load(self) -> list:
        """The rows already there; a partial last row (a killed run) is cut off, only after the
        whole file was checked to be ours (:meth:`_parse`)."""
        p = self.path
        if not p.exists():
            return []
        if p.is_dir():
            raise InputError(p, "output is a folder; give a .jsonl or .csv file name")
        data = p.read_bytes()
        rows, cut = self._parse(data)
        if cut < len(data):
            with open(p, "r+b") as f:  # a partial row from a killed run: redo that input
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
        return rows

    def _encode(self, rows: list, header: bool) -> str:
        buf = io.StringIO()
        if self.csv:
            w = csv.DictWriter(buf, fieldnames=list(FIELDS), lineterminator="\n")
            if header:
                w.writeheader()
            for r in rows:
                # one physical line per row (so a partial last row can be cut off safely)
                w.writerow({k: ("" if r.get(k) is None else str(r.get(k)).replace("\r", " ").replace("\n", " ")) for k in FIELDS})
        else:
            for r in rows:
                out = {"id": r["id"], "path": r.get("path"), "translation": r.get("translation")}
                if r.get("error"):
                    out["error"] = r["error"]
                buf.write(json.dumps(out, ensure_ascii=False) + "\n")
        return buf.getvalue()

    def append(self, rows: list) -> None:
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        text = self._encode(rows, header=new)
        try:
            with open(self.path, "a", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            import errno

            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InputError(self.path, "no space left on the device; the rows finished so far are kept: "
                                            "free space and run the same command again") from None
            raise

    def rewrite(self, rows: list) -> None:
        """Replace the whole file by ``rows`` atomically (a unique temp file in
        the same folder, fsync'ed, then ``os.replace``): a kill leaves either
        the old file or the new one, never a mix."""
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(self._encode(rows, header=bool(rows)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def drop_error_rows(output: Path, ids: set) -> int:
    """``--retry-errors``: remove the error rows of ``ids`` from ``output``
    (one atomic rewrite) so that those inputs are pending again; their new
    rows are appended by the run, so an id never appears twice, and a run
    killed after this step simply redoes them on the next start. Returns the
    number of rows removed."""
    f = RowFile(output)
    rows = f.load()
    keep = [r for r in rows if not (r.get("error") and str(r["id"]) in ids)]
    if len(keep) != len(rows):
        f.rewrite(keep)
    return len(rows) - len(keep)


def _shard_path(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.name}.part-{rank}")


def merge_shards(output: Path) -> int:
    """Append rows of every ``OUTPUT.part-*`` whose id is not yet in OUTPUT,
    then delete the shards. Returns the number of rows added. Idempotent."""
    shards = sorted(output.parent.glob(output.name + ".part-*")) if output.parent.exists() else []
    if not shards:
        return 0
    final = RowFile(output)
    seen = {str(r["id"]) for r in final.load()}
    added = []
    for s in shards:
        for r in RowFile(s).load():
            if str(r["id"]) not in seen:
                seen.add(str(r["id"]))
                added.append(r)
    final.append(added)
    for s in shards:
        s.unlink()
    return len(added)


# --------------------------------------------------------------------- dataset
class _ExtractingDataset:
    """Wraps ``SLTDataset``: before loading a sample without keypoints, runs the
    configured extractor into ``pose_cache`` (a .pose sidecar cache)."""

    def __init__(self, base, samples, extractor, pose_dir: Optional[str], pose_cache: Optional[str]):
        self.base, self.samples = base, samples
        self.extractor, self.pose_dir, self.pose_cache = extractor, pose_dir, pose_cache

    def __len__(self):
        return len(self.base)

    def _has_pose(self, s) -> bool:
        from slt_llm.data.clip import find_pose

        try:
            find_pose(s.video, s.pose, self.pose_dir)  # the same lookup as load_clip's
            return True
        except InputError:
            return False

    def __getitem__(self, i):
        s = self.samples[i]
        if self.extractor is not None and not self._has_pose(s):
            try:
                from slt_llm.data.extract import ensure_pose

                s.pose = str(ensure_pose(s.video, self.extractor, out_dir=self.pose_cache))
            except Exception as e:  # one bad file must not stop the run
                msg = str(e) if isinstance(e, SLTError) else f"{s.video}: keypoint extraction failed ({type(e).__name__}: {e})"
                return {"error": _clean(msg), "id": s.id, "index": i}
        return self.base[i]


def _skipped(batch) -> list:
    """(id, message) pairs of the items ``collate_clips`` dropped."""
    out = []
    for s in batch.get("skipped", []) or []:
        if isinstance(s, dict):
            out.append((str(s.get("id")), _clean(s.get("error") or s.get("message") or "could not be read")))
        elif isinstance(s, (tuple, list)) and len(s) >= 2:
            out.append((str(s[0]), _clean(s[1])))
        else:
            out.append((str(s), "could not be read"))
    return out


# --------------------------------------------------------------------- main loop
@dataclass
class TranslateOptions:
    """How :func:`translate` runs: one field per ``slt-llm translate`` option."""

    batch_size: int = 8  # clips per generate call
    num_beams: int = 1  # 1 = greedy
    max_new_tokens: int = 48
    pose_dir: Optional[str] = None  # folder of <video>.pose files (else sidecars next to the videos)
    device: Optional[str] = None  # cpu | cuda (None: cuda when available)
    num_workers: Optional[int] = None  # DataLoader decode workers (None: min(4, cores-1))
    extractor_model: Optional[str] = None  # keypoint extractor model file, for videos without .pose
    extractor_backend: Optional[str] = None  # registered extractor backend (mediapipe when a model is given)
    llm_path: Optional[str] = None  # the base LLM folder or hub id, if it moved since training
    clip_overrides: Optional[list] = None  # clip options, "key=value"
    progress: bool = True
    # inputs whose row in the output is an error row (e.g. a transient out-of-memory) are
    # translated again; the new row replaces the error row (``retried`` in the summary counts them)
    retry_errors: bool = False
    allow_outside_root: bool = False  # manifest input: paths may lie outside its folder
    trust_remote_code: bool = False  # let the base LLM's own Python code run
    # fold the LoRA adapters into the base weights of the model translate() loads itself
    # (SLTModel.merge_lora: fewer kernels a generated token; never for a 4-/8-bit base, never for
    # a ``model=`` passed in, which its caller may still train)
    merge_lora: bool = True


def translate(
    model_dir: str | Path,
    input: str | Path,
    output: str | Path,
    options: Optional[TranslateOptions] = None,
    *,
    model=None,
    max_batches: Optional[int] = None,
    on_batch: Optional[Callable[[int, list], None]] = None,
    **kwargs,
) -> dict:
    """Translate every input not yet in ``output``; returns a summary dict:
    ``inputs``, ``already_done``, ``translated``, ``failed``, ``failed_ids``,
    ``manifest_errors``, ``seconds``, ``videos_per_s``, ``output``.

    ``options``: a :class:`TranslateOptions` (what ``slt-llm translate``'s flags set);
    its fields may also be given as keywords (``translate(d, i, o, batch_size=4)``),
    replacing those of ``options``; an unknown keyword is a TypeError.
    ``model``: an already loaded ``SLTModel`` (skips loading; benchmarks and
    tests). ``max_batches``/``on_batch``: stop after N batches / callback after
    each written batch (tests simulate interruptions with them).
    """
    import torch

    from slt_llm import distributed as dist_

    o = options if options is not None else TranslateOptions()
    if kwargs:
        o = dataclasses.replace(o, **kwargs)  # the keyword call path: translate(dir, in, out, batch_size=4, ...)
    device = o.device
    if o.batch_size < 1 or o.num_beams < 1 or o.max_new_tokens < 1:
        raise ConfigError("--batch-size, --num-beams and --max-new-tokens must be >= 1")
    output = Path(output)
    opened = open_model_folder(model_dir, o.llm_path)  # the one read of the folder, before any video is opened
    if o.pose_dir is not None and not Path(o.pose_dir).is_dir():
        raise InputError(o.pose_dir, "--pose-dir is not a folder")
    extractor = None
    if o.extractor_model is not None or o.extractor_backend is not None:
        from slt_llm.data.extract import make_extractor

        # built here so a missing model file / package is one line before any video is read
        extractor = make_extractor(o.extractor_backend or "mediapipe", model=o.extractor_model)
    clip_cfg = clip_config_of(opened, o.clip_overrides, warn=dist_.is_main())

    world = dist_.world_size()
    if world > 1 and not dist_.is_initialized():
        from accelerate import PartialState

        PartialState()  # joins the process group (gloo on CPU, nccl on GPU)
    rank = dist_.rank()
    if device is None:
        device = f"cuda:{dist_.local_rank()}" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and world > 1:
        device = f"cuda:{dist_.local_rank()}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA device is available")

    RowFile(output).check_writable(input)  # before anything is written (or cut) anywhere
    inputs = list_inputs(input, o.allow_outside_root)
    if rank == 0:
        merge_shards(output)  # leftovers of an interrupted multi-process run
    retried = 0
    if o.retry_errors and rank == 0 and output.exists():
        retried = drop_error_rows(output, {it.id for it in inputs.items})
    dist_.barrier()
    done = {str(r["id"]) for r in RowFile(output).load()} if output.exists() else set()
    shard = RowFile(_shard_path(output, rank)) if world > 1 else RowFile(output)
    if world > 1:
        done |= {str(r["id"]) for r in shard.load()}
    pending_all = [it for it in inputs.items if it.id not in done]
    already = len(inputs.items) - len(pending_all)
    mine = pending_all[rank::world]

    if model is None and mine:
        from slt_llm.models.slt_model import SLTModel

        model = SLTModel.from_pretrained(opened, device=device, trust_remote_code=o.trust_remote_code)
        if o.merge_lora:
            model.merge_lora()
    if model is not None:
        model.eval()

    summary = {"inputs": len(inputs.items), "already_done": already, "retried": retried, "translated": 0, "failed": 0,
               "failed_ids": [], "manifest_errors": [str(e) for e in inputs.errors], "seconds": 0.0,
               "videos_per_s": 0.0, "output": str(output)}
    t0 = time.perf_counter()
    if mine:
        _run(mine, model, shard, summary, clip_cfg=clip_cfg, batch_size=o.batch_size, num_beams=o.num_beams,
             max_new_tokens=o.max_new_tokens, pose_dir=o.pose_dir, device=device, num_workers=o.num_workers,
             extractor=extractor, pose_cache=o.pose_dir or str(output.with_name(output.name + ".poses")),
             progress=o.progress and rank == 0, max_batches=max_batches, on_batch=on_batch, world=world)
    summary["seconds"] = time.perf_counter() - t0

    if world > 1:
        parts = dist_.all_gather_object({k: summary[k] for k in ("translated", "failed", "failed_ids", "seconds")})
        summary["translated"] = sum(p["translated"] for p in parts)
        summary["failed"] = sum(p["failed"] for p in parts)
        summary["failed_ids"] = [i for p in parts for i in p["failed_ids"]]
        summary["seconds"] = max(p["seconds"] for p in parts)
        dist_.barrier()
        if rank == 0 and max_batches is None:
            merge_shards(output)
        dist_.barrier()
    n = summary["translated"] + summary["failed"]
    summary["videos_per_s"] = n / summary["seconds"] if summary["seconds"] > 0 else 0.0
    return summary


def _identity(x):
    return x


def compute_threads(num_workers: int, device, world: int = 1) -> Optional[int]:
    """torch intra-op threads for the model while ``num_workers`` decode
    workers share this rank's cores: ``cores / world - num_workers`` (at
    least 1, never more than torch already uses); None (leave it) on a GPU,
    without workers, or when that is what torch uses already.

    Measured (eval/bench_translate.py, 2 cores, 2 workers, busy machine):
    translate() took 66.5 s with torch's default 2 threads and 17.7 s with 1,
    the same outputs (docs/perf/translate.md): with every core busy decoding,
    a second OpenMP thread mostly waits for a core."""
    import torch

    if num_workers <= 0 or not str(device).startswith("cpu"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(1, min(torch.get_num_threads(), cores // max(1, world) - num_workers))
    return n if n != torch.get_num_threads() else None


def _batch_loader(ds, batches: list, *, num_workers: int, device, world: int = 1):
    """Collated batches in the order of ``batches``, decoded ahead by
    ``num_workers`` DataLoader processes (0: in this process).

    The workers take single samples, not whole batches: every worker helps
    fill each batch, so the first batch is ready after ~B / W decodes (not
    B), and the last one does not wait on a single worker. Up to two
    batches of samples are in flight (the same memory bound as two batches
    per worker before). Collation (``collate_clips``: padding) runs here,
    in the order the samples were asked for, so a batch holds exactly the
    samples of its ``batches`` entry. While it runs (until exhausted or
    closed), torch uses ``compute_threads`` threads, so the model computing
    between two batches does not fight the workers for the cores; the
    previous setting is restored afterwards."""
    import torch
    from torch.utils.data import DataLoader

    from slt_llm.data.dataset import collate_clips

    pin = str(device).startswith("cuda")
    if num_workers <= 0:
        for b in batches:
            yield collate_clips([ds[i] for i in b])
        return
    order = [i for b in batches for i in b]
    biggest = max((len(b) for b in batches), default=1)
    ahead = max(2, -(-2 * biggest // num_workers))  # per worker: two batches in flight in all
    loader = DataLoader(ds, sampler=order, batch_size=None, collate_fn=_identity, num_workers=num_workers,
                        prefetch_factor=ahead, persistent_workers=False)
    threads, prev = compute_threads(num_workers, device, world), torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        it = iter(loader)
        for bi, b in enumerate(batches):
            t0 = time.perf_counter()
            batch = collate_clips([next(it) for _ in b])
            waited = time.perf_counter() - t0
            if pin:
                batch = {k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            t1 = time.perf_counter()
            yield batch
            if threads is not None and bi:  # the first batch is always waited for
                # the workers are ahead (this batch was ready: waiting took < 10% of the model's time on
                # the previous one): they sleep on their prefetch limit, so the model takes every core;
                # the model waited for decoding: leave the workers theirs (compute_threads)
                torch.set_num_threads(prev if waited < 0.1 * (time.perf_counter() - t1) else threads)
    finally:
        if threads is not None:
            torch.set_num_threads(prev)


def _run(items, model, sink: RowFile, summary: dict, *, clip_cfg, batch_size, num_beams, max_new_tokens,
         pose_dir, device, num_workers, extractor, pose_cache, progress, max_batches, on_batch, world):
    from slt_llm.data.dataset import SLTDataset

    samples = [it.sample for it in items]
    if extractor is not None:
        Path(pose_cache).mkdir(parents=True, exist_ok=True)
    base = SLTDataset(samples, clip_cfg, on_error="skip", pose_dir=pose_dir)
    ds = _ExtractingDataset(base, samples, extractor, pose_dir, pose_cache)
    batches = length_batches(items, batch_size, clip_cfg)
    if max_batches is not None:
        batches = batches[:max_batches]
    if num_workers is None:
        num_workers = min(4, max(1, (os.cpu_count() or 2) // max(1, world) - 1))
    loader = _batch_loader(ds, batches, num_workers=num_workers, device=device, world=world)
    bar = None
    if progress:
        from slt_llm.progress import progress_bar

        bar = progress_bar(total=sum(len(b) for b in batches), unit="video", desc="translate")
    by_id = {it.id: it for it in items}
    for bi, batch in enumerate(loader):
        rows = [{"id": sid, "path": by_id[sid].path, "translation": None, "error": msg} for sid, msg in _skipped(batch)]
        ids = [str(i) for i in (batch.get("ids") or [])]
        if ids:
            texts = _generate(model, batch, ids, device, num_beams, max_new_tokens)
            for sid, t in zip(ids, texts):
                if isinstance(t, Exception):
                    rows.append({"id": sid, "path": by_id[sid].path, "translation": None,
                                 "error": _clean(f"{by_id[sid].path}: generation failed ({type(t).__name__}: {t})")})
                else:
                    rows.append({"id": sid, "path": by_id[sid].path, "translation": t, "error": None})
        sink.append(rows)
        for r in rows:
            if r["error"]:
                summary["failed"] += 1
                summary["failed_ids"].append(r["id"])
            else:
                summary["translated"] += 1
        if bar is not None:
            bar.update(len(rows))
        if on_batch is not None:
            on_batch(bi, rows)
    if bar is not None:
        bar.close()


def _generate(model, batch, ids, device, num_beams, max_new_tokens) -> list:
    """Batched generation; if the batch fails (e.g. out of memory), retry one
    sample at a time so only the culprit gets an error row."""
    import torch

    from slt_llm.data.dataset import batch_to_device

    with torch.inference_mode():
        try:
            out = model.generate(batch_to_device(batch, device), num_beams=num_beams, max_new_tokens=max_new_tokens)
            if len(out) != len(ids):
                raise RuntimeError(f"generate returned {len(out)} texts for {len(ids)} clips")
            return list(out)
        except Exception as e:
            if len(ids) == 1:
                return [e]
            if str(device).startswith("cuda"):
                torch.cuda.empty_cache()
    res = []
    for j in range(len(ids)):
        one = _select(batch, j, len(ids))
        res.extend(_generate(model, one, ids[j : j + 1], device, num_beams, max_new_tokens))
    return res


def _select(batch: dict, j: int, n: int) -> dict:
    """Item ``j`` of a collated batch as a batch of one (tensors and lists
    sliced on the batch dimension; padding stays, masked by ``frame_mask``)."""
    import torch

    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n:
            out[k] = v[j : j + 1]
        elif isinstance(v, list) and len(v) == n:
            out[k] = v[j : j + 1]
        elif k == "skipped":
            out[k] = []
        else:
            out[k] = v
    return out


def print_summary(s: dict) -> int:
    """What ``slt-llm translate`` says about a :func:`translate` summary ``s`` (rank 0 only): the
    skipped manifest rows on stderr, then one line, on stderr when any input failed. Returns the
    exit status: 1 when any input (or manifest row) failed, else 0."""
    from slt_llm import distributed as dist_

    failed = s["failed"] + len(s["manifest_errors"])
    if dist_.is_main():
        for e in s["manifest_errors"]:
            print(f"skipped manifest row: {e}", file=sys.stderr)
        retried = f" ({s['retried']} earlier errors retried)" if s.get("retried") else ""
        line = (f"translate: {s['translated']} translated, {s['failed']} failed{retried}, {s['already_done']} already done "
                f"(of {s['inputs']} inputs) in {s['seconds']:.1f}s ({s['videos_per_s']:.2f} videos/s) -> {s['output']}")
        if failed:
            line += f"; {failed} failed: see the rows with 'error'" + (" and the skipped manifest rows above" if s["manifest_errors"] else "")
        print(line, file=sys.stderr if failed else sys.stdout, flush=True)
    return 1 if failed else 0
