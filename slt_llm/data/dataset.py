"""PyTorch dataset over a manifest, collate with padding and masks, length-grouped batches.

``SLTDataset(samples_or_manifest, clip_cfg, on_error="skip")[i]`` loads one
clip with ``slt_llm.data.clip.load_clip`` and returns::

    full      uint8   (T, 3, full_size, full_size)
    left      uint8   (T, 3, hand_size, hand_size)
    right     uint8   (T, 3, hand_size, hand_size)
    keypoints float32 (T, 53, 3)
    boxes     float32 (T, 2, 4)   (NaN where no box)
    times     float32 (T,)
    fps float, id str, text str, index int

With ``hand_teacher=True`` items add the per-frame teacher features of
``slt_llm.data.hand_teacher`` (the ``<video stem>.hands.npz`` sidecar, aligned
to the clip's frame times)::

    hand_teacher       float32 (T, 2, D)   [left, right]
    hand_teacher_mask  bool    (T, 2)      true where the teacher saw that hand

(a missing or bad sidecar makes the sample bad, skipped and counted like an
unreadable video); ``collate_clips`` pads them (mask false on padded frames).

Or, for a bad sample under ``on_error="skip"``, ``{"error": message, "id": ...,
"index": ...}`` (the message names the file and the problem). Under
``"raise"`` the ``InputError`` propagates. OSError/ValueError/RuntimeError/
EOFError raised while loading are reported as an ``InputError`` naming the
video (a decoder failure the loaders did not word is still a bad sample). ``collate_clips`` drops error items
(listing them in ``batch["skipped"]``) and pads the rest to the longest clip.

Counting skipped samples: the dataset records failures in ``.errors``
(index -> message) in the process that loaded them, so with
``DataLoader(num_workers=0)`` ``ds.num_skipped`` is exact; with worker
processes count ``batch["skipped"]`` in the main process instead (the
collated batch always carries them). A sample that failed once in a process
is not decoded again there.

Saying which (``report``, on by default when the dataset reads its manifest
itself, as stage 2 does): the bad manifest rows left out are named on stderr
when the dataset is built (``manifest:line: problem``, the first
``REPORT_FIRST``, then how many more), and the first ``REPORT_FIRST``
unreadable samples once each when they fail (id + the file and problem),
then one line saying the rest are counted only. Once per dataset across
DataLoader worker processes and epochs (a shared-memory flag per sample).

Cache (``cache_dir``): a decoded clip is stored as an uncompressed ``.npz``
named by the SHA-256 of (absolute video path, its mtime and size, the pose
file's path/mtime/size, start, end, the clip config). A changed file or
config is a different key, so stale entries are never read. Cost per entry
~ T * (3*full^2 + 6*hand^2) bytes (T=48 at the defaults: ~3.0 MB); a hit costs
one file read instead of a decode + crop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from slt_llm.config import ClipConfig
from slt_llm.data.manifest import Sample, read_manifest
from slt_llm.errors import InputError

CLIP_ARRAYS = ("full", "left", "right", "keypoints", "boxes", "times")
TEACHER_ARRAYS = ("hand_teacher", "hand_teacher_mask")  # with hand_teacher=True (not cached: read per item)
CACHE_VERSION = 2  # 2: full-frame thumbnails scaled from the working picture (slt_llm/data/video.py)


def _stat_key(path: Path) -> list:
    """(path, mtime_ns, size) of a file; for a folder, its entries' names, sizes and mtimes."""
    st = path.stat()
    if path.is_dir():
        entries = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(path) if e.is_file())
        digest = hashlib.sha256(json.dumps(entries).encode()).hexdigest()
        return [str(path), digest]
    return [str(path), st.st_mtime_ns, st.st_size]


REPORT_FIRST = 5  # bad rows / unreadable samples named one by one before the rest are only counted


def _is_main() -> bool:
    from slt_llm import distributed as dist_utils

    return dist_utils.is_main()


def name_unreadable(ds: "SLTDataset", bad: Sequence[int], what: str = "training sample") -> list:
    """One line per bad sample for the first ``REPORT_FIRST`` of ``bad`` (``id``: the file and problem,
    each re-loaded once for its message), then how many more: what a caller prints, not only a count."""
    lines = []
    for i in list(bad)[:REPORT_FIRST]:
        item = ds[i]
        lines.append(f"unreadable {what} {ds.samples[i].id!r} left out: {item.get('error', 'unreadable')}")
    if len(bad) > REPORT_FIRST:
        lines.append(f"... and {len(bad) - REPORT_FIRST} more unreadable {what}s left out")
    return lines


