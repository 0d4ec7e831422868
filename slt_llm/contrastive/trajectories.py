"""Similarity trajectories of candidate negative pairs over K reference checkpoints.

Setting: K reference checkpoints of a random-batch reference run (k = 0..K-1).
At checkpoint k every training sample has a video embedding v_i^k and a text
embedding t_i^k (both (N, d); both change with k because the heads train).
A negative pair (i, j), i != j, is (video i, text j); its similarity at k is
s^k(i, j) = <v_i^k, t_j^k> (pooled; the embeddings are used as given: pass
L2-normalised ones for cosines) or the fine-grained token similarity of
``compute_fine_trajectories`` / ``loss.fine_grained_similarity``; its trajectory
is (s^0, ..., s^{K-1}).

Drift removal: the similarities of ALL N(N-1) negative pairs at checkpoint k
have mean mu_k and standard deviation sd_k (``neg_mean``, ``neg_std``), and
z^k(i, j) = (s^k(i, j) - mu_k) / sd_k is a pair's place in its checkpoint's
distribution. Early in training every similarity rises together (a global
drift); z removes it. Pooled: mu_k and sd_k are exact and cheap,
sum_ij s = (sum_i v_i).(sum_j t_j) - sum_i s_ii and
sum_ij s^2 = <V^T V, T^T T>_F - sum_i s_ii^2, O(N d^2) per checkpoint.
Fine-grained: estimated from the full rows of min(N, moment_rows) random
anchors (exact when N <= moment_rows).

Candidates (``compute_trajectories``): for every anchor video i keep the M texts
j != i with the largest  max(z^0(i, j), z^{K-1}(i, j)),  i.e. the pairs that are
unusually similar at the FIRST or at the LAST checkpoint, so pairs the
reference model learned to push apart (high-to-low) are kept as well as pairs
that became similar (low-to-high). With raw cosines as the key the last
checkpoint would dominate (all similarities have risen by then) and the
high-to-low pairs would be lost; standardising per checkpoint keeps both. Only
the first and the last checkpoints are scanned in full; the other checkpoints
are evaluated only on the kept candidates. Stored values are RAW similarities
(``traj``, ``positive``) plus the moments, so scores can be recomputed.

Algorithm and cost (N samples, d dims, M candidates, K checkpoints, row block b):
  * Scan: for each block of b anchors, S0 = (V0[blk]/sd_0) T0^T and
    SL = (VL[blk]/sd_L) TL^T (two (b, N) products into reused buffers; the
    diagonal i == j and padding are set to -inf; the offsets -mu/sd are added to
    the small group maxima, not to the buffers). Exact top-M without a full
    top-k over N columns: the columns are cut into G groups of g columns; the
    top-M groups by the max over the group of max(z0, zL) (two read-only
    ``amax`` passes) contain every top-M entry, so a top-M over those M*g
    entries is exact (group q holds the columns q, G+q, 2G+q, ... so its max is
    a vectorised elementwise max). Compute 2*N*N*d multiply-adds (2 "floors";
    a floor = one blockwise N x N x d product) plus 2 memory passes over each
    (b, N) block, plus O(K N d^2) for the moments.
  * Other checkpoints: s^k(i, cand) by SDDMM (sparse.sampled_addmm), O(N*M*d) each.
  * Memory: O(N*M*K) for the result, 2*b*N*4 bytes of scan buffers (b is capped
    by ``memory_mb``), the first and last text matrices as float32 (2*N*d*4),
    and one checkpoint's matrices at a time. N x N is never formed.
  * Sharded (``rank``, ``world_size``): rank r scans only its contiguous block
    of anchor rows (and evaluates the middle checkpoints on them); the rows'
    results and the partial moment sums are gathered ONCE at the end
    (``torch.distributed.all_gather_object``), so every rank returns the same
    full ``Trajectories`` at 1/W of the compute. Equal to one process (tested
    with two gloo processes).

Inputs may be torch tensors or numpy arrays (memmaps work: video rows are read
one block at a time; float16 storage is fine, maths is float32).

Identity: ``ids_hash(sample_ids)`` is recorded in the saved file
(``Trajectories.save``, atomic: a unique temp file + rename) and
``Trajectories.load(path, expect_ids_hash=...)`` refuses a file computed on
other samples with a one-line ``InputError``.
"""

from __future__ import annotations

