"""The Accelerator of a run, and what it takes to start and end one cleanly.

Owns: checking a DeepSpeed JSON (``check_deepspeed_config``), building the
``Accelerator`` (DeepSpeed as Accelerate's plugin, configured from a
declarative JSON whose ``"auto"`` values Accelerate fills in:
``train_micro_batch_size_per_gpu``, ``gradient_accumulation_steps``,
``gradient_clipping``, ``bf16``/``fp16``; gloo process group on CPU), the
teardown that lets another run start in the same process (including dropping
DeepSpeed's cached private process-group globals), and the small queries and
contexts that depend on the engine: ``uses_deepspeed``, ``zero_stage``,
``forward_context`` (autocast under DeepSpeed half precision) and
``unwrap_for_save`` (ZeRO-3 gather for saving). Nothing here builds a
DeepSpeed dict in Python or wraps DDP inside DeepSpeed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Iterable, Optional

import torch

from slt_llm import distributed as dist_utils
from slt_llm.config import OptimConfig, TrainConfig, resolve_deepspeed_path
from slt_llm.errors import ConfigError
from slt_llm.run_layout import tensorboard_dir


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
    """``train.deepspeed`` if set, else the file an ``accelerate launch`` DeepSpeed config named;
    a relative path found in the working folder, else among the shipped copies
    (``config.resolve_deepspeed_path``; ``load_config`` already tried the run config's folder),
    so a launch works from any folder."""
    if train_cfg.deepspeed:
        return resolve_deepspeed_path(train_cfg.deepspeed)
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        env = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
        if env and env != "none":
            found = resolve_deepspeed_path(env)
            os.environ["ACCELERATE_DEEPSPEED_CONFIG_FILE"] = found  # what Accelerate itself may read
            return found
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
        kwargs.update(log_with="tensorboard", project_dir=str(tensorboard_dir(train_cfg.run_dir)))
    accelerator = Accelerator(**kwargs)
    dist_utils.check_world(train_cfg.num_machines, on_error=lambda: teardown(accelerator))  # not alone when machines were asked for
    if ds_path is not None:
        ds_cfg = accelerator.state.deepspeed_plugin.deepspeed_config
        # no DataLoader goes through prepare(): tell DeepSpeed the micro batch ourselves
        if ds_cfg.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            ds_cfg["train_micro_batch_size_per_gpu"] = train_cfg.batch_size
        if ds_cfg.get("train_batch_size") == "auto":
            ds_cfg["train_batch_size"] = train_cfg.batch_size * train_cfg.grad_accum * accelerator.num_processes
    return accelerator


def start_tracking(accelerator) -> None:
    """Open the TensorBoard writer ``setup_accelerator`` configured (``<run_dir>/tb``), if any.
    Call it after the run folder is claimed (``run_folder.claim_run_dir``): the writer creates
    its event file at once, and a claim counts ``tb`` as a run's artifact (``--overwrite``
    removes it, a fresh run refuses a folder holding one)."""
    if getattr(accelerator, "log_with", None):
        accelerator.init_trackers("run")


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
    process (tests, notebooks). Under a launcher the launcher's process group is kept
    (destroyed at exit) and only Accelerate's and transformers' DeepSpeed state is reset,
    so a second run in the same processes (stage 1's separate reference run, then the
    target model) gets its own Accelerator."""
    from accelerate.state import AcceleratorState, GradientState

    launched = os.environ.get("RANK") is not None and not _OWN_ENV
    if launched:
        # keep the launcher's process group (Accelerator.end_training would destroy it; it
        # goes at exit), forget the rest: a second run in this process (stage 1's reference
        # run, then the target model) builds a new Accelerator with its own DeepSpeed
        # plugin, which Accelerate refuses while the first one's state lives
        for tracker in accelerator.trackers:
            tracker.finish()
        _destroy_group_at_exit()
        _unset_hf_deepspeed_config()
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
        return
    accelerator.end_training()

    if _OWN_ENV:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        _forget_deepspeed_groups()
        _unset_hf_deepspeed_config()
        for k, v in _OWN_ENV.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _OWN_ENV.clear()
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


_AT_EXIT: list = []


def _destroy_group_at_exit() -> None:
    """Register (once) the process group's destruction at interpreter exit."""
    if _AT_EXIT:
        return
    import atexit

    import torch.distributed as dist

    def _destroy() -> None:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

    atexit.register(_destroy)
    _AT_EXIT.append(_destroy)


def _unset_hf_deepspeed_config() -> None:
    """transformers keeps the last DeepSpeed config in a module global (zero.Init for
    ``from_pretrained`` under ZeRO-3 follows it): drop it with the run."""
    try:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config
    except ImportError:  # pragma: no cover
        return
    unset_hf_deepspeed_config()


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
