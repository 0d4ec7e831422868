"""Checkpoints: where a run is (``TrainerState``), RNG state, save / load / rotate.

Owns the checkpoint folder layout ``RUN_DIR/checkpoints/step_N/`` (Accelerate
state, ZeRO shards under DeepSpeed, + ``trainer_state.json`` written last so a
checkpoint without it is incomplete and ignored), rotation to the newest
``keep``, per-rank RNG states (python, numpy, torch) saved with the trainer
state, and seeding. ``TrainerState`` also records the best model on dev
(``best_metric``/``best_step``) for both stages.

Resume falls back: before a checkpoint is loaded every file in it is checked
(``checkpoint_problem``: the trainer state parses; a safetensors file's header
parses and the file is as long as the header says; a torch/pickle file
(optimizer, scheduler, RNG, ZeRO shards) is an intact torch zip archive, CRCs
included, so a plain pickle is refused unread). The newest checkpoint with a
bad file is passed over with one warning naming the file, and the one before
is tried (``resume_state``); none usable: a fresh start, said so. Cost: every
checkpoint file read once more at resume.
"""

from __future__ import annotations

import base64
import json
import math
import pickle
import random
import shutil
import struct
import sys
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from slt_llm import distributed as dist_utils
from slt_llm import faults
from slt_llm.data.loader import item_seed
from slt_llm.errors import ConfigError
from slt_llm.training.accelerator import unwrap_for_save, uses_deepspeed

from slt_llm.run_layout import CHECKPOINT_DIR, TRAINER_STATE, checkpoint_dir, checkpoints_root

__all__ = ["CHECKPOINT_DIR", "TRAINER_STATE", "TrainerState", "checkpoint_dir", "export_folder", "latest_checkpoint",
           "checkpoint_problem", "list_checkpoints", "load_checkpoint", "resume_state", "rng_state", "save_checkpoint", "seed_everything",
           "seed_step", "set_rng_state"]


# -------------------------------------------------------------------------- seeding
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) identically on every rank."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def seed_step(seed: int, step: int) -> None:
    """Seed python, numpy and torch (all devices) for the optimizer step after ``step`` done, from
    ``(seed, step)`` alone (the same on every rank, like :func:`seed_everything`).

    Called at the start of every training step of both stages, it makes what the step draws
    (dropout) independent of everything that ran before it: building a DataLoader (which draws
    its workers' base seed from the global generator), a dev evaluation, pair selection being
    rebuilt on resume. So a resumed run repeats the uninterrupted run's steps exactly (the RNG
    states saved in a checkpoint are restored as well; this makes them unnecessary for the steps)."""
    seed_everything(item_seed((seed, step, 0x57E9)))


def rng_state() -> dict:
    """This process's RNG states as JSON-able data (python, numpy, torch CPU [+ CUDA])."""
    py = random.getstate()
    npst = np.random.get_state()
    out = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
    }
    if torch.cuda.is_available():
        out["cuda"] = base64.b64encode(torch.cuda.get_rng_state().numpy().tobytes()).decode()
    return out


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.from_numpy(np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.from_numpy(np.frombuffer(base64.b64decode(state["cuda"]), dtype=np.uint8).copy()))


