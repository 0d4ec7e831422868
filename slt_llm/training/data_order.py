"""The order in which a run sees its data, identical for any number of processes.

Data parallelism is done here, not by a prepared DataLoader: every epoch has
one deterministic order (a permutation seeded by ``seed + epoch``), cut into
*global* batches of ``batch_size * world_size`` samples; rank r takes the r-th
slice of each. So a run on W processes with batch ``b`` sees exactly the same
global batches as one process with batch ``W * b``, and a resumed run skips the
batches already done and continues with the same order. The one definition of a
random global-batch order (``random_global_batches``), also stage 1's random
batches (``RandomGlobalBatchSampler``; pair selection's curriculum batches come
from ``contrastive.selection.PairSelectionBatchSampler``). Also the padded
evaluation shards (``shard_evenly``) that keep ZeRO-3 collectives in step.
"""

from __future__ import annotations

import math

import numpy as np

from slt_llm.config import TrainConfig
from slt_llm.contrastive.selection import GlobalBatchSampler


# ------------------------------------------------------------------- data ordering
def _rng(seed: int, epoch: int, stream: tuple = ()) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, *stream])


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: a permutation that depends only on (seed, epoch, N)."""
    if not shuffle:
        return np.arange(num_samples)
    return _rng(seed, epoch).permutation(num_samples)


def random_global_batches(num_samples: int, global_batch: int, seed: int, epoch: int, *, stream: tuple = (),
                          drop_last: bool = True, multiple_of: int = 1, shuffle: bool = True) -> np.ndarray:
    """THE random global-batch order (stage 2 and stage 1's random batches), (batches, global_batch) int64.

    A permutation drawn from ``default_rng([seed, epoch, *stream])`` (``stream`` keeps
    independent orders apart: stage 1's random batches use ``(11,)``), cut into full global
    batches, their count rounded down to a multiple of ``multiple_of`` (the accumulation
    steps). ``drop_last=False`` keeps a last partial batch, topped up with distinct samples
    of the full batches drawn by the same generator (only with ``multiple_of=1``)."""
    n, b = int(num_samples), int(global_batch)
    rng = _rng(seed, epoch, stream)
    order = rng.permutation(n) if shuffle else np.arange(n)
    full = (n // b) // multiple_of * multiple_of
    batches = [order[i * b:(i + 1) * b] for i in range(full)]
    if n % b and not drop_last:
        if multiple_of != 1:
            raise ValueError("drop_last=False needs multiple_of=1")
        left = order[full * b:]
        filler = rng.choice(order[:full * b], size=b - len(left), replace=False)
        batches.append(np.concatenate([left, filler]))
    return np.stack(batches).astype(np.int64) if batches else np.zeros((0, b), np.int64)


def global_batches(num_samples: int, global_batch: int, seed: int, epoch: int, *, shuffle: bool = True,
                   multiple_of: int = 1) -> list[list[int]]:
    """Cut the epoch order into full global batches (the last partial one is dropped).

    The count is rounded down to a multiple of ``multiple_of`` (the accumulation
    steps) so that every optimizer step has the same number of micro-batches.
    (:func:`random_global_batches` as lists.)
    """
    return random_global_batches(num_samples, global_batch, seed, epoch, shuffle=shuffle,
                                 multiple_of=multiple_of).tolist()


class RandomGlobalBatchSampler(GlobalBatchSampler):
    """Random global batches as a batch sampler (the GFSLT-VLP baseline, stage 1's
    ``selection=random`` and reference phases): :func:`random_global_batches` with
    ``stream=(11,)``; same slicing, last-batch rule and interface as
    ``contrastive.selection.PairSelectionBatchSampler``."""

    STREAM = (11,)

    def _build(self, epoch: int) -> np.ndarray:
        return random_global_batches(self.num_samples, self.global_batch_size, self.seed, epoch,
                                     stream=self.STREAM, drop_last=self.drop_last)


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
