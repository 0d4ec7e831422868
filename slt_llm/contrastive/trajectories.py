"""Similarity trajectories of candidate negative pairs over K reference checkpoints.

Setting: K reference checkpoints of the stage-1 random-batch run (k = 0..K-1).
At checkpoint k every training sample has a video embedding v_i^k and a text
embedding t_i^k (both (N, d); both change with k because the heads train).
A negative pair (i, j), i != j, is (video i, text j); its similarity at k is
s^k(i, j) = <v_i^k, t_j^k> (the embeddings are used as given: pass
L2-normalised ones for cosines) and its trajectory is (s^0, ..., s^{K-1}).

Candidates (``compute_trajectories``): for every anchor video i keep the M texts
j != i with the largest  max(s^0(i, j), s^{K-1}(i, j)),  i.e. the pairs that are
similar at the FIRST or at the LAST checkpoint, so pairs the reference model
learned to push apart (high-to-low) are kept as well as pairs that became
similar (low-to-high). Only the first and the last checkpoints are scanned in
full; the other checkpoints are evaluated only on the kept candidates.

Algorithm and cost (N samples, d dims, M candidates, K checkpoints, row block b):
  * Scan: for each block of b anchors, S0 = V0[blk] T0^T and SL = VL[blk] TL^T
    (two (b, N) products into reused buffers; the diagonal i == j and padding
    are set to -inf). Exact top-M without a full top-k over N columns: the
    columns are cut into G groups of g columns; the top-M groups by the
    max over the group of max(S0, SL) (two read-only ``amax`` passes) contain
    every top-M entry, so a top-M over those M*g entries is exact (group q holds
    the columns q, G+q, 2G+q, ... so its max is a vectorised elementwise max). Compute
    2*N*N*d multiply-adds (2 "floors"; a floor = one blockwise N x N x d
    product) plus 2 memory passes over each (b, N) block.
  * Other checkpoints: s^k(i, cand) by SDDMM (sparse.sampled_addmm), O(N*M*d) each.
  * Memory: O(N*M*K) for the result, 2*b*N*4 bytes of scan buffers (b is capped
    by ``memory_mb``), the first and last text matrices as float32 (2*N*d*4),
    and one checkpoint's matrices at a time. N x N is never formed.

Inputs may be torch tensors or numpy arrays (memmaps work: video rows are read
one block at a time; float16 storage is fine, maths is float32).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from slt_llm.errors import ConfigError, InputError


@dataclass
class Trajectories:
    """Candidate negatives and their similarity trajectories.

    cand: (N, M) int32, cand[i, m] = text index j of the m-th candidate of video
        anchor i, ordered by max(s^0, s^{K-1}) descending; never i itself.
    traj: (N, M, K) float32 (or float16), traj[i, m, k] = s^k(i, cand[i, m]).
    positive: (N, K) float32, s^k(i, i) (the positive pair's trajectory).
    """

    cand: torch.Tensor
    traj: torch.Tensor
    positive: torch.Tensor

    @property
    def num_samples(self) -> int:
        return int(self.cand.shape[0])

    @property
    def top_m(self) -> int:
        return int(self.cand.shape[1])

    @property
    def num_checkpoints(self) -> int:
        return int(self.traj.shape[2])

    def save(self, path: str | Path) -> None:
        """Write an uncompressed .npz (cand, traj, positive)."""
        np.savez(path, cand=self.cand.numpy(), traj=self.traj.numpy(), positive=self.positive.numpy())

    @classmethod
    def load(cls, path: str | Path) -> "Trajectories":
        try:
            with np.load(path) as z:
                cand, traj, positive = z["cand"], z["traj"], z["positive"]
        except (OSError, KeyError, ValueError) as e:
            raise InputError(path, f"not a trajectories .npz ({e})") from None
        n, m = cand.shape
        if traj.shape[:2] != (n, m) or positive.shape != (n, traj.shape[2]) or traj.shape[2] < 2:
            raise InputError(path, f"inconsistent shapes cand {cand.shape}, traj {traj.shape}, positive {positive.shape}")
        return cls(torch.from_numpy(cand), torch.from_numpy(traj), torch.from_numpy(positive))


def _as_tensor(x, rows: Optional[slice] = None) -> torch.Tensor:
    """float32 CPU tensor of x[rows] (x a tensor or an array/memmap)."""
    if rows is not None:
        x = x[rows]
    if torch.is_tensor(x):
        return x.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.array(x, dtype=np.float32))  # a writable float32 copy of the rows


def _check_inputs(videos: Sequence, texts: Sequence) -> tuple[int, int, int]:
    k = len(videos)
    if k != len(texts):
        raise ConfigError(f"trajectories: {len(videos)} video and {len(texts)} text checkpoints")
    if k < 2:
        raise ConfigError(f"trajectories: need at least 2 reference checkpoints (first and last), got {k}")
    shape = tuple(videos[0].shape)
    if len(shape) != 2 or shape[0] < 2:
        raise ConfigError(f"trajectories: embeddings must be (N >= 2, d), got {shape}")
    for name, seq in (("video", videos), ("text", texts)):
        for i, x in enumerate(seq):
            if tuple(x.shape) != shape:
                raise ConfigError(f"trajectories: {name} checkpoint {i} has shape {tuple(x.shape)}, expected {shape}")
    return k, shape[0], shape[1]


def group_size_for(n: int, m: int, max_group: int = 128) -> int:
    """Columns per group g in the exact grouped top-M. The per-row work is one
    pass over N (the amax), a top-M over N/g group maxima and a gather of M*g
    entries; g ~ sqrt(N/M) balances the last two. At least 2*M groups, g <= max_group."""
    g = int(round(math.sqrt(n / max(m, 1))))
    return int(max(1, min(max_group, g, n // (2 * m))))


def compute_trajectories(
    videos: Sequence,
    texts: Sequence,
    *,
    top_m: int = 64,
    block_size: int = 4096,
    memory_mb: float = 1024.0,
    dtype: torch.dtype = torch.float32,
    progress: Optional[Callable[[str, int, int], None]] = None,
) -> Trajectories:
    """Top-M candidate negatives per anchor and their K-checkpoint trajectories (see module doc).

    Args:
        videos, texts: K >= 2 sequences of (N, d) embeddings (checkpoint order).
        top_m: M; clamped to N - 1.
        block_size: anchors per scan block (b), further capped so the two
            (b, N) float32 scan buffers fit in ``memory_mb``.
        dtype: storage of ``traj`` (float32 or float16).
        progress: optional callback(stage, done, total).
    Returns: ``Trajectories`` with cand (N, M) int32, traj (N, M, K), positive (N, K).
    Raises: ConfigError for K < 2 or mismatched shapes (before any work).
    """
    k_total, n, d = _check_inputs(videos, texts)
    if top_m < 1 or block_size < 1:
        raise ConfigError(f"trajectories: top_m ({top_m}) and block_size ({block_size}) must be >= 1")
    m = min(int(top_m), n - 1)
    g = group_size_for(n, m)
    n_groups = -(-n // g)
    n_pad = n_groups * g
    b = int(max(1, min(block_size, n, (memory_mb * 2**20) // (2 * n_pad * 4))))
    last = k_total - 1

    def padded_text(k: int) -> torch.Tensor:
        t = torch.zeros(n_pad, d, dtype=torch.float32)
        for s in range(0, n, 65536):  # chunked copy: no second full-size temporary
            t[s : min(n, s + 65536)] = _as_tensor(texts[k], slice(s, min(n, s + 65536)))
        return t

    t_first, t_last = padded_text(0), padded_text(last)
    cand = torch.empty(n, m, dtype=torch.int32)
    traj = torch.empty(n, m, k_total, dtype=dtype)
    positive = torch.empty(n, k_total, dtype=torch.float32)
    buf0 = torch.empty(b, n_pad, dtype=torch.float32)
    buf1 = torch.empty(b, n_pad, dtype=torch.float32)
    offsets = torch.arange(g)
    n_blocks = -(-n // b)
    for bi, i0 in enumerate(range(0, n, b)):
        i1 = min(n, i0 + b)
        bs = i1 - i0
        rows = torch.arange(bs)
        v0 = _as_tensor(videos[0], slice(i0, i1))  # (bs, d)
        vl = _as_tensor(videos[last], slice(i0, i1))
        positive[i0:i1, 0] = (v0 * t_first[i0:i1]).sum(1)
        positive[i0:i1, last] = (vl * t_last[i0:i1]).sum(1)
        s0, sl = buf0[:bs], buf1[:bs]  # contiguous leading rows, (bs, n_pad)
        torch.mm(v0, t_first.t(), out=s0)
        torch.mm(vl, t_last.t(), out=sl)
        for s in (s0, sl):
            s[rows, rows + i0] = float("-inf")  # the positive is not a negative
            if n_pad > n:
                s[:, n:] = float("-inf")
        if g > 1:
            # group q = columns {q, G+q, 2G+q, ...}: the max over a group is an elementwise
            # max of g contiguous (bs, G) slices (vectorised, one read of each buffer)
            gmax = torch.maximum(s0.view(bs, g, n_groups).amax(1), sl.view(bs, g, n_groups).amax(1))  # (bs, G)
            top_groups = torch.topk(gmax, m, dim=1, sorted=False).indices  # (bs, M)
            cols = (offsets * n_groups + top_groups.unsqueeze(2)).reshape(bs, m * g)  # (bs, M*g) column ids
        else:
            cols = None
        c0 = s0 if cols is None else s0.gather(1, cols)
        cl = sl if cols is None else sl.gather(1, cols)
        best = torch.topk(torch.maximum(c0, cl), m, dim=1, sorted=True).indices  # (bs, M)
        chosen = best if cols is None else cols.gather(1, best)
        cand[i0:i1] = chosen.to(torch.int32)
        traj[i0:i1, :, 0] = c0.gather(1, best).to(dtype)
        traj[i0:i1, :, last] = cl.gather(1, best).to(dtype)
        if progress is not None:
            progress("scan", bi + 1, n_blocks)
    del buf0, buf1, t_first, t_last

    # other checkpoints: only the kept candidates, O(N*M*d) each
    if last > 1:
        cand_long = cand.reshape(-1).long()
        crow = torch.arange(0, n * m + 1, m)
    for k in range(1, last):
        t_k = padded_text(k)[:n]
        v_k = torch.empty(n, d, dtype=torch.float32)
        for s in range(0, n, 65536):
            v_k[s : s + 65536] = _as_tensor(videos[k], slice(s, min(n, s + 65536)))
        positive[:, k] = (v_k * t_k).sum(1)
        traj[:, :, k] = _sampled_dots(v_k, t_k, cand_long, crow, n, m).to(dtype)
        if progress is not None:
            progress("checkpoint", k, last - 1)
        del t_k, v_k
    return Trajectories(cand=cand, traj=traj, positive=positive)


def _sampled_dots(v: torch.Tensor, t: torch.Tensor, cols: torch.Tensor, crow: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """(N, M) dot products <v_i, t_cols[i, m]> without forming N x N: a sampled
    dense-dense product (SDDMM, ``torch.sparse.sampled_addmm`` over the CSR
    pattern of the candidates), O(N*M*d) compute and no (N, M, d) temporary.
    Falls back to gathered row blocks + bmm where SDDMM is unavailable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            pattern = torch.sparse_csr_tensor(crow, cols, torch.zeros(n * m), size=(n, t.shape[0]))
            return torch.sparse.sampled_addmm(pattern, v, t.t(), beta=0.0).values().view(n, m)
    except (RuntimeError, NotImplementedError):  # pragma: no cover - older builds
        out = torch.empty(n, m)
        gb = max(1, (4 * 2**20) // (m * v.shape[1] * 4))
        c2 = cols.view(n, m)
        for i0 in range(0, n, gb):
            out[i0 : i0 + gb] = torch.bmm(t[c2[i0 : i0 + gb]], v[i0 : i0 + gb].unsqueeze(2)).squeeze(2)
        return out


def brute_force_trajectories(videos: Sequence, texts: Sequence, top_m: int) -> Trajectories:
    """Reference implementation forming every N x N matrix (tests / tiny N only)."""
    k_total, n, _ = _check_inputs(videos, texts)
    m = min(top_m, n - 1)
    sims = [_as_tensor(v) @ _as_tensor(t).t() for v, t in zip(videos, texts)]  # K x (N, N)
    key = torch.maximum(sims[0], sims[-1])
    key.fill_diagonal_(float("-inf"))
    cand = torch.topk(key, m, dim=1, sorted=True).indices
    traj = torch.stack([s.gather(1, cand) for s in sims], dim=2)
    positive = torch.stack([s.diagonal() for s in sims], dim=1)
    return Trajectories(cand.to(torch.int32), traj, positive.contiguous())
