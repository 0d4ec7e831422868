"""Selective symmetric InfoNCE with a global (all-gathered) batch and a false-negative mask.

Maths
-----
With W ranks each holding a local batch of b pairs (global batch B = W*b),
rank r holds video features v_a and text features t_a for its local rows
a = 0..b-1 (global position g(a) = r*b + a). Both are L2-normalised inside the
loss. After the all-gather every rank sees the global columns V, T (B, d).
With the scale s = logit_scale (= 1/temperature; the model owns and clamps it:
``VLPModel.logit_scale``),
and F the false-negative relation (a boolean matrix, never true on the
positive), the local loss is

    L_r = 1/2 * mean_a [ -s<v_a,t_g(a)> + log sum_{c: not F[a,c]} exp(s<v_a,t_c>) ]
        + 1/2 * mean_a [ -s<t_a,v_g(a)> + log sum_{c: not F[a,c]} exp(s<t_a,v_c>) ]

i.e. cross-entropy over the global columns with labels offset by r*b, with
masked (known false-negative) columns removed from the denominator of both
directions (the relation is symmetric, see ``FalseNegatives``). The mean of L_r
over ranks equals the single-process loss over the concatenated batch, and
because ``gather_features`` sums the column gradients of every rank back to the
owner, the gradients averaged over ranks (what DDP / DeepSpeed do) equal the
single-process gradients (tests/test_contrastive_loss.py checks both).

Cost per rank: two (b, B) float32 logit matrices (+ their softmax in the
backward), i.e. about 4*b*B*4 bytes, and two gathered (B, d) feature matrices;
compute O(b*B*d). The all-gather moves B*d floats forward and all-reduces B*d
floats backward.

Fine-grained similarity (CiCo-style, ``fine_grained_similarity``): with token
features (L2-normalised per token) v_a = {v_a,p} (Tv valid video tokens) and
t_c = {t_c,q} (L valid text tokens),

    s(a, c) = 1/2 [ mean_p max_q <v_a,p, t_c,q> + mean_q max_p <v_a,p, t_c,q> ]

(token-wise max, then mean, both directions). ``SelectiveInfoNCE`` uses it when
given (b, T, d) token tensors and masks instead of (b, d) features: tokens and
masks are padded to the longest length over ranks and all-gathered the same
autograd-aware way, so the rank-averaged gradients are again the
single-process ones. Cost per rank: two (b, B, Tv, L) float32 token-product
tensors (+ the same again for the max/backward), i.e. about 4*b*B*Tv*L*4 bytes,
compute O(b*B*Tv*L*d), and the gathered (B, T, d) token tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from slt_llm.errors import ConfigError, InputError


# ----------------------------------------------------------------- all-gather
class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums the incoming gradients of all
    ranks (all_reduce, supported by gloo and NCCL) and returns the caller's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world_size: int):
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n], None, None


def gather_features(x: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Autograd-aware all-gather: (b, ...) on every rank -> (W*b, ...), rank order.

    Every rank must pass the same b (the batch samplers guarantee equal slices).
    The backward sums, over all ranks, the gradient each rank's loss sends to
    these rows and hands it to the owner, so a loss computed on local rows
    against global columns back-propagates exactly. Identity when world_size==1.
    """
    if world_size == 1:
        return x
    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError(f"gather_features: world_size={world_size} but torch.distributed is not initialised")
    return _GatherWithGrad.apply(x, rank, world_size)


def gather_index(index: torch.Tensor, world_size: int) -> torch.Tensor:
    """Plain all-gather of an integer index tensor (b,) -> (W*b,) (no gradient)."""
    if world_size == 1:
        return index
    parts = [torch.empty_like(index) for _ in range(world_size)]
    dist.all_gather(parts, index.contiguous())
    return torch.cat(parts)


def gather_padded(x: torch.Tensor, mask: torch.Tensor, rank: int, world_size: int):
    """Tokens (b, T_r, d) with masks (b, T_r) whose T_r differ over ranks -> gathered
    ((W*b, T, d) autograd-aware, (W*b, T) bool) with T = max_r T_r (zero tokens, False mask)."""
    if world_size == 1:
        return x, mask
    t = torch.tensor([x.shape[1]], device=x.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    pad = int(t.item()) - x.shape[1]
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad), value=False)
    return gather_features(x, rank, world_size), gather_index(mask.to(torch.uint8), world_size).bool()


def _safe_mask(mask: torch.Tensor) -> torch.Tensor:
    """A row without any valid token counts all its tokens (never a -inf max / NaN mean)."""
    mask = mask.bool()
    empty = ~mask.any(dim=1)
    if empty.any():
        mask = mask.clone()
        mask[empty] = True
    return mask