class SLTDataset(torch.utils.data.Dataset):
    """Clips of a manifest (or a list of ``Sample``), skip-and-count or raise.

    Args:
        samples_or_manifest: a manifest path, or a sequence of ``Sample``.
        clip_cfg: how videos become clips (``ClipConfig``).
        on_error: ``"skip"`` (bad samples come back as error items, counted)
            or ``"raise"`` (the ``InputError`` propagates).
        pose_dir: where ``<video stem>.pose`` files are looked up when not
            beside the video nor named in the manifest.
        cache_dir: decoded clips are cached there as ``.npz`` (see module doc).
        require_text: manifests must have a non-empty sentence per row
            (False for translation input).
        hand_teacher: also load each sample's hand-teacher sidecar (see module doc),
            looked up in ``hands_dir`` and beside the video.
        report: name bad manifest rows and unreadable samples on stderr (module
            doc); None: when ``samples_or_manifest`` is a manifest path.

    Bad manifest rows: under "skip" they are left out and listed in
    ``manifest_errors``; under "raise" reading the manifest raises.
    """

    def __init__(
        self,
        samples_or_manifest: Union[str, os.PathLike, Sequence[Sample]],
        clip_cfg: ClipConfig,
        *,
        on_error: str = "skip",
        pose_dir=None,
        cache_dir=None,
        require_text: bool = True,
        allow_outside_root: bool = False,
        hand_teacher: bool = False,
        hands_dir=None,
        memory: bool = False,
        report: Optional[bool] = None,
    ):
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self._memory: Optional[dict] = {} if memory else None  # data.preload: index -> loaded item
        self.manifest_errors: list = []
        self.source: Optional[str] = None
        if isinstance(samples_or_manifest, (str, os.PathLike)):
            self.source = str(samples_or_manifest)
            m = read_manifest(samples_or_manifest, require_text=require_text, on_error=on_error,
                              allow_outside_root=allow_outside_root)
            self.samples = list(m)
            self.manifest_errors = list(m.errors)
        else:
            self.samples = list(samples_or_manifest)
        self.clip_cfg = clip_cfg
        self.on_error = on_error
        self.pose_dir = None if pose_dir is None else str(pose_dir)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.hand_teacher = bool(hand_teacher)
        self.hands_dir = None if hands_dir is None else str(hands_dir)
        self.errors: dict[int, str] = {}  # index -> message, in this process
        self.cache_hits = 0
        self.cache_misses = 0
        if report is None:
            report = self.source is not None
        # one flag per sample + a counter, shared with forked/spawned DataLoader workers
        self._reported = torch.zeros(len(self.samples) + 1, dtype=torch.int32).share_memory_() if report else None
        if report and self.manifest_errors and _is_main():
            say = [str(e) for e in self.manifest_errors[:REPORT_FIRST]]
            for line in say:
                print(f"warning: {line} (row left out)", file=sys.stderr, flush=True)
            if len(self.manifest_errors) > len(say):
                print(f"warning: {self.source}: {len(self.manifest_errors) - len(say)} more bad row(s) left out",
                      file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.samples)

    @property
    def texts(self) -> list:
        """The sentences, in dataset order."""
        return [s.text for s in self.samples]

    @property
    def ids(self) -> list:
        return [s.id for s in self.samples]

    @property
    def num_skipped(self) -> int:
        """Samples that failed to load in this process (see module doc for workers)."""
        return len(self.errors)

    # ------------------------------------------------------------------ cache
    def cache_key(self, i: int) -> str:
        """SHA-256 hex key of sample i's decoded clip (raises InputError if its files are missing)."""
        from slt_llm.data.clip import find_pose

        s = self.samples[i]
        video = Path(s.video)
        if not video.exists():
            raise InputError(video, "video not found")
        pose = find_pose(video, s.pose, self.pose_dir)
        payload = {
            "v": CACHE_VERSION,
            "video": _stat_key(video.resolve()),
            "pose": _stat_key(Path(pose).resolve()),
            "start": s.start,
            "end": s.end,
            "clip": dataclasses.asdict(self.clip_cfg),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.npz"

    def _cache_load(self, path: Path) -> Optional[dict]:
        try:
            with np.load(path, allow_pickle=False) as z:
                out = {k: z[k] for k in CLIP_ARRAYS}
                out["fps"] = float(z["fps"])
            return out
        except Exception:  # a truncated/corrupt entry: drop it and decode again
            try:
                path.unlink()
            except OSError:
                pass
            return None

    def _cache_save(self, path: Path, arrays: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **{k: arrays[k] for k in CLIP_ARRAYS}, fps=np.float64(arrays["fps"]))
        os.replace(tmp, path)

    # ------------------------------------------------------------------ loading
    def load_arrays(self, i: int) -> dict:
        """Sample i as numpy arrays (CLIP_ARRAYS + fps); raises InputError on bad input."""
        from slt_llm.data.clip import load_clip

        s = self.samples[i]
        path = None
        if self.cache_dir is not None:
            path = self._cache_path(self.cache_key(i))
            if path.is_file():
                arrays = self._cache_load(path)
                if arrays is not None:
                    self.cache_hits += 1
                    return arrays
            self.cache_misses += 1
        clip = load_clip(s.video, self.clip_cfg, pose=s.pose, pose_dir=self.pose_dir, start=s.start, end=s.end)
        arrays = {k: getattr(clip, k) for k in CLIP_ARRAYS}
        arrays["fps"] = float(clip.fps)
        if path is not None:
            self._cache_save(path, arrays)
        return arrays

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        s = self.samples[i]
        if i in self.errors:
            return {"error": self.errors[i], "id": s.id, "index": i}
        if self._memory is not None and i in self._memory:
            return dict(self._memory[i])
        try:
            try:
                arrays = self.load_arrays(i)
                if self.hand_teacher:
                    arrays.update(self.load_teacher(i, arrays["times"]))
            except (OSError, ValueError, RuntimeError, EOFError) as e:
                # a decoder/file-system failure the loaders did not word: still this sample's fault
                reason = (str(e).splitlines() or [""])[0]
                raise InputError(s.video, f"could not load ({type(e).__name__}: {reason})") from e
        except InputError as err:
            if self.on_error == "raise":
                raise
            self.errors[i] = str(err)
            self._report_skip(i, str(err))
            return {"error": str(err), "id": s.id, "index": i}
        item = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in CLIP_ARRAYS + self._extra_keys()}
        item.update(fps=arrays["fps"], id=s.id, text=s.text, index=i)
        if self._memory is not None:
            self._memory[i] = item
        return item

    def _report_skip(self, i: int, message: str) -> None:
        """Name sample i's failure on stderr the first time any process of this dataset meets it,
        for the first ``REPORT_FIRST`` failures; then one line that the rest are counted only."""
        flags = self._reported
        if flags is None or int(flags[i]):
            return
        flags[i] = 1
        n = int(flags[-1])
        flags[-1] = n + 1
        where = f"{self.source}: " if self.source else ""
        if n < REPORT_FIRST:
            print(f"warning: {where}unreadable sample {self.samples[i].id!r} skipped: {message}", file=sys.stderr,
                  flush=True)
        elif n == REPORT_FIRST:
            print(f"warning: {where}more unreadable samples are skipped; they are counted, not named",
                  file=sys.stderr, flush=True)

    def _extra_keys(self) -> tuple:
        return TEACHER_ARRAYS if self.hand_teacher else ()

    def load_teacher(self, i: int, times: np.ndarray) -> dict:
        """Sample i's hand-teacher features at the clip's frame ``times`` (seconds from the
        sample's start): ``{"hand_teacher" (T,2,D) float32, "hand_teacher_mask" (T,2) bool}``.
        Raises InputError naming the sidecar (missing, bad, or not alignable)."""
        from slt_llm.data.hand_teacher import align_teacher, find_sidecar, read_sidecar

        s = self.samples[i]
        t = read_sidecar(find_sidecar(s.video, self.hands_dir))
        feats, mask = align_teacher(t, np.asarray(times, np.float64) + float(s.start or 0.0))
        return {"hand_teacher": feats, "hand_teacher_mask": mask}


