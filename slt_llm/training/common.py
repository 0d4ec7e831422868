"""Training infrastructure shared by both stages, written once over Accelerate.

DeepSpeed is Accelerate's plugin, configured from a declarative JSON file
(``ds_configs/*.json``) whose ``"auto"`` values Accelerate fills in
(``train_micro_batch_size_per_gpu``, ``gradient_accumulation_steps``,
``gradient_clipping``, ``bf16``/``fp16``). Nothing here builds a DeepSpeed dict
in Python or wraps DDP inside DeepSpeed.

Data parallelism is done by this module, not by a prepared DataLoader: every
epoch has one deterministic order (a permutation seeded by ``seed + epoch``),
cut into *global* batches of ``batch_size * world_size`` samples; rank r takes
the r-th slice of each. So a run on W processes with batch ``b`` sees exactly
the same global batches as one process with batch ``W * b``, and a resumed run
skips the batches already done and continues with the same order.

Token-level loss under data parallelism and gradient accumulation (torchtune
``lora_finetune_distributed.py``): each micro-batch's *summed* token loss is
multiplied by ``world_size * grad_accum / N`` where N is the number of target
tokens of the whole optimizer step (all ranks, all micro-steps). DDP/DeepSpeed
average gradients over ranks and Accelerate/DeepSpeed divide the loss by
``grad_accum``, so the final gradient is exactly d(sum of token losses)/dθ / N:
the same as one process computing the mean over the global batch.
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import torch

from slt_llm import distributed as dist_utils
from slt_llm.config import OptimConfig, TrainConfig
from slt_llm.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"


# ------------------------------------------------------------------ DeepSpeed JSON
def check_deepspeed_config(path: str | os.PathLike) -> dict:
    """Parse and sanity-check a DeepSpeed JSON file; ConfigError naming the file otherwise.

    Checked before any model is built: the file exists, is a JSON object, has a
    ``zero_optimization`` section with an integer ``stage`` in 0..3.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{path}: DeepSpeed config file not found")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: DeepSpeed config is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: DeepSpeed config must be a JSON object")
    zero = data.get("zero_optimization")
    if not isinstance(zero, dict):
        raise ConfigError(f"{path}: DeepSpeed config has no zero_optimization section")
    stage = zero.get("stage")
    if stage not in (0, 1, 2, 3):
        raise ConfigError(f"{path}: zero_optimization.stage must be 0, 1, 2 or 3 (got {stage!r})")
    return data


def _deepspeed_config_path(train_cfg: TrainConfig) -> Optional[str]:
    """``train.deepspeed`` if set, else the file an ``accelerate launch`` DeepSpeed config named."""
    if train_cfg.deepspeed:
        return train_cfg.deepspeed
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        env = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
        if env and env != "none":
            return env
        raise ConfigError(
            "accelerate launch asked for DeepSpeed without a deepspeed_config_file; "
            "use one of ds_configs/accelerate_*.yaml or set train.deepspeed=ds_configs/zero3.json"
        )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- Accelerator