import hashlib
import math
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from slt_llm.allocator import scan
from slt_llm.errors import ConfigError, InputError


def ids_hash(sample_ids: Sequence[str]) -> str:
    """A short hash of the ordered training sample ids a trajectory set belongs to."""
    h = hashlib.sha256()
    for s in sample_ids:
        h.update(str(s).encode("utf-8", "surrogatepass") + b"\n")
    return h.hexdigest()[:16]


@dataclass
class Trajectories:
    """Candidate negatives and their similarity trajectories.

    cand: (N, M) int32, cand[i, m] = text index j of the m-th candidate of video
        anchor i, ordered by max(z^0, z^{K-1}) descending; never i itself.
    traj: (N, M, K) float32 (or float16), traj[i, m, k] = s^k(i, cand[i, m]) (raw).
    positive: (N, K) float32, s^k(i, i) (the positive pair's trajectory).
    neg_mean, neg_std: (K,) float64, mean and standard deviation of the
        similarities of all N(N-1) negative pairs at each checkpoint.
    ids_hash: ``ids_hash`` of the samples (None = not recorded).
    similarity: "pooled" or "fine".
    """

    cand: torch.Tensor
    traj: torch.Tensor
    positive: torch.Tensor
    neg_mean: Optional[np.ndarray] = None
    neg_std: Optional[np.ndarray] = None
    ids_hash: Optional[str] = None
    similarity: str = "pooled"

    def __post_init__(self):
        k = int(self.traj.shape[2])
        if self.neg_mean is None:  # hand-made sets: moments of the stored candidates (tests, tools)
            t = self.traj.float().numpy().reshape(-1, k).astype(np.float64)
            self.neg_mean = t.mean(0) if len(t) else np.zeros(k)
            self.neg_std = t.std(0) if len(t) else np.ones(k)
        self.neg_mean = np.asarray(self.neg_mean, dtype=np.float64).reshape(k)
        self.neg_std = np.maximum(np.asarray(self.neg_std, dtype=np.float64).reshape(k), 1e-8)

    @property
    def num_samples(self) -> int:
        return int(self.cand.shape[0])

    @property
    def top_m(self) -> int:
        return int(self.cand.shape[1])

    @property
    def num_checkpoints(self) -> int:
        return int(self.traj.shape[2])

    def standardized(self) -> np.ndarray:
        """(N, M, K) float32 z^k = (s^k - mu_k) / sd_k of the candidate pairs."""
        t = self.traj.float().numpy()
        return ((t - self.neg_mean.astype(np.float32)) / self.neg_std.astype(np.float32)).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Write an uncompressed .npz atomically (a unique temp file in the same folder, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, cand=self.cand.numpy(), traj=self.traj.numpy(), positive=self.positive.numpy(),
                         neg_mean=self.neg_mean, neg_std=self.neg_std,
                         ids_hash=np.array(self.ids_hash or ""), similarity=np.array(self.similarity))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @classmethod
    def load(cls, path: str | Path, expect_ids_hash: Optional[str] = None) -> "Trajectories":
        """Read a file written by ``save``; with ``expect_ids_hash`` a file computed on other
        samples (or one that recorded none) is refused."""
        try:
            with np.load(path) as z:
                cand, traj, positive = z["cand"], z["traj"], z["positive"]
                mean, std = z["neg_mean"], z["neg_std"]
                h = str(z["ids_hash"]) if "ids_hash" in z.files else ""
                sim = str(z["similarity"]) if "similarity" in z.files else "pooled"
        except (OSError, KeyError, ValueError) as e:
            raise InputError(path, f"not a trajectories .npz of this version ({e}); delete it to recompute") \
                from None
        n, m = cand.shape
        if traj.shape[:2] != (n, m) or positive.shape != (n, traj.shape[2]) or traj.shape[2] < 2:
            raise InputError(path, f"inconsistent shapes cand {cand.shape}, traj {traj.shape}, positive {positive.shape}")
        if expect_ids_hash is not None and h != expect_ids_hash:
            raise InputError(path, f"computed on other training samples (ids hash {h or 'none'}, this training "
                                   f"set {expect_ids_hash}); delete it to recompute")
        return cls(torch.from_numpy(cand), torch.from_numpy(traj), torch.from_numpy(positive), mean, std,
                   h or None, sim)


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