# ---------------------------------------------------------------------- lengths
def estimate_frames(sample: Sample, clip_cfg: ClipConfig) -> int:
    """Frames a sample will have after sampling (``clip_cfg``: fps or max_fps, max_frames,
    the sample's start/end), from container metadata only (no decoding; frame folders:
    image count / 25 fps). 0 when the video cannot be opened. The one length estimator
    (translate batches inputs of similar length with it). Cost: one file open."""
    from slt_llm.data.video import _duration, _native_fps, _open, list_images

    try:
        p = Path(sample.video)
        if p.is_dir():
            native, dur = 25.0, len(list_images(p)) / 25.0
        else:
            container = _open(p)
            try:
                stream = container.streams.video[0]
                native, dur = _native_fps(stream), _duration(container, stream)
            finally:
                container.close()
            if dur is None:
                return 0
        t0 = sample.start or 0.0
        t1 = min(sample.end, dur) if sample.end is not None else dur
        rate = min(clip_cfg.fps if clip_cfg.fps else min(native, clip_cfg.max_fps), native)
        n = int(math.floor(max(t1 - t0, 0.0) * rate + 0.5))
        return max(0, min(n, clip_cfg.max_frames))
    except (InputError, OSError, IndexError):
        return 0


# ---------------------------------------------------------------------- collate
def collate_clips(items: list) -> dict:
    """List of dataset items -> batch (the contract in ``slt_llm.data.layout``).

    Error items are dropped and listed in ``skipped`` as (id, message). Clips
    are zero-padded at the end to the longest T. Returns full/left/right uint8
    (B,T,3,S,S), keypoints (B,T,53,3), boxes (B,T,2,4), times (B,T),
    frame_mask bool (B,T), lengths long (B,), index long (B,), fps float64
    (B,), ids, texts, skipped; plus hand_teacher (B,T,2,D) and hand_teacher_mask
    (B,T,2) when every item has them. If every item was bad, B = 0 (T = 0): training
    code should skip the batch (``len(batch["ids"]) == 0``).
    """
    good = [it for it in items if "error" not in it]
    skipped = [(it.get("id"), it["error"]) for it in items if "error" in it]
    B = len(good)
    if B == 0:
        return {
            "full": torch.zeros(0, 0, 3, 0, 0, dtype=torch.uint8),
            "left": torch.zeros(0, 0, 3, 0, 0, dtype=torch.uint8),
            "right": torch.zeros(0, 0, 3, 0, 0, dtype=torch.uint8),
            "keypoints": torch.zeros(0, 0, 0, 3),
            "boxes": torch.zeros(0, 0, 2, 4),
            "times": torch.zeros(0, 0),
            "frame_mask": torch.zeros(0, 0, dtype=torch.bool),
            "lengths": torch.zeros(0, dtype=torch.long),
            "index": torch.zeros(0, dtype=torch.long),
            "fps": torch.zeros(0, dtype=torch.float64),
            "ids": [], "texts": [], "skipped": skipped,
        }
    lengths = torch.tensor([int(it["full"].shape[0]) for it in good], dtype=torch.long)
    T = int(lengths.max())
    batch = {}
    extra = tuple(k for k in TEACHER_ARRAYS if all(k in it for it in good))
    for k in CLIP_ARRAYS + extra:
        first = good[0][k]
        out = torch.zeros((B, T) + tuple(first.shape[1:]), dtype=first.dtype)
        for b, it in enumerate(good):
            out[b, : it[k].shape[0]] = it[k]
        batch[k] = out
    batch["frame_mask"] = torch.arange(T)[None, :] < lengths[:, None]
    batch["lengths"] = lengths
    batch["index"] = torch.tensor([int(it["index"]) for it in good], dtype=torch.long)
    batch["fps"] = torch.tensor([float(it.get("fps", 0.0)) for it in good], dtype=torch.float64)
    batch["ids"] = [it["id"] for it in good]
    batch["texts"] = [it.get("text", "") for it in good]
    batch["skipped"] = skipped
    return batch