def setup_accelerator(train_cfg: TrainConfig, optim_cfg: Optional[OptimConfig] = None, *, log_tensorboard: bool = True):
    """Build the ``Accelerator`` for a run (DeepSpeed plugin when configured).

    - On CPU the process group is created first with ``PartialState(backend="gloo")``:
      without it each process of ``accelerate launch --use_deepspeed`` on a CPU
      machine believes it is alone (world size 1).
    - DeepSpeed comes from ``train.deepspeed`` (a JSON path) or from the launch
      config; the JSON is checked first (``check_deepspeed_config``). Its "auto"
      entries are filled by Accelerate: micro batch = ``train.batch_size``,
      accumulation = ``train.grad_accum``, clipping = ``optim.max_grad_norm``,
      bf16/fp16 from ``train.mixed_precision``.
    - A single process asking for DeepSpeed without a launcher gets a
      one-process group on a free local port.
    - TensorBoard tracking under ``run_dir/tb`` when ``tensorboard`` is installed.
    """
    from accelerate import Accelerator, PartialState
    from accelerate.utils import DeepSpeedPlugin

    if train_cfg.mixed_precision not in ("no", "bf16", "fp16"):
        raise ConfigError(f"train.mixed_precision must be no, bf16 or fp16 (got {train_cfg.mixed_precision!r})")
    if train_cfg.grad_accum < 1 or train_cfg.batch_size < 1:
        raise ConfigError("train.batch_size and train.grad_accum must be >= 1")
    max_grad_norm = optim_cfg.max_grad_norm if optim_cfg is not None else 1.0

    ds_path = _deepspeed_config_path(train_cfg)
    if ds_path is not None:
        check_deepspeed_config(ds_path)
        if "RANK" not in os.environ:  # a plain `python` / `slt-llm train` process
            env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", LOCAL_RANK="0",
                       WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", ACCELERATE_USE_DEEPSPEED="true")
            _OWN_ENV.update({k: os.environ.get(k) for k in env})
            os.environ.update(env)
        # read by PartialState: the process group is then made by deepspeed.init_distributed
        os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"

    if not torch.cuda.is_available() and ("RANK" in os.environ or ds_path is not None):
        PartialState(backend="gloo")

    kwargs: dict = dict(mixed_precision=train_cfg.mixed_precision, step_scheduler_with_optimizer=False)
    if ds_path is not None:
        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(
            hf_ds_config=ds_path,
            gradient_accumulation_steps=train_cfg.grad_accum,
            gradient_clipping=max_grad_norm,
        )
    else:
        kwargs["gradient_accumulation_steps"] = train_cfg.grad_accum
    if log_tensorboard and _has_tensorboard():
        kwargs.update(log_with="tensorboard", project_dir=str(Path(train_cfg.run_dir) / "tb"))
    accelerator = Accelerator(**kwargs)
    dist_utils.check_world(train_cfg.num_machines, on_error=lambda: teardown(accelerator))  # not alone when machines were asked for
    if ds_path is not None:
        ds_cfg = accelerator.state.deepspeed_plugin.deepspeed_config
        # no DataLoader goes through prepare(): tell DeepSpeed the micro batch ourselves
        if ds_cfg.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            ds_cfg["train_micro_batch_size_per_gpu"] = train_cfg.batch_size
        if ds_cfg.get("train_batch_size") == "auto":
            ds_cfg["train_batch_size"] = train_cfg.batch_size * train_cfg.grad_accum * accelerator.num_processes
    if log_tensorboard and _has_tensorboard():
        accelerator.init_trackers("run")
    return accelerator


_OWN_ENV: dict = {}  # environment variables setup_accelerator set for a launcher-less DeepSpeed run


def _forget_deepspeed_groups() -> None:
    """DeepSpeed caches sub-groups of the process group in module globals
    (``deepspeed.utils.groups._WORLD_GROUP``, ...); after the process group is
    destroyed they are stale and the next in-process engine fails with "Group
    ... is not registered". Drop them with the group."""
    import sys

    groups = sys.modules.get("deepspeed.utils.groups")
    if groups is None:
        return
    for name, value in list(vars(groups).items()):
        if name.startswith("_") and (name.endswith("_GROUP") or name.endswith("_GROUP_RANKS")):
            if isinstance(value, dict):
                value.clear()
            elif value is not None and not callable(value):
                setattr(groups, name, None)