# ----------------------------------------------------------------- trainer state
@dataclass
class TrainerState:
    """Where a run is: enough to resume with the same data order.

    step: optimizer steps done. epoch: current epoch. batch_in_epoch: global
    (micro) batches of ``epoch`` already consumed. best_metric: the dev
    score of the exported model (stage 2: BLEU-4; stage 1: video-to-text
    R@1), None before the first evaluation; best_key: the list it was
    compared by (ties broken by the later entries); best_step: its step.
    skipped: bad samples skipped so far. rng: per-rank RNG states (filled
    when saved). run_id: the run that wrote it (``training.run_folder``);
    None in checkpoints of older versions.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: Optional[float] = None
    best_key: Optional[list] = None
    best_step: Optional[int] = None
    skipped: int = 0
    rng: list = field(default_factory=list)
    run_id: Optional[str] = None

    def update_best(self, key: list) -> bool:
        """Record ``key`` (larger is better, compared element by element) at the
        current step when it beats the best so far; True when it did."""
        key = [float(x) for x in key]
        if not all(math.isfinite(x) for x in key):  # a NaN score never becomes "best"
            return False
        if self.best_key is not None and key <= self.best_key:
            return False
        self.best_key, self.best_metric, self.best_step = key, key[0], self.step
        return True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrainerState":
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _run_id_of(ckpt: Path) -> Optional[str]:
    try:
        return json.loads((ckpt / TRAINER_STATE).read_text()).get("run_id")
    except (OSError, json.JSONDecodeError, AttributeError):
        return "unreadable"


def _checkpoints(run_dir, run_id: Optional[str], accept: tuple) -> list[Path]:
    """Complete checkpoints (with a trainer state), oldest first; with ``run_id`` only those
    whose recorded run id is ``run_id`` or in ``accept``."""
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("step_") and d.name[5:].isdigit() and (d / TRAINER_STATE).is_file():
            if run_id is None or _run_id_of(d) in (run_id, *accept):
                found.append((int(d.name[5:]), d))
    return [d for _, d in sorted(found)]


def list_checkpoints(run_dir: str | Path, run_id: Optional[str] = None) -> list[Path]:
    """Complete checkpoints (those with a trainer state), oldest first; with
    ``run_id`` only that run's (and those of older versions, which record no
    run id: the run that adopted the folder)."""
    return _checkpoints(run_dir, run_id, (None,))


def _resume_candidates(run_dir, run_id: Optional[str]) -> list[Path]:
    """Checkpoints a resume may use, NEWEST first: this run's (``list_checkpoints``) and those whose
    trainer state cannot be read (whose run is unknown; they are then passed over with a warning)."""
    return _checkpoints(run_dir, run_id, (None, "unreadable"))[::-1]


def _safetensors_problem(path: Path) -> Optional[str]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"truncated ({size} bytes, not even a safetensors header)"
        n = struct.unpack("<Q", head)[0]
        if n > size:
            return f"truncated or corrupt (header of {n} bytes in a file of {size})"
        try:
            header = json.loads(f.read(n))
            end = max([int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"] or [0])
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            return f"corrupt safetensors header ({type(e).__name__})"
    if size < 8 + n + end:
        return f"truncated ({size} of {8 + n + end} bytes)"
    return None


def _torch_file_problem(path: Path) -> Optional[str]:
    """torch.save writes a zip archive: a cut file loses its central directory, a damaged one fails
    a CRC; anything else (a plain pickle) is not what save_state wrote and is never unpickled."""
    if not zipfile.is_zipfile(path):
        return "corrupt or truncated (not a torch archive)"
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        return f"corrupt or truncated ({type(e).__name__}: {str(e)[:80]})"
    return f"corrupt (bad CRC in {bad})" if bad else None


def checkpoint_problem(ckpt: str | Path) -> Optional[str]:
    """``"FILE: what is wrong"`` for the first unreadable file of a checkpoint folder (trainer state,
    model weights, optimizer, scheduler, RNG states, ZeRO shards), None when all read back. Reads
    every file once (CRCs of the torch archives); other files (DeepSpeed's ``latest``) are not judged."""
    ckpt = Path(ckpt)
    st = ckpt / TRAINER_STATE
    try:
        TrainerState.from_json(st.read_text())
    except (OSError, ValueError, TypeError, AttributeError) as e:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        return f"{st}: unreadable trainer state ({type(e).__name__}: {str(e)[:80]})"
    for f in sorted(p for p in ckpt.rglob("*") if p.is_file()):
        try:
            if f.suffix == ".safetensors":
                why = _safetensors_problem(f)
            elif f.suffix in (".bin", ".pkl", ".pt", ".pth"):
                why = _torch_file_problem(f)
            else:
                continue
        except OSError as e:
            why = f"unreadable ({e.strerror or type(e).__name__})"
        if why:
            return f"{f}: {why}"
    return None


def latest_checkpoint(run_dir: str | Path, run_id: Optional[str] = None) -> Optional[Path]:
    ckpts = list_checkpoints(run_dir, run_id)
    return ckpts[-1] if ckpts else None


def save_checkpoint(accelerator, run_dir: str | Path, state: TrainerState, keep: int) -> Path:
    """Save model/optimizer/scheduler (ZeRO shards under DeepSpeed) + trainer state.

    Under DeepSpeed frozen parameters (the base LLM) are left out of the shards
    (they come from ``llm.path`` again on resume). Collective: every rank must
    call it. The trainer state JSON (with the best model so far and the run
    id) is written last (by rank 0, temp file + rename), so a checkpoint
    without it is incomplete and ignored; this run's older checkpoints beyond
    ``keep`` are removed (never another run's). Cost: one full write of the
    trainable state (and of frozen weights under DeepSpeed engines).
    """
    out = checkpoint_dir(run_dir, state.step)
    if uses_deepspeed(accelerator):  # the frozen base LLM is not duplicated in every checkpoint
        accelerator.save_state(str(out), exclude_frozen_parameters=True)
    else:
        accelerator.save_state(str(out))
    state.rng = dist_utils.all_gather_object(rng_state())
    faults.point("ckpt_write")  # shards written, completion marker not yet
    if accelerator.is_main_process:
        tmp = out / (TRAINER_STATE + ".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(out / TRAINER_STATE)
        if keep > 0:
            for old in list_checkpoints(run_dir, state.run_id)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:  # safetensors writes through a 0600 temp file: modes as open() gives them
        from slt_llm.models.model_card import follow_umask

        follow_umask(out)
    return out


def load_checkpoint(accelerator, ckpt: str | Path, *, checked: bool = False) -> TrainerState:
    """Restore a checkpoint saved by ``save_checkpoint`` (collective) and return its state.

    ConfigError (one line) when the checkpoint does not match the prepared model
    (a checkpoint from a different config) or one of its files is unreadable
    (``checkpoint_problem``, skipped with ``checked``: the caller just ran it).
    """
    ckpt = Path(ckpt)
    problem = None if checked else _agreed(checkpoint_problem(ckpt))
    if problem:
        raise ConfigError(problem)
    try:
        state = TrainerState.from_json((ckpt / TRAINER_STATE).read_text())
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise ConfigError(f"{ckpt / TRAINER_STATE}: unreadable trainer state ({e})") from None
    try:
        if uses_deepspeed(accelerator):
            accelerator.load_state(str(ckpt), load_module_strict=False)
        else:
            accelerator.load_state(str(ckpt))
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{ckpt}: checkpoint does not match this model/config ({first[:300]})") from None
    except (pickle.UnpicklingError, EOFError, OSError, zipfile.BadZipFile) as e:  # what the checks above let by
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{ckpt}: unreadable checkpoint ({type(e).__name__}: {first[:200]})") from None
    r = accelerator.process_index
    if state.rng and r < len(state.rng):
        set_rng_state(state.rng[r])
    return state


def _agreed(problem: Optional[str]) -> Optional[str]:
    """Every rank's verdict on one checkpoint, the first problem any rank saw (collective when
    distributed): all ranks load the same checkpoint or fall back together."""
    return next((p for p in dist_utils.all_gather_object(problem) if p), None)


def resume_state(accelerator, run_dir: str | Path, logger=None, *, what: str = "training",
                 run_id: Optional[str] = None) -> TrainerState:
    """The state to continue from: the latest complete checkpoint of ``run_dir``
    (of run ``run_id`` when given) restored (collective; ``logger``'s metrics
    lines beyond it dropped), or a fresh ``TrainerState`` when there is none
    (said in one line; the metrics of the interrupted attempt are dropped).
    A checkpoint with an unreadable file is passed over with one warning line
    naming the file (stderr), newest first (see the module doc)."""
    cands = _resume_candidates(run_dir, run_id)
    ckpt = None
    for i, cand in enumerate(cands):
        problem = _agreed(checkpoint_problem(cand))
        if problem is None:
            ckpt = cand
            break
        nxt = f"the previous checkpoint {cands[i + 1]}" if i + 1 < len(cands) else "nothing (no older checkpoint)"
        if dist_utils.is_main():
            print(f"{what}: warning: {problem}; resuming from {nxt}", file=sys.stderr, flush=True)
    if ckpt is None:
        none = "no usable checkpoint" if cands else "no checkpoint"
        dist_utils.print0(f"{what}: --resume: {none} under {checkpoints_root(run_dir)}; starting fresh")
        if logger is not None:
            logger.truncate_after(0)
        return TrainerState(run_id=run_id)
    state = load_checkpoint(accelerator, ckpt, checked=True)
    state.run_id = run_id if run_id is not None else state.run_id
    if logger is not None:
        logger.truncate_after(state.step)
    dist_utils.print0(f"{what}: resumed from {ckpt} (step {state.step}, epoch {state.epoch}, "
                      f"batch {state.batch_in_epoch})")
    return state


def export_folder(accelerator, model, dest: str | Path, write: Callable, params=None) -> Path:
    """Export a model folder from rank 0; collective (every rank calls it).

    ``write(module, tmp_dir)`` writes the folder's files from the unwrapped,
    full module (under ZeRO-3 ``params``, default all, are gathered first; see
    ``accelerator.unwrap_for_save``) into a new folder beside ``dest``, which
    then replaces ``dest`` atomically (``run_folder.swap_in``: old renamed
    aside, new renamed in, old deleted; a crash in between is repaired at the
    next start). The one export path of both stages.
    """
    from slt_llm.training.run_folder import new_folder, swap_in

    dest = Path(dest)
    with unwrap_for_save(accelerator, model, params) as full:
        if accelerator.is_main_process:
            tmp = new_folder(dest)
            try:
                write(full, tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            swap_in(tmp, dest)
    accelerator.wait_for_everyone()
    return dest