# ------------------------------------------------------------ readable samples
SCAN_WORKERS_MIN_SAMPLES = 64  # a smaller scan stays in this process (forking costs more)


class _Readable(torch.utils.data.Dataset):
    """``ds[i]`` loaded (filling the clip cache) and reduced to "readable?", so
    scan workers send back a bool, not the clip."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return "error" not in self.ds[i]


def _keep(x):
    return x


def scan_unreadable(ds, indices: Sequence[int], num_workers: int) -> list[int]:
    """The indices among ``indices`` whose sample cannot be loaded (in order).

    With ``num_workers`` > 0 and at least ``SCAN_WORKERS_MIN_SAMPLES``
    samples the loads run in that many DataLoader processes (each fills the
    clip cache: entries are written atomically): on 2 cores the demo's
    2000-clip scan, which decodes every clip once (~50 CPU-ms each on the
    slower machine), takes about half the time. Same result either way."""
    indices = list(indices)
    if num_workers <= 0 or len(indices) < SCAN_WORKERS_MIN_SAMPLES:
        return [i for i in indices if "error" in ds[i]]
    from torch.utils.data import DataLoader

    loader = DataLoader(_Readable(ds), sampler=indices, batch_size=None, collate_fn=_keep,
                        num_workers=num_workers, prefetch_factor=4)
    return [i for i, ok in zip(indices, loader) if not ok]


def scan_workers(world_size: int = 1) -> int:
    """Processes for the pre-scan: this rank's share of the cores (1 -> none)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = cores // max(1, world_size)
    return n if n > 1 else 0