def shard_rows(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank r's contiguous block [lo, hi) of anchor rows (ceil(N/W) rows per rank)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"trajectories: bad rank {rank} / world_size {world_size}")
    per = -(-n // world_size)
    return min(n, rank * per), min(n, (rank + 1) * per)


def _gather(obj, world_size: int) -> list:
    if world_size == 1:
        return [obj]
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError(f"trajectories: world_size={world_size} but torch.distributed is not initialised")
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def _pooled_moment_sums(v_rows, t_full: torch.Tensor, t_sum: torch.Tensor, t_gram: torch.Tensor, lo: int,
                        hi: int, chunk: int = 65536) -> np.ndarray:
    """Partial sums (sum s, sum s^2) over the negative pairs of anchor rows [lo, hi):
    sum_j s_ij = v_i . sum_j t_j - s_ii and sum_j s_ij^2 = v_i^T (T^T T) v_i - s_ii^2."""
    s1 = s2 = 0.0
    for c0 in range(lo, hi, chunk):
        c1 = min(hi, c0 + chunk)
        v = _as_tensor(v_rows, slice(c0, c1))
        diag = (v * t_full[c0:c1]).sum(1)
        s1 += float((v @ t_sum).double().sum() - diag.double().sum())
        s2 += float(((v @ t_gram) * v).sum(1).double().sum() - (diag.double() ** 2).sum())
    return np.array([s1, s2])


def _moments(parts: list, n: int) -> tuple[float, float]:
    s1, s2 = np.sum(parts, axis=0)
    cnt = float(n) * (n - 1)
    mean = s1 / cnt
    return mean, math.sqrt(max(s2 / cnt - mean * mean, 0.0))


def _topm_block(s0: torch.Tensor, sl: torch.Tensor, c0: float, cl: float, m: int, g: int, n_groups: int,
                offsets: torch.Tensor):
    """Exact top-M of max(s0 + c0, sl + cl) per row of two (bs, n_pad) buffers (see module doc).
    Returns (chosen columns (bs, M), s0 at them, sl at them)."""
    bs = s0.shape[0]
    if g > 1:
        gmax = torch.maximum(s0.view(bs, g, n_groups).amax(1) + c0, sl.view(bs, g, n_groups).amax(1) + cl)
        top_groups = torch.topk(gmax, m, dim=1, sorted=False).indices  # (bs, M)
        cols = (offsets * n_groups + top_groups.unsqueeze(2)).reshape(bs, m * g)  # (bs, M*g) column ids
        a0, al = s0.gather(1, cols), sl.gather(1, cols)
    else:
        cols, a0, al = None, s0, sl
    best = torch.topk(torch.maximum(a0 + c0, al + cl), m, dim=1, sorted=True).indices  # (bs, M)
    chosen = best if cols is None else cols.gather(1, best)
    return chosen, a0.gather(1, best), al.gather(1, best)


def _assemble(parts: list, n: int, m: int, k_total: int, dtype, mean, std, similarity: str) -> Trajectories:
    cand = torch.empty(n, m, dtype=torch.int32)
    traj = torch.empty(n, m, k_total, dtype=dtype)
    positive = torch.empty(n, k_total, dtype=torch.float32)
    for lo, hi, c, t, p in parts:
        cand[lo:hi], traj[lo:hi], positive[lo:hi] = c, t, p
    return Trajectories(cand, traj, positive, np.asarray(mean), np.asarray(std), None, similarity)


@scan  # one-off (b, N) scan buffers: memory handed back, not kept (slt_llm.allocator)
def compute_trajectories(
    videos: Sequence,
    texts: Sequence,
    *,
    top_m: int = 64,
    block_size: int = 4096,
    memory_mb: float = 1024.0,
    dtype: torch.dtype = torch.float32,
    rank: int = 0,
    world_size: int = 1,
    progress: Optional[Callable[[str, int, int], None]] = None,
) -> Trajectories:
    """Top-M candidate negatives per anchor and their K-checkpoint trajectories (pooled; see module doc).

    Args:
        videos, texts: K >= 2 sequences of (N, d) embeddings (checkpoint order).
        top_m: M; clamped to N - 1.
        block_size: anchors per scan block (b), further capped so the two
            (b, N) float32 scan buffers fit in ``memory_mb``.
        dtype: storage of ``traj`` (float32 or float16).
        rank, world_size: shard the anchor rows over ranks (every rank passes the
            full inputs and gets the full result; one gather at the end).
        progress: optional callback(stage, done, total).
    Returns: ``Trajectories`` with cand (N, M) int32, traj (N, M, K), positive (N, K), moments (K,).
    Raises: ConfigError for K < 2 or mismatched shapes (before any work).
    """
    k_total, n, d = _check_inputs(videos, texts)
    if top_m < 1 or block_size < 1:
        raise ConfigError(f"trajectories: top_m ({top_m}) and block_size ({block_size}) must be >= 1")
    lo, hi = shard_rows(n, rank, world_size)
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

    # moments of every checkpoint's negative similarities (partial sums over this rank's rows)
    moment_parts = []
    t_first = t_last = None
    for k in range(k_total):
        t_k = padded_text(k)
        moment_parts.append(_pooled_moment_sums(videos[k], t_k[:n], t_k[:n].sum(0), t_k[:n].t() @ t_k[:n], lo, hi))
        if k == 0:
            t_first = t_k
        elif k == last:
            t_last = t_k
        else:
            del t_k
    moment_sums = _gather(moment_parts, world_size)
    stats = [_moments([ms[k] for ms in moment_sums], n) for k in range(k_total)]
    mean = np.array([s[0] for s in stats])
    std = np.maximum(np.array([s[1] for s in stats]), 1e-8)

    rows_n = hi - lo
    cand = torch.empty(rows_n, m, dtype=torch.int32)
    traj = torch.empty(rows_n, m, k_total, dtype=dtype)
    positive = torch.empty(rows_n, k_total, dtype=torch.float32)
    buf0 = torch.empty(b, n_pad, dtype=torch.float32)
    buf1 = torch.empty(b, n_pad, dtype=torch.float32)
    offsets = torch.arange(g)
    inv0, invl = float(1.0 / std[0]), float(1.0 / std[last])
    c0, cl = float(-mean[0] / std[0]), float(-mean[last] / std[last])
    n_blocks = -(-rows_n // b)
    for bi, i0 in enumerate(range(lo, hi, b)):
        i1 = min(hi, i0 + b)
        bs = i1 - i0
        rows = torch.arange(bs)
        v0 = _as_tensor(videos[0], slice(i0, i1))  # (bs, d)
        vl = _as_tensor(videos[last], slice(i0, i1))
        positive[i0 - lo : i1 - lo, 0] = (v0 * t_first[i0:i1]).sum(1)
        positive[i0 - lo : i1 - lo, last] = (vl * t_last[i0:i1]).sum(1)
        s0, sl = buf0[:bs], buf1[:bs]  # contiguous leading rows, (bs, n_pad)
        torch.mm(v0 * inv0, t_first.t(), out=s0)  # s / sd: the offset is added to small results only
        torch.mm(vl * invl, t_last.t(), out=sl)
        for s in (s0, sl):
            s[rows, rows + i0] = float("-inf")  # the positive is not a negative
            if n_pad > n:
                s[:, n:] = float("-inf")
        chosen, a0, al = _topm_block(s0, sl, c0, cl, m, g, n_groups, offsets)
        cand[i0 - lo : i1 - lo] = chosen.to(torch.int32)
        traj[i0 - lo : i1 - lo, :, 0] = (a0 * float(std[0])).to(dtype)  # back to raw similarities
        traj[i0 - lo : i1 - lo, :, last] = (al * float(std[last])).to(dtype)
        if progress is not None:
            progress("scan", bi + 1, n_blocks)
    del buf0, buf1, t_first, t_last

    # other checkpoints: only this rank's kept candidates, O(rows*M*d) each
    if last > 1 and rows_n:
        cand_long = cand.reshape(-1).long()
        crow = torch.arange(0, rows_n * m + 1, m)
    for k in range(1, last):
        if not rows_n:
            break
        t_k = padded_text(k)[:n]
        v_k = torch.empty(rows_n, d, dtype=torch.float32)
        for s in range(lo, hi, 65536):
            v_k[s - lo : min(hi, s + 65536) - lo] = _as_tensor(videos[k], slice(s, min(hi, s + 65536)))
        positive[:, k] = (v_k * t_k[lo:hi]).sum(1)
        traj[:, :, k] = _sampled_dots(v_k, t_k, cand_long, crow, rows_n, m).to(dtype)
        if progress is not None:
            progress("checkpoint", k, last - 1)
        del t_k, v_k
    parts = _gather((lo, hi, cand, traj, positive), world_size)
    return _assemble(parts, n, m, k_total, dtype, mean, std, "pooled")


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


# ------------------------------------------------------------- fine-grained
@scan  # one-off (b, N) scan buffers: memory handed back, not kept (slt_llm.allocator)
def compute_fine_trajectories(
    video_tokens: Sequence[tuple],
    text_tokens: Sequence[tuple],
    *,
    top_m: int = 64,
    block_size: int = 64,
    moment_rows: int = 512,
    dtype: torch.dtype = torch.float32,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
) -> Trajectories:
    """Trajectories with the CiCo-style fine-grained similarity (``loss.fine_grained_similarity``).

    Args:
        video_tokens: K pairs (tokens (N, Tv, d), mask (N, Tv) bool) - the encoder's
            per-time-step embeddings through checkpoint k's video head.
        text_tokens: K pairs (tokens (N, L, d), mask (N, L) bool) - the frozen LLM's
            token states through checkpoint k's text head (per sample).
        top_m, dtype, rank, world_size: as in ``compute_trajectories``.
        block_size: anchor rows per scan block (b).
        moment_rows: the negative-pair moments of a checkpoint are computed on the
            full rows of this many random anchors (exact when N <= moment_rows).
    Same candidate rule and outputs as ``compute_trajectories`` (similarity="fine").
    Cost: the first and last checkpoints are scanned in full: 2 N^2 Tv L d
    multiply-adds (Tv*L times a pooled scan), plus moment_rows/N of a scan per
    checkpoint and O(N M Tv L d) per middle checkpoint. Memory: the (b, N) scan
    buffers plus one (b, c, Tv, L) float32 block of token products (c = column
    chunk, sized to ~64 MB), the K token tensors given as input (kept in their
    dtype, float16 from stage 1) and float32 copies of at most two checkpoints'
    text tokens (2 x N x L x d x 4 bytes).
    """
    from slt_llm.contrastive.loss import fine_grained_similarity

    k_total = len(video_tokens)
    if k_total != len(text_tokens) or k_total < 2:
        raise ConfigError(f"fine trajectories: need K >= 2 matching checkpoints, got {k_total} and {len(text_tokens)}")
    n = int(video_tokens[0][0].shape[0])
    if n < 2:
        raise ConfigError("fine trajectories: need N >= 2 samples")
    lo, hi = shard_rows(n, rank, world_size)
    m = min(int(top_m), n - 1)
    last = k_total - 1
    # inputs are kept in their dtype (float16 from stage 1); maths is float32: video rows are
    # converted per block, the text tokens of at most two checkpoints at a time
    vt = [(torch.as_tensor(v), torch.as_tensor(vm).bool()) for v, vm in video_tokens]
    tt = [(torch.as_tensor(t), torch.as_tensor(tm).bool()) for t, tm in text_tokens]
    t32: dict = {}

    def text32(k: int) -> torch.Tensor:
        if k not in t32:
            if len(t32) >= 2:
                t32.pop(next(iter(t32)))
            t32[k] = tt[k][0].float()
        return t32[k]

    def rows_sim(k: int, r0: int, r1: int) -> torch.Tensor:
        (v, vm), (_, tm) = vt[k], tt[k]
        return fine_grained_similarity(v[r0:r1].float(), vm[r0:r1], text32(k), tm)

    # moments: full rows of a random subset of anchors (the same subset on every rank)
    pick = np.sort(np.random.default_rng(seed).permutation(n)[: min(n, moment_rows)])
    mine = pick[(pick >= lo) & (pick < hi)]
    sums = []
    for k in range(k_total):
        s1 = s2 = 0.0
        cnt = 0
        for i in mine.tolist():
            row = rows_sim(k, i, i + 1)[0].double()
            row = torch.cat([row[:i], row[i + 1 :]])
            s1, s2, cnt = s1 + float(row.sum()), s2 + float((row * row).sum()), cnt + row.numel()
        sums.append((s1, s2, cnt))
    all_sums = _gather(sums, world_size)
    mean, std = np.zeros(k_total), np.ones(k_total)
    for k in range(k_total):
        s1 = sum(p[k][0] for p in all_sums)
        s2 = sum(p[k][1] for p in all_sums)
        cnt = max(1, sum(p[k][2] for p in all_sums))
        mean[k] = s1 / cnt
        std[k] = max(math.sqrt(max(s2 / cnt - mean[k] ** 2, 0.0)), 1e-8)

    rows_n = hi - lo
    cand = torch.empty(rows_n, m, dtype=torch.int32)
    traj = torch.empty(rows_n, m, k_total, dtype=dtype)
    positive = torch.empty(rows_n, k_total, dtype=torch.float32)
    c0, cl = float(-mean[0] / std[0]), float(-mean[last] / std[last])
    for i0 in range(lo, hi, block_size):
        i1 = min(hi, i0 + block_size)
        bs = i1 - i0
        rows = torch.arange(bs)
        s0 = rows_sim(0, i0, i1) / float(std[0])
        sl = rows_sim(last, i0, i1) / float(std[last])
        positive[i0 - lo : i1 - lo, 0] = s0[rows, rows + i0] * float(std[0])
        positive[i0 - lo : i1 - lo, last] = sl[rows, rows + i0] * float(std[last])
        s0[rows, rows + i0] = float("-inf")
        sl[rows, rows + i0] = float("-inf")
        chosen, a0, al = _topm_block(s0, sl, c0, cl, m, 1, n, torch.arange(1))
        cand[i0 - lo : i1 - lo] = chosen.to(torch.int32)
        traj[i0 - lo : i1 - lo, :, 0] = (a0 * float(std[0])).to(dtype)
        traj[i0 - lo : i1 - lo, :, last] = (al * float(std[last])).to(dtype)
    for k in range(1, last):  # middle checkpoints: the kept candidates only
        (v, vm), (_, tm) = vt[k], tt[k]
        t = text32(k)
        for i0 in range(lo, hi, block_size):
            i1 = min(hi, i0 + block_size)
            c = cand[i0 - lo : i1 - lo].long()  # (bs, M)
            bs = i1 - i0
            pos = fine_grained_similarity(v[i0:i1].float(), vm[i0:i1], t[i0:i1], tm[i0:i1], pairwise=False)
            positive[i0 - lo : i1 - lo, k] = pos
            vv = v[i0:i1].float().unsqueeze(1).expand(-1, m, -1, -1).reshape(bs * m, *v.shape[1:])
            vvm = vm[i0:i1].unsqueeze(1).expand(-1, m, -1).reshape(bs * m, -1)
            sims = fine_grained_similarity(vv, vvm, t[c.reshape(-1)], tm[c.reshape(-1)], pairwise=False)
            traj[i0 - lo : i1 - lo, :, k] = sims.view(bs, m).to(dtype)
    parts = _gather((lo, hi, cand, traj, positive), world_size)
    return _assemble(parts, n, m, k_total, dtype, mean, std, "fine")


def brute_force_trajectories(videos: Sequence, texts: Sequence, top_m: int) -> Trajectories:
    """Reference implementation forming every N x N matrix (tests / tiny N only)."""
    k_total, n, _ = _check_inputs(videos, texts)
    sims = [_as_tensor(v) @ _as_tensor(t).t() for v, t in zip(videos, texts)]  # K x (N, N)
    return trajectories_from_matrices(sims, top_m)


def trajectories_from_matrices(sims: Sequence[torch.Tensor], top_m: int, similarity: str = "pooled") -> Trajectories:
    """Reference: trajectories from full (N, N) similarity matrices (exact moments)."""
    n = sims[0].shape[0]
    m = min(top_m, n - 1)
    off = ~torch.eye(n, dtype=torch.bool)
    mean = np.array([float(s[off].double().mean()) for s in sims])
    std = np.array([float(s[off].double().std(unbiased=False)) for s in sims])
    z0 = (sims[0].double() - mean[0]) / std[0]
    zl = (sims[-1].double() - mean[-1]) / std[-1]
    key = torch.maximum(z0, zl)
    key.fill_diagonal_(float("-inf"))
    cand = torch.topk(key, m, dim=1, sorted=True).indices
    traj = torch.stack([s.gather(1, cand) for s in sims], dim=2).float()
    positive = torch.stack([s.diagonal() for s in sims], dim=1).float()
    return Trajectories(cand.to(torch.int32), traj, positive.contiguous(), mean, std, None, similarity)
