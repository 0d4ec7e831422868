"""Pair selection over EVERY unused sample (``selection.candidates=all``): dense similarity
matrices of the first and last reference checkpoints, and a greedy builder without candidate lists.

At the paper's scale (N = 7,096 PHOENIX-2014T training videos) one N x N float32 matrix is 201 MB,
so the whole pair-score matrix fits in memory and the top-M candidate lists of
``contrastive.trajectories`` (a memory device for large N) are not needed: the builder's candidate
set is every unused, non-blocked sample, so no candidate pre-selection decides what is compared.
Cost: the two scans are the same 2 N^2 similarity evaluations the top-M scan makes; the greedy
builder is O(N) per added sample, O(N^2) per epoch (50M element operations at N = 7,096, about a
second of numpy). Memory: about 4 N^2 bytes x 5 (two similarity matrices, the score, its
symmetrised sum, the false-negative mask as bytes) = 1 GB at N = 7,096; ``DENSE_LIMIT`` refuses
sizes where that would not fit a training machine.

Pair scores (``score``), each standardised per checkpoint over the N(N-1) negative pairs
(z^k = (s^k - mu_k) / sd_k, as ``Trajectories`` does):
  ``delta``     z^{K-1} - z^0: the method (SCL-SLT's trajectory; the same sign as
                ``selection.score_pairs``: high = became relatively more similar = hard);
  ``shuffled``  delta with its off-diagonal values permuted across pairs (seeded): same
                distribution, no pair information. A control: does the trajectory carry
                information beyond what any batch composition of that spread gives?
  ``last``      z^{K-1}: the last checkpoint's similarity alone: a static hard-negative
                curriculum. A control: is PS just hard-negative mining?
False negatives: the text rules and any oracle passed in, plus the trajectory rule relative to the
positive (s^k(i, j) >= s^k(i, i) - eps at the first AND last checkpoint) and high-to-high pairs
(min(s^0, s^{K-1}) >= hh_threshold), as ``PairSelector`` applies them to its candidates.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from slt_llm.contrastive.loss import FalseNegatives
from slt_llm.errors import ConfigError, InputError

DENSE_LIMIT = 20_000  # 20k x 20k x 4 bytes x 5 = 8 GB: beyond that use the top-M lists
SCORES = ("delta", "shuffled", "last")


def check_dense_size(n: int) -> None:
    if n > DENSE_LIMIT:
        raise ConfigError(f"selection.candidates=all keeps {n} x {n} matrices (about {5 * 4 * n * n / 2**30:.1f} GB): "
                          f"above {DENSE_LIMIT} samples use selection.candidates=top_m")


@torch.no_grad()
def dense_similarity(video, text, *, block_size: int = 64, bucket: int = 256) -> np.ndarray:
    """(N, N) float32 similarity, rows videos, columns sentences. ``video``/``text``: pooled
    (N, E) tensors, or (tokens (N, T, E), mask (N, T)) pairs for the fine-grained similarity
    (the value of ``loss.fine_grained_similarity``, computed without autograd in less time:
    the columns are sorted by length and cut into buckets of ``bucket`` sentences padded to
    their own longest, and the masks enter the one matrix product as two extra coordinates,
    v' = [v, 1, b_v], t' = [t, b_t, 1] with b = 0 on real tokens and -(2 B + 1) on padding,
    B = max |v| x max |t| bounding every real product, so no masked copy of the
    (rows, cols, Tv, L) product is made)."""
    if isinstance(video, torch.Tensor):
        return (video.float() @ text.float().T).numpy().astype(np.float32)
    (v, vm), (t, tm) = video, text
    v, t, vm, tm = v.float(), t.float(), vm.bool(), tm.bool()
    n, nt = int(v.shape[0]), int(t.shape[0])
    vw = vm.float()
    pad = -(2.0 * float(v.norm(dim=-1).max()) * float(t.norm(dim=-1).max()) + 1.0)  # below any real product
    v_aug = torch.cat([v, torch.ones_like(v[..., :1]), (~vm).float().unsqueeze(-1) * pad], dim=-1)
    t_len = tm.sum(1)
    order = torch.argsort(t_len, stable=True)
    out = np.empty((n, nt), np.float32)
    for c0 in range(0, nt, bucket):
        cols = order[c0:c0 + bucket]
        lmax = max(1, int(t_len[cols].max()))
        tc, tmc = t[cols, :lmax], tm[cols, :lmax]
        t_aug = torch.cat([tc, (~tmc).float().unsqueeze(-1) * pad, torch.ones_like(tc[..., :1])], dim=-1)
        twc = tmc.float()
        flat_t = t_aug.reshape(-1, t_aug.shape[-1]).T  # (d+2, c*L)
        for i0 in range(0, n, block_size):
            i1 = min(n, i0 + block_size)
            prod = (v_aug[i0:i1].reshape(-1, v_aug.shape[-1]) @ flat_t).view(i1 - i0, v.shape[1], len(cols), lmax)
            v2t = prod.amax(3)  # (b, Tv, c): padded text tokens sit below any real product
            v2t = (v2t * vw[i0:i1, :, None]).sum(1) / vw[i0:i1].sum(1).clamp(min=1)[:, None]
            t2v = prod.amax(1)  # (b, c, L): padded video tokens likewise
            t2v = (t2v * twc[None]).sum(2) / twc.sum(1).clamp(min=1)[None]
            out[i0:i1, cols.numpy()] = (0.5 * (v2t + t2v)).numpy()
    return out


def reference_similarities(ref_dirs: list, ds, text_idx: torch.Tensor, text_llm: torch.Tensor, *, batch_size: int,
                           num_workers: int = 0, device="cpu", rank: int = 0, world_size: int = 1,
                           text_tokens=None) -> tuple[np.ndarray, np.ndarray]:
    """(first, last): the dense (N, N) similarity of the training set at the first and the last
    reference checkpoint (embedding sharded over the ranks; every rank gets both matrices)."""
    from slt_llm.contrastive.reference import embed_dataset_sharded, embed_tokens_sharded
    from slt_llm.models.vlp import VLPModel

    if len(ref_dirs) < 2:
        raise ConfigError(f"pair selection needs K >= 2 reference checkpoints, found {len(ref_dirs)}")
    check_dense_size(len(ds))
    out = []
    for d in (ref_dirs[0], ref_dirs[-1]):
        m = VLPModel.from_pretrained(d, device=device)
        if text_tokens is not None:
            v = embed_tokens_sharded(m, ds, batch_size, num_workers, device, rank, world_size)
            t, tm = m.embed_text_tokens(text_tokens)
            out.append(dense_similarity((v[0].cpu(), v[1].cpu()), (t[text_idx].cpu(), tm[text_idx].cpu())))
        else:
            v = embed_dataset_sharded(m, ds, batch_size, num_workers, device, rank, world_size)
            out.append(dense_similarity(v.cpu(), m.embed_texts(text_llm.to(device))[text_idx].cpu()))
    return out[0], out[1]


def save_similarities(path, first: np.ndarray, last: np.ndarray, ids_hash: str, similarity: str = "") -> None:
    """Atomic write (tmp + rename): two runs reading one reference run never see half a file.
    ``similarity`` (pooled | fine) is recorded: a run with the other similarity refuses the file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, first=first, last=last, ids_hash=np.array(ids_hash), similarity=np.array(similarity))
    tmp.replace(path)