def readable_training_set(data_cfg, rank: int = 0, world_size: int = 1):
    """``(dataset, samples, bad)``: ``data_cfg.train_manifest`` (a DataConfig) as an
    SLTDataset with unreadable samples removed, found by one pre-scan sharded over
    ranks (rank r checks r, r+W, ...; results all-gathered; with ``cache_dir`` set
    the scan also fills the clip cache), each rank's share loaded by
    ``scan_workers`` processes (``scan_unreadable``). ``data.on_error=raise``
    raises on the first bad sample. Sample i of ``samples`` is dataset index i.
    Cost: one load per sample (divided over the ranks and their workers). With
    ``data_cfg.preload`` the dataset keeps every loaded item in memory (later epochs decode
    nothing; about T*(3*full^2 + 6*hand^2) bytes per clip)."""
    from slt_llm import distributed as dist_utils

    dkw = dict(pose_dir=data_cfg.pose_dir, cache_dir=data_cfg.cache_dir,
               hand_teacher=data_cfg.hand_teacher, hands_dir=data_cfg.hands_dir,
               memory=bool(data_cfg.preload))  # bad sidecars: bad samples
    samples = read_manifest(data_cfg.train_manifest, allow_outside_root=data_cfg.allow_outside_root)
    ds = SLTDataset(samples, data_cfg.clip, on_error="skip", **dkw)
    mine = scan_unreadable(ds, range(rank, len(ds), world_size), scan_workers(world_size))
    bad = sorted(i for part in dist_utils.all_gather_object(mine) for i in part)
    if bad and data_cfg.on_error == "raise":
        raise InputError(data_cfg.train_manifest, f"unreadable training sample {samples[bad[0]].id!r} "
                                                  f"(data.on_error=raise): {ds[bad[0]].get('error', 'unreadable')}")
    if bad and rank == 0:
        for line in name_unreadable(ds, bad):
            print(f"warning: {data_cfg.train_manifest}: {line}", file=sys.stderr, flush=True)
    left_out = [samples[i].id for i in bad]
    if bad:
        bad_set = set(bad)
        samples = [s for i, s in enumerate(samples) if i not in bad_set]
        ds = SLTDataset(samples, data_cfg.clip, on_error="skip", **dkw)
    ds.left_out = left_out  # the ids of the bad samples, for the caller's summary line
    return ds, samples, bad


# ------------------------------------------------------------------- to device
def batch_to_device(batch, device):
    """Tensors of a (nested) batch moved to ``device``; everything else untouched.

    The one batch-to-device helper (training, stage-1 embedding, translate)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: batch_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(batch_to_device(v, device) for v in batch)
    return batch


# ---------------------------------------------------------------------- batching
def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length, longest first (stable), cut into batches of
    ``batch_size`` (the last may be smaller): little padding, and the first
    batch shows the memory peak early. O(N log N)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    idx = np.argsort(-np.asarray(list(lengths), dtype=np.int64), kind="stable")
    return [idx[j:j + batch_size].tolist() for j in range(0, len(idx), batch_size)]