def teardown(accelerator) -> None:
    """End a run: flush trackers; in a launcher-less process also drop the process
    group and Accelerate's singleton state, so another run can start in the same
    process (tests, notebooks). Under a launcher the processes simply exit."""
    accelerator.end_training()
    launched = os.environ.get("RANK") is not None and not _OWN_ENV
    if launched:
        return
    from accelerate.state import AcceleratorState, GradientState

    if _OWN_ENV:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        _forget_deepspeed_groups()
        try:
            from transformers.integrations.deepspeed import unset_hf_deepspeed_config

            unset_hf_deepspeed_config()
        except ImportError:  # pragma: no cover
            pass
        for k, v in _OWN_ENV.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _OWN_ENV.clear()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def uses_deepspeed(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def zero_stage(accelerator) -> int:
    """ZeRO stage of the run (0 when DeepSpeed is off)."""
    if not uses_deepspeed(accelerator):
        return 0
    return int(accelerator.state.deepspeed_plugin.zero_stage)


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


# ------------------------------------------------------------------- data ordering
def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: a permutation that depends only on (seed, epoch, N)."""
    if not shuffle:
        return np.arange(num_samples)
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def global_batches(num_samples: int, global_batch: int, seed: int, epoch: int, *, shuffle: bool = True,
                   multiple_of: int = 1) -> list[list[int]]:
    """Cut the epoch order into full global batches (the last partial one is dropped).

    The count is rounded down to a multiple of ``multiple_of`` (the accumulation
    steps) so that every optimizer step has the same number of micro-batches.
    """
    order = epoch_order(num_samples, seed, epoch, shuffle)
    n = (num_samples // global_batch) // multiple_of * multiple_of
    return [order[i * global_batch:(i + 1) * global_batch].tolist() for i in range(n)]


def rank_slice(batch: list[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s part of a global batch (contiguous, equal sizes)."""
    per = len(batch) // world_size
    return batch[rank * per:(rank + 1) * per]


def steps_per_epoch(num_samples: int, train_cfg: TrainConfig, world_size: int) -> int:
    gb = train_cfg.batch_size * world_size
    return (num_samples // gb) // train_cfg.grad_accum


def total_steps(num_samples: int, train_cfg: TrainConfig, world_size: int) -> int:
    """``train.max_steps`` if set, else epochs * steps per epoch."""
    if train_cfg.max_steps is not None:
        return int(train_cfg.max_steps)
    return train_cfg.epochs * steps_per_epoch(num_samples, train_cfg, world_size)


def shard_evenly(n: int, rank: int, world_size: int) -> tuple[list[int], list[bool]]:
    """Rank ``rank``'s evaluation indices r, r+W, ... padded to the same count on every rank.

    Returns ``(indices, valid)``: padded entries repeat index ``n - 1`` and have
    ``valid`` False (drop their outputs after gathering). Evaluation under
    ZeRO-3 needs every rank to run the same number of forward passes, because
    parameters are all-gathered collectively.
    """
    per = math.ceil(n / world_size) if n else 0
    idx = [i * world_size + rank for i in range(per)]
    return [min(i, n - 1) for i in idx], [i < n for i in idx]


# ------------------------------------------------------------- optimizer, schedule
def default_param_group(name: str) -> str:
    """Which learning-rate group a parameter belongs to, from its qualified name."""
    if "lora_" in name:
        return "lora"
    first = name.split(".", 1)[0]
    if first in ("encoder", "projector"):
        return first
    return "head"


def make_param_groups(model: torch.nn.Module, optim_cfg: OptimConfig,
                      assign: Callable[[str], str] = default_param_group) -> list[dict]:
    """Trainable parameters split into groups with separate learning rates.

    Groups: encoder (``lr_encoder``), projector (``lr_projector``), lora
    (``lr_lora``), head (``lr_head``: stage-1 heads, temperature, anything
    else trainable); each split again into decay / no-decay (biases, norms,
    scalars: ``ndim < 2``). Empty groups are left out. Each group has a
    ``name`` key (e.g. ``"encoder"``, ``"encoder_no_decay"``).
    """
    lrs = {"encoder": optim_cfg.lr_encoder, "projector": optim_cfg.lr_projector,
           "lora": optim_cfg.lr_lora, "head": optim_cfg.lr_head}
    buckets: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        group = assign(name)
        if group not in lrs:
            raise ValueError(f"parameter {name}: unknown group {group!r}")
        decay = p.ndim >= 2
        buckets.setdefault((group, decay), []).append(p)
    groups = []
    for (group, decay), params in sorted(buckets.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        groups.append({"name": group if decay else f"{group}_no_decay", "params": params,
                       "lr": lrs[group], "weight_decay": optim_cfg.weight_decay if decay else 0.0})
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    return groups


def build_optimizer(param_groups: list[dict], optim_cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (torch) or bitsandbytes 8-bit AdamW (``optim.optimizer="adamw8bit"``).

    Optimizer state: AdamW 8 bytes per trainable parameter (fp32 m and v);
    AdamW8bit about 2 bytes (+ block-wise scales).
    """
    name = optim_cfg.optimizer.lower()
    if name == "adamw":
        return torch.optim.AdamW(param_groups, betas=(0.9, 0.999), eps=1e-8)
    if name == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as e:  # pragma: no cover - bitsandbytes is pinned
            raise ConfigError(f"optim.optimizer=adamw8bit needs bitsandbytes ({e})") from None
        return bnb.optim.AdamW8bit(param_groups, betas=(0.9, 0.999), eps=1e-8)
    raise ConfigError(f"optim.optimizer must be adamw or adamw8bit (got {optim_cfg.optimizer!r})")


def lr_factor(step: int, warmup_steps: int, total: int, schedule: str = "cosine") -> float:
    """Multiplier of the base learning rate before optimizer step ``step`` (0-based).

    Linear warmup from 1/(warmup+1) to 1 over ``warmup_steps``; then cosine decay
    to 0 at ``total`` (``schedule="cosine"``) or constant.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ConfigError(f"optim.schedule must be cosine or constant (got {schedule!r})")
    span = max(1, total - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: OptimConfig, total: int):
    """Warmup + cosine (or constant) ``LambdaLR``; step it once per optimizer step."""
    if optim_cfg.schedule not in ("cosine", "constant"):
        raise ConfigError(f"optim.schedule must be cosine or constant (got {optim_cfg.schedule!r})")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, optim_cfg.warmup_steps, total, optim_cfg.schedule))


# -------------------------------------------------------------- token-level loss
def global_token_count(local_tokens: int | torch.Tensor, device=None) -> int:
    """Sum of target tokens over all ranks (an all-reduce; identity in one process)."""
    t = torch.as_tensor(local_tokens, dtype=torch.float64, device=device).reshape(())
    return int(round(float(dist_utils.all_reduce_sum(t).item())))


def token_loss_scale(step_tokens_global: int, world_size: int, grad_accum: int) -> float:
    """Factor turning a micro-batch's summed token loss into the loss to backpropagate.

    ``world_size * grad_accum / N``: DDP/DeepSpeed average gradients over ranks
    and divide by ``grad_accum``; N = target tokens of the whole optimizer step
    (all ranks, all micro-steps). Result: gradient of (total token loss) / N.
    """
    return world_size * grad_accum / max(1, step_tokens_global)


def forward_context(accelerator):
    """Autocast for the forward pass.

    Under DeepSpeed with bf16/fp16 the engine casts the whole model to half
    precision but does not autocast, so float32 inputs (keypoints, pixels
    normalised in fp32) would meet half-precision weights; autocast makes
    matmuls/convolutions run in the half dtype and keeps reductions/norms in
    fp32. Elsewhere Accelerate's prepared model already autocasts: no-op.
    """
    import contextlib

    mp = accelerator.mixed_precision
    if uses_deepspeed(accelerator) and mp in ("bf16", "fp16"):
        return torch.autocast(device_type=accelerator.device.type,
                              dtype=torch.bfloat16 if mp == "bf16" else torch.float16)
    return contextlib.nullcontext()


# -------------------------------------------------------------------- move batches
def to_device(batch, device):
    """Tensors of a (nested) batch moved to ``device``; everything else untouched."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


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


# ------------------------------------------------------------------------ metrics
class MetricsLogger:
    """``RUN_DIR/metrics.jsonl``: one JSON object per logged step (rank 0 writes).

    Each line has at least ``step``, ``loss``, ``lr``, ``samples_per_s``, plus
    whatever else is passed (``epoch``, ``tokens``, ``grad_norm``,
    ``dev_bleu``...). Also forwarded to Accelerate's trackers (TensorBoard when
    installed). ``truncate_after(step)`` drops lines of a previous run beyond a
    resumed checkpoint so the file stays one consistent history.
    """

    def __init__(self, run_dir: str | Path, accelerator=None):
        self.path = Path(run_dir) / METRICS_FILE
        self.accelerator = accelerator
        self.is_main = accelerator.is_main_process if accelerator is not None else dist_utils.is_main()
        if self.is_main:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        if not self.is_main or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue
        self.path.write_text("".join(x + "\n" for x in kept))

    def log(self, step: int, **values) -> None:
        if not self.is_main:
            return
        record = {"step": int(step)}
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            if isinstance(v, (np.floating, np.integer)):
                v = v.item()
            record[k] = v
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.accelerator is not None and self.accelerator.trackers:
            self.accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"},
                                 step=step)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def progress_bar(total: int, initial: int = 0, enabled: bool = True, desc: str = "train"):
    """tqdm bar on rank 0 (disabled elsewhere or when ``enabled`` is false)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                disable=not (enabled and dist_utils.is_main()))