def load_similarities(path, expect_ids_hash: Optional[str] = None,
                      expect_similarity: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as z:
            first, last, h = z["first"], z["last"], str(z["ids_hash"])
            sim = str(z["similarity"]) if "similarity" in z.files else ""
    except (OSError, KeyError, ValueError) as e:
        raise InputError(path, f"unreadable dense reference similarities ({e}); delete it to recompute") from None
    if expect_ids_hash is not None and h != expect_ids_hash:
        raise InputError(path, "dense reference similarities of another training set; delete it to recompute")
    if expect_similarity and sim and sim != expect_similarity:
        raise InputError(path, f"dense reference similarities of the {sim} similarity, this run uses "
                               f"vlp.similarity={expect_similarity}; delete it to recompute")
    return first, last


def standardize(s: np.ndarray) -> np.ndarray:
    """z = (s - mu) / sd over the off-diagonal entries (float32)."""
    n = s.shape[0]
    tot, sq = float(s.sum(dtype=np.float64)), float(np.square(s, dtype=np.float64).sum())
    d = np.diagonal(s).astype(np.float64)
    cnt = n * n - n
    mu = (tot - d.sum()) / cnt
    sd = math.sqrt(max((sq - (d * d).sum()) / cnt - mu * mu, 1e-16))
    return ((s - np.float32(mu)) / np.float32(sd)).astype(np.float32)


def pair_scores(first: np.ndarray, last: np.ndarray, score: str = "delta", seed: int = 0) -> np.ndarray:
    """(N, N) float32 pair score (module doc); the diagonal is 0."""
    if score not in SCORES:
        raise ConfigError(f"selection.score must be one of {', '.join(SCORES)} (got {score!r})")
    zl = standardize(last)
    s = zl if score == "last" else zl - standardize(first)
    if score == "shuffled":
        n = s.shape[0]
        off = ~np.eye(n, dtype=bool)
        vals = s[off]
        np.random.default_rng([int(seed), 29]).shuffle(vals)
        s[off] = vals
    np.fill_diagonal(s, 0.0)
    return s


def dense_false_negative_pairs(first: np.ndarray, last: np.ndarray, eps: Optional[float],
                               hh_threshold: Optional[float]) -> np.ndarray:
    """Sample pairs (P, 2): the trajectory rule relative to the positive at the first and last
    checkpoint (eps None: off) and high-to-high pairs (hh_threshold None: off)."""
    n = first.shape[0]
    sel = np.zeros((n, n), bool)
    if eps is not None:
        sel |= (first >= np.diagonal(first)[:, None] - np.float32(eps)) & (last >= np.diagonal(last)[:, None] - np.float32(eps))
    if hh_threshold is not None:
        sel |= np.minimum(first, last) >= np.float32(hh_threshold)
    np.fill_diagonal(sel, False)
    return np.argwhere(sel).astype(np.int64)


class DenseFalseNegatives:
    """A false-negative relation held as a dense symmetric (N, N) bool matrix: the
    ``FalseNegatives`` lookups the loss and the batch builder use, O(1) per pair."""

    def __init__(self, mask: np.ndarray):
        self.dense = mask
        self.num_samples = int(mask.shape[0])

    def pair_mask(self, a, b) -> np.ndarray:
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        return self.dense[a, b] & (a != b)

    def mask(self, rows_index, cols_index) -> torch.Tensor:
        r = rows_index.detach().cpu().numpy() if torch.is_tensor(rows_index) else np.asarray(rows_index)
        c = cols_index.detach().cpu().numpy() if torch.is_tensor(cols_index) else np.asarray(cols_index)
        return torch.from_numpy(self.pair_mask(r.reshape(-1, 1), c.reshape(1, -1)))

    def partners(self, i: int) -> np.ndarray:
        return np.flatnonzero(self.dense[int(i)])


class DensePairSelector:
    """``PairSelector``'s interface (``num_samples``, ``cfg``, ``false_negatives``,
    ``build_epoch``) over every unused sample.

    Greedy global batch: start from a random unused sample; keep gain[c] = sum over members u of
    score(u, c) + score(c, u) for every sample (one row of the symmetrised score per added
    member); the next member is the unused, non-blocked sample at quantile alpha of gain
    (alpha = 0 the most separable, 1 the hardest; ``alpha_schedule``); a false-negative partner
    of a member is blocked unless nothing else is left. Each sample is used once per epoch.
    """

    def __init__(self, first: np.ndarray, last: np.ndarray, cfg, *, base_fn: Optional[FalseNegatives] = None,
                 score: str = "delta", seed: int = 0):
        from slt_llm.contrastive.selection import alpha_schedule

        n = int(first.shape[0])
        if first.shape != (n, n) or last.shape != (n, n):
            raise ConfigError(f"dense pair selection: similarity matrices {first.shape} and {last.shape}")
        check_dense_size(n)
        alpha_schedule(cfg.schedule, 0, 1)  # validates the name
        self.cfg, self.num_samples, self.score_name = cfg, n, score
        s = pair_scores(first, last, score, seed)
        base = base_fn if base_fn is not None else FalseNegatives(np.arange(n))
        if base.num_samples != n:
            raise ConfigError(f"dense pair selection: false negatives over {base.num_samples} samples, N = {n}")
        fn = base.cluster_ids[:, None] == base.cluster_ids[None, :]
        for c0, c1 in base.cluster_pairs.tolist():
            m0, m1 = np.flatnonzero(base.cluster_ids == c0), np.flatnonzero(base.cluster_ids == c1)
            fn[np.ix_(m0, m1)] = True
            fn[np.ix_(m1, m0)] = True
        sp = base.sample_pairs
        fn[sp[:, 0], sp[:, 1]] = True
        fn[sp[:, 1], sp[:, 0]] = True
        extra = dense_false_negative_pairs(first, last, getattr(cfg, "traj_fn_eps", None),
                                           getattr(cfg, "hh_threshold", None))
        fn[extra[:, 0], extra[:, 1]] = True
        fn[extra[:, 1], extra[:, 0]] = True
        np.fill_diagonal(fn, False)
        self.fn_mask = fn
        self.false_negatives = DenseFalseNegatives(fn)
        w = s + s.T
        w[fn] = 0.0  # a false-negative pair is never a reason to pick (it is masked in the loss)
        np.fill_diagonal(w, 0.0)
        self.weights = w
        self.fn_pairs = int(fn.sum()) // 2

    def build_epoch(self, epoch: int, num_epochs: int, global_batch_size: int, seed: int = 0,
                    drop_last: bool = False) -> np.ndarray:
        """(num_batches, B) int64 global batches (as ``PairSelector.build_epoch``)."""
        from slt_llm.contrastive.selection import alpha_schedule

        n, bsz = self.num_samples, int(global_batch_size)
        if bsz < 1 or bsz > n:
            raise ConfigError(f"global batch size {bsz} must be in [1, {n}] (the dataset size)")
        alpha = alpha_schedule(self.cfg.schedule, epoch, num_epochs)
        rng = np.random.default_rng([int(seed), int(epoch), 7])
        unused = np.ones(n, bool)
        batches = []
        for _ in range(n // bsz):
            batches.append(self._build_batch(alpha, bsz, unused, rng))
        rest = np.flatnonzero(unused)
        if len(rest) and not drop_last:
            used = np.flatnonzero(~unused)
            batches.append(np.concatenate([rest, rng.choice(used, size=bsz - len(rest), replace=False)]))
        return np.stack(batches).astype(np.int64) if batches else np.zeros((0, bsz), np.int64)

    def _build_batch(self, alpha: float, bsz: int, unused: np.ndarray, rng) -> np.ndarray:
        free = np.flatnonzero(unused)
        first = int(free[rng.integers(len(free))])
        members = [first]
        unused[first] = False
        gain = self.weights[first].astype(np.float64)
        blocked = self.fn_mask[first].copy()
        for _ in range(1, bsz):
            cand = np.flatnonzero(unused & ~blocked)
            if len(cand) == 0:  # every unused sample is a partner of a member: the loss mask handles it
                cand = np.flatnonzero(unused)
            k = int(round(alpha * (len(cand) - 1)))
            pick = int(cand[np.argpartition(gain[cand], k)[k]])
            members.append(pick)
            unused[pick] = False
            gain += self.weights[pick]
            blocked |= self.fn_mask[pick]
        return np.asarray(members, np.int64)

    def batch_score(self, batch: Sequence[int]) -> float:
        """Sum of the score over the batch's ordered off-diagonal pairs (false negatives 0)."""
        b = np.asarray(batch, np.int64)
        return float(self.weights[np.ix_(b, b)].sum(dtype=np.float64)) / 2.0
