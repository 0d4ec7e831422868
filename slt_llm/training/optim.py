"""Optimizer and learning-rate schedule: parameter groups with per-part learning
rates (encoder, projector, LoRA, heads; no decay on biases/norms), AdamW or
8-bit AdamW, warmup + cosine/constant ``LambdaLR``."""

from __future__ import annotations

import math
from typing import Callable

import torch

from slt_llm.config import OptimConfig
from slt_llm.errors import ConfigError


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

    AdamW is torch's fused implementation where every parameter allows it (floating
    point, on CPU or CUDA): one kernel for all tensors instead of a Python loop of
    ~10 element-wise ops per tensor (CPU default), 13 ms -> 0.5 ms a step for the
    demo's 63 encoder tensors (docs/perf/step.md). Same update rule; the rounding of
    the last bit may differ from the loop.
    """
    name = optim_cfg.optimizer.lower()
    if name == "adamw":
        params = [p for g in param_groups for p in g["params"]]
        fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.AdamW(param_groups, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)
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