def fine_grained_similarity(v: torch.Tensor, v_mask: torch.Tensor, t: torch.Tensor, t_mask: torch.Tensor, *,
                            pairwise: bool = True, chunk_mb: float = 64.0) -> torch.Tensor:
    """CiCo-style token similarity (see module doc); tokens are used as given (normalise first).

    v (Nv, Tv, d), v_mask (Nv, Tv); t (Nt, L, d), t_mask (Nt, L).
    pairwise=True: (Nv, Nt), every video against every text (columns in chunks so a
    (Nv, c, Tv, L) block stays under ``chunk_mb``); pairwise=False: (N,), video a against
    text a (Nv == Nt). Differentiable (autograd through max and mean).
    """
    v_mask, t_mask = _safe_mask(v_mask), _safe_mask(t_mask)
    vw = v_mask.to(v.dtype)
    tw = t_mask.to(t.dtype)
    neg = torch.finfo(v.dtype).min
    if not pairwise:
        prod = torch.einsum("npd,nqd->npq", v, t)  # (N, Tv, L)
        v2t = prod.masked_fill(~t_mask[:, None, :], neg).amax(2)  # (N, Tv)
        t2v = prod.masked_fill(~v_mask[:, :, None], neg).amax(1)  # (N, L)
        return 0.5 * ((v2t * vw).sum(1) / vw.sum(1) + (t2v * tw).sum(1) / tw.sum(1))
    nv, tv = v.shape[:2]
    nt, lt = t.shape[:2]
    c = int(max(1, min(nt, chunk_mb * 2**20 // max(1, 4 * 3 * nv * tv * lt))))
    outs = []
    for c0 in range(0, nt, c):
        tc, tmc, twc = t[c0 : c0 + c], t_mask[c0 : c0 + c], tw[c0 : c0 + c]
        prod = torch.einsum("apd,cqd->acpq", v, tc)  # (Nv, c, Tv, L)
        v2t = prod.masked_fill(~tmc[None, :, None, :], neg).amax(3)  # (Nv, c, Tv)
        v2t = (v2t * vw[:, None, :]).sum(2) / vw.sum(1)[:, None]
        t2v = prod.masked_fill(~v_mask[:, None, :, None], neg).amax(2)  # (Nv, c, L)
        t2v = (t2v * twc[None, :, :]).sum(2) / twc.sum(1)[None, :]
        outs.append(0.5 * (v2t + t2v))
    return torch.cat(outs, dim=1)


def brute_force_fine_similarity(v, v_mask, t, t_mask) -> torch.Tensor:
    """Loop reference of ``fine_grained_similarity`` (tests only)."""
    out = torch.empty(v.shape[0], t.shape[0], dtype=torch.float64)
    for a in range(v.shape[0]):
        va = v[a][v_mask[a].bool()].double()
        for c in range(t.shape[0]):
            tc = t[c][t_mask[c].bool()].double()
            sims = va @ tc.t()
            out[a, c] = 0.5 * (sims.max(1).values.mean() + sims.max(0).values.mean())
    return out


# ------------------------------------------------------------ false negatives
def _csr(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(ptr, keys + 1, 1)
    return np.cumsum(ptr), values[order]


class FalseNegatives:
    """Known false-negative relation over dataset indices 0..N-1 (symmetric).

    Samples i != j are false negatives of each other when
      * ``cluster_ids[i] == cluster_ids[j]`` (identical sentences after
        normalisation: each cluster is one normalised sentence), or
      * the unordered cluster pair {cluster_ids[i], cluster_ids[j]} is in
        ``cluster_pairs`` (near-duplicate sentences, e.g. chrF above a threshold), or
      * the unordered sample pair {i, j} is in ``sample_pairs`` (e.g. high-to-high
        similarity trajectories).
    A sample is never a false negative of itself (that is the positive).

    Storage: O(N + P) int64; ``mask`` costs O(len(rows)*len(cols)*log P).
    """

    def __init__(
        self,
        cluster_ids: Sequence[int] | np.ndarray,
        cluster_pairs: Optional[np.ndarray] = None,
        sample_pairs: Optional[np.ndarray] = None,
    ):
        self.cluster_ids = np.asarray(cluster_ids, dtype=np.int64).reshape(-1)
        self.num_samples = int(self.cluster_ids.shape[0])
        self.num_clusters = int(self.cluster_ids.max()) + 1 if self.num_samples else 0
        self.cluster_pairs = self._canon(cluster_pairs, self.num_clusters, "cluster_pairs")
        self.sample_pairs = self._canon(sample_pairs, self.num_samples, "sample_pairs")
        self._cluster_keys = self._keys(self.cluster_pairs, self.num_clusters)
        self._sample_keys = self._keys(self.sample_pairs, self.num_samples)
        self._partners_csr = None

    @staticmethod
    def _canon(pairs, n: int, what: str) -> np.ndarray:
        if pairs is None or len(pairs) == 0:
            return np.zeros((0, 2), dtype=np.int64)
        p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if p.min() < 0 or p.max() >= n:
            raise ConfigError(f"FalseNegatives: {what} index out of range [0, {n})")
        p = np.sort(p, axis=1)
        p = p[p[:, 0] != p[:, 1]]
        return np.unique(p, axis=0) if len(p) else p

    @staticmethod
    def _keys(pairs: np.ndarray, n: int) -> np.ndarray:
        return np.sort(pairs[:, 0] * max(n, 1) + pairs[:, 1]) if len(pairs) else np.zeros(0, np.int64)

    @staticmethod
    def _lookup(keys: np.ndarray, a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
        if len(keys) == 0:
            return np.zeros(np.broadcast(a, b).shape, dtype=bool)
        q = np.minimum(a, b) * max(n, 1) + np.maximum(a, b)
        pos = np.searchsorted(keys, q).clip(max=len(keys) - 1)
        return keys[pos] == q

    def pair_mask(self, a, b) -> np.ndarray:
        """Elementwise (broadcasting) numpy bool: are samples a and b false negatives?"""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        ca, cb = self.cluster_ids[a], self.cluster_ids[b]
        m = ca == cb
        m |= self._lookup(self._cluster_keys, ca, cb, self.num_clusters)
        m |= self._lookup(self._sample_keys, a, b, self.num_samples)
        return m & (a != b)

    def mask(self, rows_index, cols_index) -> torch.Tensor:
        """(len(rows), len(cols)) torch bool: True where (row, col) is a known false negative."""
        r = rows_index.detach().cpu().numpy() if torch.is_tensor(rows_index) else np.asarray(rows_index)
        c = cols_index.detach().cpu().numpy() if torch.is_tensor(cols_index) else np.asarray(cols_index)
        return torch.from_numpy(self.pair_mask(r.reshape(-1, 1), c.reshape(1, -1)))

    def partners(self, i: int) -> np.ndarray:
        """Sorted int64 array of every sample that is a false negative of sample i.
        The first call builds CSR tables in O(N + sum over near-dup cluster pairs of
        the two cluster sizes + P); later calls are O(answer)."""
        if self._partners_csr is None:
            self._partners_csr = (
                _csr(self.cluster_ids, np.arange(self.num_samples), self.num_clusters),
                _csr(
                    np.concatenate([self.cluster_pairs[:, 0], self.cluster_pairs[:, 1]]),
                    np.concatenate([self.cluster_pairs[:, 1], self.cluster_pairs[:, 0]]),
                    self.num_clusters,
                ),
                _csr(
                    np.concatenate([self.sample_pairs[:, 0], self.sample_pairs[:, 1]]),
                    np.concatenate([self.sample_pairs[:, 1], self.sample_pairs[:, 0]]),
                    self.num_samples,
                ),
            )
        (mp, mv), (cp, cv), (sp, sv) = self._partners_csr
        c = self.cluster_ids[i]
        parts = [mv[mp[c] : mp[c + 1]], sv[sp[i] : sp[i + 1]]]
        for c2 in cv[cp[c] : cp[c + 1]]:
            parts.append(mv[mp[c2] : mp[c2 + 1]])
        out = np.unique(np.concatenate(parts))
        return out[out != i]

    # -- persistence
    def save(self, path: str | Path) -> None:
        np.savez(path, cluster_ids=self.cluster_ids, cluster_pairs=self.cluster_pairs, sample_pairs=self.sample_pairs)

    @classmethod
    def load(cls, path: str | Path) -> "FalseNegatives":
        try:
            with np.load(path) as z:
                return cls(z["cluster_ids"], z["cluster_pairs"], z["sample_pairs"])
        except (OSError, KeyError, ValueError) as e:
            raise InputError(path, f"not a false-negatives .npz ({e})") from None

    def __repr__(self) -> str:
        return (
            f"FalseNegatives(N={self.num_samples}, clusters={self.num_clusters}, "
            f"near_dup_cluster_pairs={len(self.cluster_pairs)}, sample_pairs={len(self.sample_pairs)})"
        )


# ------------------------------------------------------------------------ loss
class SelectiveInfoNCE(nn.Module):
    """Symmetric InfoNCE over the global batch with a false-negative mask (see module doc).

    Args:
        rank, world_size: this process's place (explicit, as in open_clip's ClipLoss).
        false_negatives: optional ``FalseNegatives``; used when ``index`` is given.
        normalize: L2-normalise the features inside (default True).

    forward(video (b,d), text (b,d), logit_scale, *, index=None (b,) int
    dataset indices of the local rows, fn_mask=None (b, W*b) bool,
    false_negatives=None) -> scalar loss (this rank's L_r). Fine-grained: video
    (b,Tv,d), text (b,L,d) token tensors with video_mask (b,Tv), text_mask (b,L)
    (True = a real token); the pooled dot product is then replaced by
    ``fine_grained_similarity`` (memory: see module doc).

    ``logit_scale`` is the multiplier s = 1/temperature (already exponentiated,
    a tensor so it can be learned), as in open_clip; the temperature has one
    owner, the model (``VLPModel.clamped_logit_scale``). The mask is ``fn_mask``
    when given, else looked up from ``false_negatives.mask(index, gathered
    index)``; the positive entry is always unmasked. Cost: see module doc.
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        *,
        false_negatives: Optional[FalseNegatives] = None,
        normalize: bool = True,
    ):
        super().__init__()
        if world_size < 1 or not (0 <= rank < world_size):
            raise ConfigError(f"SelectiveInfoNCE: bad rank {rank} / world_size {world_size}")
        self.rank, self.world_size = rank, world_size
        self.false_negatives = false_negatives
        self.normalize = normalize
        self.last_stats: dict = {}

    def forward(
        self,
        video: torch.Tensor,
        text: torch.Tensor,
        logit_scale: torch.Tensor,
        *,
        index: Optional[torch.Tensor] = None,
        fn_mask: Optional[torch.Tensor] = None,
        false_negatives: Optional[FalseNegatives] = None,
        video_mask: Optional[torch.Tensor] = None,
        text_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        fine = video.dim() == 3
        if fine:
            if text.dim() != 3 or video.shape[0] != text.shape[0] or video.shape[2] != text.shape[2]:
                raise ConfigError(f"SelectiveInfoNCE: video tokens {tuple(video.shape)} and text tokens "
                                  f"{tuple(text.shape)} must be (b, Tv, d) and (b, L, d)")
            if video_mask is None or text_mask is None:
                raise ConfigError("SelectiveInfoNCE: fine-grained similarity needs video_mask and text_mask")
        elif video.shape != text.shape or video.dim() != 2:
            raise ConfigError(f"SelectiveInfoNCE: video {tuple(video.shape)} and text {tuple(text.shape)} must both be (b, d)")
        b = video.shape[0]
        if video.dtype in (torch.float16, torch.bfloat16):  # logits in float32 under mixed precision
            video, text = video.float(), text.float()
        if self.normalize:
            video = F.normalize(video, dim=-1)
            text = F.normalize(text, dim=-1)
        scale = torch.as_tensor(logit_scale, device=video.device).to(video.dtype)
        if fine:
            video_mask, text_mask = video_mask.to(video.device).bool(), text_mask.to(video.device).bool()
            all_video, all_vmask = gather_padded(video, video_mask, self.rank, self.world_size)
            all_text, all_tmask = gather_padded(text, text_mask, self.rank, self.world_size)
            logits_v2t = scale * fine_grained_similarity(video, video_mask, all_text, all_tmask)  # (b, B)
            logits_t2v = scale * fine_grained_similarity(all_video, all_vmask, text, text_mask).t()  # (b, B)
        else:
            all_video = gather_features(video, self.rank, self.world_size)  # (B, d)
            all_text = gather_features(text, self.rank, self.world_size)  # (B, d)
            logits_v2t = scale * video @ all_text.t()  # (b, B)
            logits_t2v = scale * text @ all_video.t()  # (b, B)
        labels = torch.arange(b, device=video.device) + self.rank * b

        fn = false_negatives if false_negatives is not None else self.false_negatives
        if fn_mask is None and fn is not None and index is not None:
            all_index = gather_index(index.to(video.device), self.world_size)
            fn_mask = fn.mask(index, all_index).to(video.device)
        n_masked = 0
        if fn_mask is not None:
            fn_mask = fn_mask.to(device=video.device, dtype=torch.bool)
            if fn_mask.shape != logits_v2t.shape:
                raise ConfigError(f"SelectiveInfoNCE: fn_mask {tuple(fn_mask.shape)} != logits {tuple(logits_v2t.shape)}")
            fn_mask = fn_mask.clone()
            fn_mask[torch.arange(b), labels] = False  # never mask the positive
            n_masked = int(fn_mask.sum())
            if n_masked:
                logits_v2t = logits_v2t.masked_fill(fn_mask, float("-inf"))
                logits_t2v = logits_t2v.masked_fill(fn_mask, float("-inf"))
        loss = 0.5 * (F.cross_entropy(logits_v2t, labels) + F.cross_entropy(logits_t2v, labels))
        self.last_stats = {"masked": n_masked, "global_batch": int(all_text.shape[0])}
        return loss