class Throughput:
    """Samples per second between two ``rate()`` calls (wall clock)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.samples = 0

    def add(self, n: int) -> None:
        self.samples += n

    def rate(self) -> float:
        now = time.perf_counter()
        r = self.samples / max(1e-9, now - self.t0)
        self.t0, self.samples = now, 0
        return r


def unwrap_for_save(accelerator, model: torch.nn.Module, params: Optional[Iterable[torch.nn.Parameter]] = None):
    """Context manager giving the full (unsharded) module, for ``save_pretrained`` on rank 0.

    Under ZeRO-3 the parameters are partitioned: ``params`` (default: every
    parameter) are gathered (``deepspeed.zero.GatheredParameters``) on all
    ranks for the duration; elsewhere it is a no-op. Collective: all ranks enter.
    Cost: the gathered parameters held in full on every rank meanwhile.
    """
    import contextlib

    unwrapped = accelerator.unwrap_model(model)
    if zero_stage(accelerator) == 3:
        import deepspeed

        plist = list(params) if params is not None else list(unwrapped.parameters())

        @contextlib.contextmanager
        def ctx():
            with deepspeed.zero.GatheredParameters(plist, modifier_rank=None):
                yield unwrapped

        return ctx()
    return contextlib.nullcontext(unwrapped)


# ------------------------------------------------------------ one optimizer step
def token_loss_step(accelerator, model, optimizer, scheduler, micro_batches: list, forward: Callable,
                    *, max_grad_norm: float, local_token_counts: Optional[list[int]] = None) -> dict:
    """One optimizer step over ``grad_accum`` micro-batches with a token-level loss.

    ``forward(model, batch) -> {"loss_sum": scalar tensor, "num_tokens": int}``
    (summed token loss of this rank's micro-batch). The backpropagated loss is
    ``loss_sum * token_loss_scale(N, W, grad_accum)``, N = target tokens of the
    whole step over all ranks, so the update equals one process taking the
    token mean over the global batch. With one micro-batch N comes from an
    all-reduce after the forward; with several, the caller passes each
    micro-batch's token count (``local_token_counts``, counted from the text
    before the forward) and they are checked against the model's.

    Returns ``{"loss": global token-mean loss, "tokens": N, "grad_norm": float|None}``.
    Collective: all ranks call it with the same number of micro-batches.
    """
    ga = len(micro_batches)
    world = accelerator.num_processes
    device = accelerator.device
    if ga != accelerator.gradient_accumulation_steps:
        raise ValueError(f"{ga} micro-batches for gradient_accumulation_steps={accelerator.gradient_accumulation_steps}")
    if ga > 1 and local_token_counts is None:
        raise ValueError("several micro-batches need local_token_counts (the step's token total before backward)")
    step_tokens = global_token_count(sum(local_token_counts), device) if local_token_counts is not None else None
    loss_sum_local = torch.zeros((), dtype=torch.float64, device=device)
    grad_norm = None
    model.train()
    for m, batch in enumerate(micro_batches):
        with accelerator.accumulate(model):
            with forward_context(accelerator):
                out = forward(model, batch)
            n_local = int(out["num_tokens"])
            if local_token_counts is not None and n_local != int(local_token_counts[m]):
                raise RuntimeError(f"token count mismatch: counted {local_token_counts[m]} before the forward, "
                                   f"the model reports {n_local}")
            if step_tokens is None:
                step_tokens = global_token_count(n_local, device)
            loss = out["loss_sum"] * token_loss_scale(step_tokens, world, ga)
            loss_sum_local += out["loss_sum"].detach().double()
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                if not uses_deepspeed(accelerator) and max_grad_norm and max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
    if uses_deepspeed(accelerator):
        try:
            grad_norm = accelerator.deepspeed_engine_wrapped.get_global_grad_norm()
        except Exception:  # older DeepSpeed / before the first step
            grad_norm = None
    if isinstance(grad_norm, torch.Tensor):
        grad_norm = grad_norm.item()
    total = float(dist_utils.all_reduce_sum(loss_sum_local).item())
    return {"loss": total / max(1, step_tokens), "tokens": int(step_tokens),
            "grad_norm": None if grad_norm is None else float(grad_norm)}
