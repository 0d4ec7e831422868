"""Checkpoints: where a run is (``TrainerState``), RNG state, save / load / rotate.

Owns the checkpoint folder layout ``RUN_DIR/checkpoints/step_N/`` (Accelerate
state, ZeRO shards under DeepSpeed, + ``trainer_state.json`` written last so a
checkpoint without it is incomplete and ignored), rotation to the newest
``keep``, per-rank RNG states (python, numpy, torch) saved with the trainer
state, and seeding. ``TrainerState`` also records the best model on dev
(``best_metric``/``best_step``) for both stages.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from slt_llm import distributed as dist_utils
from slt_llm.errors import ConfigError
from slt_llm.training.accelerator import uses_deepspeed

CHECKPOINT_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"


# -------------------------------------------------------------------------- seeding
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) identically on every rank."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


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
    (micro) batches of ``epoch`` already consumed. best_dev_bleu: best dev
    BLEU-4 so far (None before the first evaluation). skipped: bad samples
    skipped so far. rng: per-rank RNG states (filled when saved).
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_dev_bleu: Optional[float] = None
    best_step: Optional[int] = None
    skipped: int = 0
    rng: list = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrainerState":
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints (those with a trainer state), oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("step_") and d.name[5:].isdigit() and (d / TRAINER_STATE).is_file():
            found.append((int(d.name[5:]), d))
    return [d for _, d in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(accelerator, run_dir: str | Path, state: TrainerState, keep: int) -> Path:
    """Save model/optimizer/scheduler (ZeRO shards under DeepSpeed) + trainer state.

    Under DeepSpeed frozen parameters (the base LLM) are left out of the shards
    (they come from ``llm.path`` again on resume). Collective: every rank must
    call it. The trainer state JSON is written last
    (by rank 0), so a checkpoint without it is incomplete and ignored; older
    checkpoints beyond ``keep`` are removed. Cost: one full write of the
    trainable state (and of frozen weights under DeepSpeed engines).
    """
    out = checkpoint_dir(run_dir, state.step)
    if uses_deepspeed(accelerator):  # the frozen base LLM is not duplicated in every checkpoint
        accelerator.save_state(str(out), exclude_frozen_parameters=True)
    else:
        accelerator.save_state(str(out))
    state.rng = dist_utils.all_gather_object(rng_state())
    if accelerator.is_main_process:
        tmp = out / (TRAINER_STATE + ".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(out / TRAINER_STATE)
        if keep > 0:
            for old in list_checkpoints(run_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return out


def load_checkpoint(accelerator, ckpt: str | Path) -> TrainerState:
    """Restore a checkpoint saved by ``save_checkpoint`` (collective) and return its state.

    ConfigError when the checkpoint does not match the prepared model (a
    checkpoint from a different config) or its trainer state is unreadable.
    """
    ckpt = Path(ckpt)
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
    r = accelerator.process_index
    if state.rng and r < len(state.rng):
        set_rng_state(state.rng[r])
    return state
