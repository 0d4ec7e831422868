"""Which run a run folder holds, and keeping it whole.

- ``RUN_DIR/run.json`` identifies the run: ``{"run_id": uuid, "stage":
  "stage1"|"stage2", "config_hash": sha256 of the resolved config,
  "started": UTC time}``, written when the run starts. Checkpoints record the
  ``run_id`` (``TrainerState.run_id``) so rotation and resume only ever touch
  this run's checkpoints.
- ``claim_run_dir``: a fresh run into a folder that already holds a run (its
  ``run.json``, or the files of an older run without one) is refused with one
  line unless ``resume`` (continue that run; the config may have changed,
  which is said) or ``overwrite`` (the old run's files are removed first).
- ``swap_in`` replaces a folder atomically enough to survive a crash at any
  point: the new folder is written beside it, the old one is renamed aside
  (``NAME.old``), the new one renamed in, the old one deleted;
  ``recover_swaps`` (run at every start) puts an aside copy back when a crash
  left no folder, and removes leftovers.

Collective functions are called by every rank; rank 0 does the file work and
the outcome (or the error) is shared, so all ranks raise together.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

from slt_llm import distributed as dist_utils
from slt_llm import faults
from slt_llm import run_layout as layout
from slt_llm.errors import ConfigError

RUN_FILE = "run.json"
ASIDE = ".old"  # NAME.old: the previous folder during a swap
NEW = ".new-"  # NAME.new-XXXX: a folder being written
# what a run leaves in its folder (a fresh run must not mix with these)
RUN_ARTIFACTS = (RUN_FILE, layout.CONFIG_FILE, layout.METRICS_FILE, layout.CHECKPOINT_DIR, layout.MODEL_DIR,
                 layout.RESULT_FILE, layout.TEXTS_FILE, layout.REFERENCE_DIR, layout.TENSORBOARD_DIR)


def run_file(run_dir) -> Path:
    return Path(run_dir) / RUN_FILE


def config_hash(cfg) -> str:
    from slt_llm.config import to_dict

    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_run(run_dir) -> Optional[dict]:
    p = run_file(run_dir)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{p}: unreadable run identity ({e}); move the folder away or pass --overwrite") from None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def check_claim(run_dir, stage: str, *, resume: bool = False, overwrite: bool = False) -> None:
    """The refusals of :func:`claim_run_dir`, read-only (no folder is created or changed): for a
    check before any work, so that a run that would be refused never trains, caches or writes
    anything first (stage 1's reference run, text cache). Raises ConfigError."""
    run_dir = Path(run_dir)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other (continue the run, or replace it)")
    if not run_dir.is_dir():
        return
    held = read_run(run_dir)
    present = [n for n in RUN_ARTIFACTS if (run_dir / n).exists()]
    if not present:
        return
    if resume:
        if held is not None and held.get("stage") != stage:
            raise ConfigError(f"{run_dir} holds a {held.get('stage')} run ({held.get('run_id')}), not a {stage} run; "
                              "use another train.run_dir")
    elif not overwrite:
        who = f"run {held['run_id']} ({held.get('stage')}, started {held.get('started')})" if held else \
            f"another run ({', '.join(present)})"
        raise ConfigError(f"{run_dir} holds {who}; pass --resume to continue it or --overwrite to replace it")


def _claim(run_dir: Path, cfg, stage: str, resume: bool, overwrite: bool) -> tuple[str, str]:
    """(run_id, message) on rank 0; raises ConfigError when refused."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other (continue the run, or replace it)")
    run_dir.mkdir(parents=True, exist_ok=True)
    recover_swaps(run_dir)
    check_claim(run_dir, stage, resume=resume, overwrite=overwrite)
    held = read_run(run_dir)
    present = [n for n in RUN_ARTIFACTS if (run_dir / n).exists()]
    chash = config_hash(cfg)
    if resume and not overwrite and present:
        if held is None:  # an older run without run.json: adopt it (its checkpoints carry no run id)
            held = {"run_id": uuid.uuid4().hex, "stage": stage, "config_hash": chash, "adopted": True,
                    "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            _write_json(run_file(run_dir), held)
        msg = "" if held.get("config_hash") == chash else \
            f"{stage}: --resume with a changed config (run {held['run_id']} started with config {held.get('config_hash')})"
        return held["run_id"], msg
    msg = ""
    if present:  # --overwrite
        for n in present:
            p = run_dir / n
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        msg = f"{stage}: --overwrite: removed the previous run's {', '.join(present)} in {run_dir}"
    rid = uuid.uuid4().hex
    _write_json(run_file(run_dir), {"run_id": rid, "stage": stage, "config_hash": chash,
                                    "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    return rid, msg


def claim_run_dir(accelerator, run_dir, cfg, *, stage: str, resume: bool = False, overwrite: bool = False) -> str:
    """Make ``run_dir`` this run's folder and return the run id (collective; see
    the module docstring). Refusal: ``ConfigError`` on every rank."""
    out = None
    if accelerator.is_main_process:
        try:
            rid, msg = _claim(Path(run_dir), cfg, stage, resume, overwrite)
            out = ("ok", rid, msg)
        except ConfigError as e:
            out = ("error", str(e), "")
    out = dist_utils.all_gather_object(out)[0]
    if out[0] == "error":
        raise ConfigError(out[1])
    if out[2]:
        dist_utils.print0(out[2])
    return out[1]


# ------------------------------------------------------------------ atomic swaps
def new_folder(dest) -> Path:
    """A fresh, unique folder beside ``dest`` to write its replacement into."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}{NEW}{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    return tmp


def swap_in(new, dest) -> Path:
    """Replace folder ``dest`` by folder ``new`` (written beside it): rename the
    old one aside, rename the new one in, delete the old one. A crash at any
    point leaves ``dest`` whole, or only ``dest.old`` (which ``recover_swaps``
    puts back)."""
    new, dest = Path(new), Path(dest)
    aside = dest.with_name(dest.name + ASIDE)
    if aside.exists():  # a leftover of an earlier swap that finished its renames
        shutil.rmtree(aside)
    if dest.exists():
        os.replace(dest, aside)
    faults.point("export_swap")
    os.replace(new, dest)
    shutil.rmtree(aside, ignore_errors=True)
    return dest


def recover_swaps(root) -> list:
    """Under ``root`` and ``root/reference``: put back every ``NAME.old`` whose
    ``NAME`` is missing (a crash between the renames), drop the other
    ``NAME.old`` and half-written ``NAME.new-*`` folders. Returns what was restored."""
    restored = []
    for d in (Path(root), layout.reference_root(root)):
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.is_dir() and p.name.endswith(ASIDE):
                dest = p.with_name(p.name[: -len(ASIDE)])
                if dest.exists():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    os.replace(p, dest)
                    restored.append(dest)
            elif p.is_dir() and NEW in p.name:
                shutil.rmtree(p, ignore_errors=True)
    return restored


def holds_run(run_dir) -> bool:
    """Whether ``run_dir`` already holds a run (so starting there needs --resume or --overwrite)."""
    return any((Path(run_dir) / n).exists() for n in RUN_ARTIFACTS)
