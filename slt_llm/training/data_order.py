"""The order in which a run sees its data, identical for any number of processes.

Data parallelism is done here, not by a prepared DataLoader: every epoch has
one deterministic order (a permutation seeded by ``seed + epoch``), cut into
*global* batches of ``batch_size * world_size`` samples; rank r takes the r-th
slice of each. So a run on W processes with batch ``b`` sees exactly the same
global batches as one process with batch ``W * b``, and a resumed run skips the
batches already done and continues with the same order. Also the padded
evaluation shards (``shard_evenly``) that keep ZeRO-3 collectives in step.
"""

from __future__ import annotations

import math

import numpy as np

from slt_llm.config import TrainConfig


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
