"""SCL-SLT pair selection: pair scores and groups, false negatives, curriculum, greedy global batches.

Inputs are the candidate trajectories of ``contrastive.trajectories`` (for each
anchor video i its M candidate texts j = cand[i, m], s^k(i, j) for k = 0..K-1,
the positive's s^k(i, i), and the moments mu_k, sd_k of ALL negative pairs at
each checkpoint). The method as implemented is written up in docs/pair_selection.md.

Pair score (``score_pairs``), per candidate pair, drift removed by per-checkpoint
standardisation z^k = (s^k - mu_k) / sd_k (why this choice: docs/pair_selection.md):
    delta(i, j) = z^{K-1}(i, j) - z^0(i, j)
  signed: delta < 0 = the reference model pushed the pair apart (high-to-low:
  separable, the EASY end), delta > 0 = it became relatively more similar
  (low-to-high: the HARD end). Averaged over all N(N-1) negative pairs delta is
  exactly 0, so an UNKNOWN pair (not in any top-M list) gets the neutral value
  delta_0 = the exact mean of the unknown pairs = -(sum of known deltas) /
  (N(N-1) - #known)  (close to 0), never the minimum.
Groups (analysis; and the high-to-high rule): "high" at checkpoint k means
  z^k >= high_z (``SelectionConfig.high_z``; drift-free); or s^k >= high_level
  (absolute cosine) when high_z is None; or, with ``high_quantile=q``, the
  q-quantile of the stored candidates at checkpoint k:
    HIGH_TO_LOW = high first, low last    LOW_TO_HIGH = low first, high last
    HIGH_TO_HIGH = high at both            LOW_LOW = low at both

False negatives (``PairSelector``), each rule its own switch: text (``text_fn``:
  identical sentences after ``normalize_sentence``, O(N) hashing; unique
  sentence pairs with symmetric sacrebleu chrF >= text_sim_threshold, tested
  only on candidate pairs (and on all pairs when there are at most
  ``exhaustive_limit`` unique sentences) whose normalised lengths differ by at
  most a factor ``length_ratio``); trajectory relative to the positive
  (``traj_fn_eps``: s^k(i, j) >= s^k(i, i) - eps at EVERY checkpoint, which an
  identical sentence always satisfies since its text embedding is the
  positive's); and high-to-high pairs with min(s^0, s^{K-1}) >= hh_threshold.
  They are masked in the loss, contribute no score, and are never added to a
  batch that holds their partner unless nothing else is left (then the loss
  mask removes them).

Curriculum ``alpha(e, E)`` for epoch e in [0, E), x = e/(E-1): linear x; sqrt
  sqrt(x); log log(1+e)/log(E) (default; reaches 0.5 at e = sqrt(E) - 1 and
  0.75 at e = E^0.75 - 1, e.g. epoch index 7 of 16); easy 0; hard 1. E = 1
  gives 0 (easy); epochs past E-1 give 1 for linear/sqrt/log.

Greedy global batch (``PairSelector._build_batch``): a batch's score is the sum
  of delta over its ordered off-diagonal pairs (video a, text b), a != b, both
  loss directions (unknown pairs = delta_0). Start from a random unused sample
  (the seed positive); every candidate c is scored by the increment it would
  add, sum over members u of delta(u, c) + delta(c, u); the builder keeps
  gain[c] = increment - 2*|members|*delta_0 (the same shift for every
  candidate, so the order is the increment's), i.e. gain[c] += delta - delta_0
  per known pair with a member: a random candidate with no known pair sits at
  0 = the neutral middle, not at the bottom. The candidate set is the unused
  samples reached by the members' lists plus random unused samples
  (random_share of the set); candidates are sorted by gain and the one at
  quantile alpha is added (alpha = 0: the most separable, alpha = 1: the
  hardest). Each sample is used once per epoch. Cost per batch O(B * (B*M))
  (the candidate set grows by <= 2M per member), O(N*B*M) per epoch,
  vectorised numpy; memory O(N*M).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from slt_llm.contrastive.loss import FalseNegatives
from slt_llm.contrastive.trajectories import Trajectories
from slt_llm.errors import ConfigError

HIGH_TO_LOW, LOW_TO_HIGH, HIGH_TO_HIGH, LOW_LOW = 0, 1, 2, 3
GROUP_NAMES = ("high_to_low", "low_to_high", "high_to_high", "low_low")
SCHEDULES = ("linear", "sqrt", "log", "easy", "hard")


# ------------------------------------------------------------------ scoring
@dataclass
class PairScores:
    """Per candidate pair (N, M) arrays: first=s^0, level=s^{K-1} (raw), z_first, z_last
    (standardised), delta = z_last - z_first, score = delta (the difficulty: low = easy),
    group (int8, see GROUP_NAMES); thresholds = the "high" thresholds (first, last) in
    the unit of ``rule`` ("z", "absolute" or "quantile")."""

    first: np.ndarray
    level: np.ndarray
    z_first: np.ndarray
    z_last: np.ndarray
    delta: np.ndarray
    score: np.ndarray
    group: np.ndarray
    thresholds: tuple
    rule: str = "z"

    def shares(self) -> dict:
        """Share of candidate pairs in each group, {name: fraction}."""
        counts = np.bincount(self.group.reshape(-1), minlength=4)
        total = max(1, int(counts.sum()))
        return {name: float(c) / total for name, c in zip(GROUP_NAMES, counts)}


def assign_groups(first: np.ndarray, last: np.ndarray, thr_first: float, thr_last: float) -> np.ndarray:
    """int8 group ids of pairs from their first and last similarity (see module doc)."""
    hf, hl = first >= thr_first, last >= thr_last
    group = np.full(first.shape, LOW_LOW, dtype=np.int8)
    group[hf & ~hl] = HIGH_TO_LOW
    group[~hf & hl] = LOW_TO_HIGH
    group[hf & hl] = HIGH_TO_HIGH
    return group


def score_pairs(
    traj: Trajectories,
    *,
    high_z: Optional[float] = None,
    high_level: float = 0.5,
    high_quantile: Optional[float] = None,
) -> PairScores:
    """Signed drift-free scores and groups of every candidate pair. O(N*M) time and memory.
    Groups: ``high_quantile`` if given, else ``high_z`` (standardised) if given, else
    ``high_level`` (absolute)."""
    t = traj.traj.float().numpy() if torch.is_tensor(traj.traj) else np.asarray(traj.traj, np.float32)
    first = t[:, :, 0].astype(np.float32)
    level = t[:, :, -1].astype(np.float32)
    mu, sd = traj.neg_mean, traj.neg_std
    z_first = ((first - mu[0]) / sd[0]).astype(np.float32)
    z_last = ((level - mu[-1]) / sd[-1]).astype(np.float32)
    delta = z_last - z_first
    if high_quantile is not None:
        if not 0.0 < high_quantile < 1.0:
            raise ConfigError(f"high_quantile must be in (0, 1), got {high_quantile}")
        thr, rule = (float(np.quantile(z_first, high_quantile)), float(np.quantile(z_last, high_quantile))), "quantile"
        gf, gl = z_first, z_last
    elif high_z is not None:
        thr, rule, gf, gl = (float(high_z), float(high_z)), "z", z_first, z_last
    else:
        thr, rule, gf, gl = (float(high_level), float(high_level)), "absolute", first, level
    return PairScores(first=first, level=level, z_first=z_first, z_last=z_last, delta=delta, score=delta,
                      group=assign_groups(gf, gl, *thr), thresholds=thr, rule=rule)


def neutral_delta(traj: Trajectories, scores: PairScores) -> float:
    """delta_0: the exact mean delta of the negative pairs NOT in the candidate lists
    (all N(N-1) pairs average to 0 by construction); 0 when every pair is known."""
    n = traj.num_samples
    unknown = n * (n - 1) - scores.delta.size
    if unknown <= 0:
        return 0.0
    return float(-scores.delta.astype(np.float64).sum() / unknown)


# ---------------------------------------------------------- false negatives
_SPACES = re.compile(r"\s+")


def normalize_sentence(text: str) -> str:
    """Lowercase, Unicode punctuation/symbols -> space, collapse whitespace, strip."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    return _SPACES.sub(" ", text).strip()


def sentence_clusters(texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(cluster_ids (N,) int64, unique normalised sentences): equal ids <=> equal
    normalised text. O(N) by hashing."""
    ids: dict[str, int] = {}
    out = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        out[i] = ids.setdefault(normalize_sentence(t), len(ids))
    return out, list(ids)


class PairChrF:
    """Symmetric sentence chrF (sacrebleu CHRF, chrF2 defaults) between pairs of
    sentences: mean of chrF(a -> b) and chrF(b -> a). Each sentence's character
    n-grams are extracted once (sacrebleu's own extraction and F-score code),
    so a pair costs one n-gram intersection instead of two full re-extractions."""

    def __init__(self, sentences: Sequence[str]):
        from sacrebleu.metrics import CHRF
        from sacrebleu.metrics.helpers import extract_all_char_ngrams

        self.metric = CHRF()
        self._extract = extract_all_char_ngrams
        self.sentences = list(sentences)
        self._ngrams: dict[int, list] = {}

    def _grams(self, i: int):
        g = self._ngrams.get(i)
        if g is None:
            g = self._extract(self.sentences[i], self.metric.char_order, self.metric.whitespace)
            self._ngrams[i] = g
        return g

    def __call__(self, a: int, b: int) -> float:
        stats_ab, stats_ba = [], []
        for ha, hb in zip(self._grams(a), self._grams(b)):
            n_a, n_b, match = self.metric._get_match_statistics(ha, hb)
            if not hb:  # sacrebleu counts no hypothesis n-grams when the reference has none
                n_a = sum(ha.values())
            stats_ab += [n_a if hb else 0, n_b, match]
            stats_ba += [n_b if ha else 0, n_a, match]
        return 0.5 * (self.metric._compute_f_score(stats_ab) + self.metric._compute_f_score(stats_ba))


def near_duplicate_pairs(
    sentences: Sequence[str],
    pairs: np.ndarray,
    *,
    threshold: float,
    length_ratio: float = 1.5,
) -> np.ndarray:
    """Subset of unique-sentence index pairs (P, 2) with symmetric chrF >= threshold.
    Pairs whose lengths differ by more than ``length_ratio`` are skipped (their
    chrF cannot be near-duplicate high in practice). Cost O(P) chrF evaluations."""
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.unique(np.sort(np.asarray(pairs, dtype=np.int64), axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    lengths = np.array([max(1, len(s)) for s in sentences], dtype=np.float64)
    la, lb = lengths[pairs[:, 0]], lengths[pairs[:, 1]]
    pairs = pairs[np.maximum(la, lb) / np.minimum(la, lb) <= length_ratio]
    chrf = PairChrF(sentences)
    keep = [k for k, (a, b) in enumerate(pairs.tolist()) if chrf(a, b) >= threshold]
    return pairs[keep]


def text_false_negatives(
    texts: Sequence[str],
    cfg=None,
    *,
    candidate_pairs: Optional[np.ndarray] = None,
    text_sim_threshold: Optional[float] = None,
    exhaustive_limit: int = 400,
    length_ratio: float = 1.5,
) -> FalseNegatives:
    """False negatives from the target sentences alone: exact duplicates after
    normalisation, plus near-duplicates (chrF >= threshold; cfg.text_sim_threshold
    unless given) among all unique-sentence pairs when there are at most
    ``exhaustive_limit`` unique sentences, and among ``candidate_pairs`` (sample
    index pairs (P, 2), e.g. from trajectories) otherwise/as well."""
    thr = text_sim_threshold if text_sim_threshold is not None else (cfg.text_sim_threshold if cfg else 80.0)
    cluster_ids, uniq = sentence_clusters(texts)
    u = len(uniq)
    test = []
    if u <= exhaustive_limit:
        iu = np.triu_indices(u, k=1)
        test.append(np.stack(iu, axis=1))
    if candidate_pairs is not None and len(candidate_pairs):
        cp = np.asarray(candidate_pairs, dtype=np.int64)
        test.append(np.stack([cluster_ids[cp[:, 0]], cluster_ids[cp[:, 1]]], axis=1))
    pairs = np.concatenate(test) if test else np.zeros((0, 2), np.int64)
    near = near_duplicate_pairs(uniq, pairs, threshold=thr, length_ratio=length_ratio)
    return FalseNegatives(cluster_ids, cluster_pairs=near)


def high_to_high_pairs(traj: Trajectories, scores: PairScores, hh_threshold: float) -> np.ndarray:
    """Sample pairs (P, 2) in the high-to-high group with min(s^0, s^{K-1}) >= hh_threshold."""
    sel = (scores.group == HIGH_TO_HIGH) & (np.minimum(scores.first, scores.level) >= hh_threshold)
    rows, cols = np.nonzero(sel)
    cand = traj.cand.numpy() if torch.is_tensor(traj.cand) else np.asarray(traj.cand)
    return np.stack([rows.astype(np.int64), cand[rows, cols].astype(np.int64)], axis=1)


def positive_relative_pairs(traj: Trajectories, eps: float) -> np.ndarray:
    """Sample pairs (P, 2) (i, cand) with s^k(i, j) >= s^k(i, i) - eps at every checkpoint k:
    the negative is as similar to the video as its own sentence throughout the reference run
    (an identical sentence always is: its text embedding equals the positive's)."""
    t = traj.traj.float().numpy()
    pos = traj.positive.float().numpy()
    sel = (t >= pos[:, None, :] - np.float32(eps)).all(axis=2)
    rows, cols = np.nonzero(sel)
    cand = traj.cand.numpy() if torch.is_tensor(traj.cand) else np.asarray(traj.cand)
    return np.stack([rows.astype(np.int64), cand[rows, cols].astype(np.int64)], axis=1)


# -------------------------------------------------------------- curriculum
def alpha_schedule(schedule: str, epoch: int, epochs: int) -> float:
    """Quantile alpha(e) in [0, 1] for epoch e of E (see module doc)."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"selection.schedule must be one of {', '.join(SCHEDULES)} (got {schedule!r})")
    if schedule == "easy":
        return 0.0
    if schedule == "hard":
        return 1.0
    if epochs <= 1:
        return 0.0
    e = min(max(int(epoch), 0), epochs - 1)
    if schedule == "linear":
        return e / (epochs - 1)
    if schedule == "sqrt":
        return math.sqrt(e / (epochs - 1))
    return math.log1p(e) / math.log(epochs)


# ---------------------------------------------------------------- selector
class PairSelector:
    """Everything the greedy builder needs, built once from trajectories + texts.

    PairSelector(traj, texts, cfg: SelectionConfig, *, text_fn=None,
    exhaustive_limit=400, extra_fn=None): scores and groups (``score_pairs``
    with cfg.high_z / cfg.high_level), the neutral value delta_0 of unknown
    pairs, false negatives (each rule its own switch: text ones when
    cfg.text_fn and texts are given - ``text_fn`` if passed, else computed,
    near-duplicates also tested on the candidate pairs; the trajectory rule
    relative to the positive when cfg.traj_fn_eps is not None; high-to-high
    pairs >= cfg.hh_threshold; ``extra_fn``, e.g. an oracle, is added as is),
    and an adjacency (CSR, 2*N*M edges: both directions of every candidate
    pair, false-negative pairs removed) with weights delta - delta_0.
    """

    def __init__(self, traj: Trajectories, texts: Optional[Sequence[str]], cfg, *, text_fn: Optional[FalseNegatives] = None,
                 exhaustive_limit: int = 400, extra_fn: Optional[FalseNegatives] = None):
        n, m = traj.num_samples, traj.top_m
        if traj.num_checkpoints < 2:
            raise ConfigError(f"pair selection needs K >= 2 reference checkpoints, got {traj.num_checkpoints}")
        if texts is not None and len(texts) != n:
            raise ConfigError(f"pair selection: {len(texts)} texts for {n} trajectory anchors")
        if not 0.0 <= cfg.random_share < 1.0:
            raise ConfigError(f"selection.random_share must be in [0, 1), got {cfg.random_share}")
        alpha_schedule(cfg.schedule, 0, 1)  # validates the name
        self.cfg = cfg
        self.num_samples = n
        self.traj = traj
        self.scores = score_pairs(traj, high_z=getattr(cfg, "high_z", 1.0), high_level=cfg.high_level,
                                  high_quantile=getattr(cfg, "high_quantile", None))
        self.neutral = neutral_delta(traj, self.scores)
        cand = traj.cand.numpy().astype(np.int64)  # (N, M)
        anchors = np.repeat(np.arange(n, dtype=np.int64), m)
        flat_cand = cand.reshape(-1)
        pairs = [high_to_high_pairs(traj, self.scores, cfg.hh_threshold)]
        eps = getattr(cfg, "traj_fn_eps", None)
        if eps is not None:
            pairs.append(positive_relative_pairs(traj, float(eps)))
        base = None
        if texts is not None and getattr(cfg, "text_fn", True):
            cand_pairs = np.stack([anchors, flat_cand], axis=1)
            base = text_fn
            if base is None:
                base = text_false_negatives(texts, cfg, candidate_pairs=cand_pairs, exhaustive_limit=exhaustive_limit)
            else:
                cid, uniq = sentence_clusters(texts)
                if not np.array_equal(cid, base.cluster_ids):
                    raise ConfigError("pair selection: text_fn was built from other texts")
                extra = near_duplicate_pairs(
                    uniq,
                    np.stack([cid[anchors], cid[flat_cand]], axis=1),
                    threshold=cfg.text_sim_threshold,
                )
                base = FalseNegatives(cid, np.concatenate([base.cluster_pairs, extra]), base.sample_pairs)
        if base is None:
            base = FalseNegatives(np.arange(n))
        if extra_fn is not None:
            base = combine_false_negatives(base, extra_fn)
        self.false_negatives = FalseNegatives(base.cluster_ids, base.cluster_pairs,
                                              np.concatenate([base.sample_pairs, *pairs]))
        # adjacency without false-negative pairs, weights = delta - delta_0 (0 = an unknown pair)
        score = self.scores.score.reshape(-1).astype(np.float64)
        keep = ~self.false_negatives.pair_mask(anchors, flat_cand)
        src = np.concatenate([anchors[keep], flat_cand[keep]])
        dst = np.concatenate([flat_cand[keep], anchors[keep]])
        w = np.concatenate([score[keep], score[keep]]) - self.neutral
        order = np.argsort(src, kind="stable")
        self.adj_ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
        self.adj_dst = dst[order].astype(np.int64)
        self.adj_w = w[order].astype(np.float32)
        self._has_fn = bool(
            len(self.false_negatives.cluster_pairs) or len(self.false_negatives.sample_pairs)
            or len(np.unique(self.false_negatives.cluster_ids)) < n
        )

    # -- one epoch
    def build_epoch(self, epoch: int, num_epochs: int, global_batch_size: int, seed: int = 0,
                    drop_last: bool = False) -> np.ndarray:
        """(num_batches, B) int64 global batches for ``epoch`` (alpha from
        cfg.schedule over ``num_epochs``). Deterministic in (seed, epoch). Every
        sample appears exactly once, except that when B does not divide N the
        last batch holds the N mod B leftovers topped up with random samples
        already used this epoch (drop_last=True drops the leftovers instead)."""
        n, bsz = self.num_samples, int(global_batch_size)
        if bsz < 1 or bsz > n:
            raise ConfigError(f"global batch size {bsz} must be in [1, {n}] (the dataset size)")
        alpha = alpha_schedule(self.cfg.schedule, epoch, num_epochs)
        rng = np.random.default_rng([int(seed), int(epoch), 7])
        st = _EpochState(n, rng)
        batches = [self._build_batch(alpha, bsz, st) for _ in range(n // bsz)]
        rest = st.n_unused
        if rest and not drop_last:
            left = st.unused[:rest].copy()
            used = np.setdiff1d(np.arange(n), left)
            filler = rng.choice(used, size=bsz - rest, replace=False)
            batches.append(np.concatenate([left, filler]))
        return np.stack(batches) if batches else np.zeros((0, bsz), np.int64)

    def build_batch(self, first: int, alpha: float, global_batch_size: int, seed: int = 0) -> np.ndarray:
        """One greedy batch (B,) seeded with sample ``first`` at quantile ``alpha`` (all samples unused)."""
        st = _EpochState(self.num_samples, np.random.default_rng([int(seed), 13]))
        return self._build_batch(float(alpha), int(global_batch_size), st, first=int(first))

    def _build_batch(self, alpha: float, bsz: int, st: "_EpochState", first: Optional[int] = None) -> np.ndarray:
        rng = st.rng
        share = self.cfg.random_share
        members = np.empty(bsz, dtype=np.int64)
        pool, pool_pos = st.pool, st.pool_pos  # candidates reached from members' lists: pool[:size]
        size = 0
        touched = []
        blocked_ids = []
        members[0] = st.take(st.unused[int(rng.integers(st.n_unused))] if first is None else first)
        for step in range(1, bsz):
            u = members[step - 1]
            lo, hi = self.adj_ptr[u], self.adj_ptr[u + 1]
            nb = self.adj_dst[lo:hi]
            if len(nb):
                np.add.at(st.gain, nb, self.adj_w[lo:hi])
                touched.append(nb)
                fresh = np.unique(nb[~st.in_pool[nb] & ~st.used[nb]])
                st.in_pool[fresh] = True
                pool[size : size + len(fresh)] = fresh
                pool_pos[fresh] = np.arange(size, size + len(fresh))
                size += len(fresh)
            if self._has_fn:
                part = self.false_negatives.partners(int(u))
                if len(part):
                    st.blocked[part] = True
                    blocked_ids.append(part)
            # candidate set: the reached pool + a random share of unused samples
            cur = pool[:size]
            ok = cur[~st.blocked[cur]] if self._has_fn else cur
            n_rand = int(round(share / (1.0 - share) * len(ok))) if share > 0 else 0
            if len(ok) == 0:
                n_rand = max(n_rand, 1)
            if n_rand:
                # distinct random unused samples without a sort: a window of the unused
                # array (a random permutation kept random by swap-removal) at a random offset
                n_rand = min(n_rand, st.n_unused)
                o = int(rng.integers(st.n_unused - n_rand + 1))
                r = st.unused[o : o + n_rand]
                r = r[~st.in_pool[r] & ~st.blocked[r]]
                ok = np.concatenate([ok, r]) if len(r) else ok
            if len(ok) == 0:  # random draws missed: scan the unused samples (O(N), rare)
                left = st.unused[: st.n_unused]
                free = left[~st.blocked[left]]
                # if every unused sample is a false negative of a member, the loss mask handles it
                pick = (free if len(free) else left)[int(rng.integers(len(free) or len(left)))]
            else:
                g = st.gain[ok]
                k = int(round(alpha * (len(ok) - 1)))
                pick = ok[np.argpartition(g, k)[k]]
            pick = st.take(pick)
            members[step] = pick
            if st.in_pool[pick]:  # swap-remove from the pool, O(1)
                p, last = pool_pos[pick], pool[size - 1]
                pool[p], pool_pos[last] = last, p
                size -= 1
        # reset the per-batch arrays (only what was touched)
        if touched:
            st.gain[np.concatenate(touched)] = 0.0
        st.in_pool[pool[:size]] = False
        st.in_pool[members] = False
        if blocked_ids:
            st.blocked[np.concatenate(blocked_ids)] = False
        return members

    def batch_score(self, batch: np.ndarray) -> float:
        """The batch's score: sum of delta over its ordered off-diagonal pairs (video a, text b),
        a != b (unknown pairs = delta_0, false-negative pairs = 0: masked in the loss).
        O(B * M) via the adjacency; used by tests and the benchmark."""
        members = np.asarray(batch, dtype=np.int64)
        inb = np.zeros(self.num_samples, dtype=bool)
        inb[members] = True
        total = 0.0
        fn_pairs = 0
        for u in members:
            lo, hi = self.adj_ptr[u], self.adj_ptr[u + 1]
            sel = inb[self.adj_dst[lo:hi]]
            total += float(self.adj_w[lo:hi][sel].astype(np.float64).sum())
        if self._has_fn:
            fn_pairs = int(self.false_negatives.mask(members, members).sum())
        b = len(members)
        # every known ordered pair appears in both members' lists (the edge and its mirror): / 2
        return total / 2.0 + self.neutral * (b * (b - 1) - fn_pairs)


def false_negatives_from_file(path, sample_ids: Sequence[str]) -> FalseNegatives:
    """False negatives given as groups: a JSON object {sample id: group} (any JSON scalar);
    samples with the same group are false negatives of each other, samples not listed are
    in a group of their own. E.g. a synthetic corpus's true duplicates (an oracle)."""
    import json
    from pathlib import Path

    from slt_llm.errors import InputError

    try:
        groups = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(path, f"unreadable false-negative groups ({e})") from None
    if not isinstance(groups, dict):
        raise InputError(path, "false-negative groups must be a JSON object {sample id: group}")
    ids: dict = {}
    out = np.empty(len(sample_ids), dtype=np.int64)
    for i, sid in enumerate(sample_ids):
        key = ("g", json.dumps(groups[sid])) if sid in groups else ("s", i)
        out[i] = ids.setdefault(key, len(ids))
    return FalseNegatives(out)


def combine_false_negatives(a: FalseNegatives, b: FalseNegatives) -> FalseNegatives:
    """The union of two false-negative relations over the same samples (b's clusters
    become explicit sample pairs)."""
    if a.num_samples != b.num_samples:
        raise ConfigError(f"false negatives over {a.num_samples} and {b.num_samples} samples")
    ids = b.cluster_ids
    order = np.argsort(ids, kind="stable")
    pairs = [b.sample_pairs]
    srt = ids[order]
    starts = np.flatnonzero(np.r_[True, srt[1:] != srt[:-1]])
    for s0, s1 in zip(starts, np.r_[starts[1:], len(srt)]):
        members = order[s0:s1]
        if len(members) > 1:
            iu = np.triu_indices(len(members), k=1)
            pairs.append(np.stack([members[iu[0]], members[iu[1]]], axis=1))
    for c0, c1 in b.cluster_pairs.tolist():
        m0, m1 = np.flatnonzero(ids == c0), np.flatnonzero(ids == c1)
        pairs.append(np.stack(np.meshgrid(m0, m1, indexing="ij"), axis=-1).reshape(-1, 2))
    return FalseNegatives(a.cluster_ids, a.cluster_pairs, np.concatenate([a.sample_pairs, *pairs]))


class _EpochState:
    """Unused samples (swap-remove array: O(1) removal, uniform draws) and
    per-batch scratch arrays over N."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.rng = rng
        self.unused = rng.permutation(n).astype(np.int64)
        self.pos = np.empty(n, dtype=np.int64)
        self.pos[self.unused] = np.arange(n)
        self.n_unused = n
        self.used = np.zeros(n, dtype=bool)
        self.in_pool = np.zeros(n, dtype=bool)
        self.blocked = np.zeros(n, dtype=bool)
        self.gain = np.zeros(n, dtype=np.float32)
        self.pool = np.empty(n, dtype=np.int64)
        self.pool_pos = np.empty(n, dtype=np.int64)

    def take(self, i) -> int:
        i = int(i)
        p, last = self.pos[i], self.n_unused - 1
        j = self.unused[last]
        self.unused[p], self.unused[last] = j, i
        self.pos[j], self.pos[i] = p, last
        self.n_unused = last
        self.used[i] = True
        return i


# ---------------------------------------------------------------- samplers
class GlobalBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's slice (a list of B/W dataset indices) of each global batch.

    All ranks compute the same global batches (deterministic in seed and epoch),
    rank r takes positions [r*B/W, (r+1)*B/W). Use as
    ``DataLoader(ds, batch_sampler=sampler)`` without letting a launcher re-shard it
    (accelerate: do not ``prepare`` this loader). Call ``set_epoch(e)`` each epoch.
    """

    def __init__(self, num_samples: int, global_batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, drop_last: bool = False):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"bad rank {rank} / world_size {world_size}")
        if global_batch_size < 1 or global_batch_size % world_size:
            raise ConfigError(f"global batch size {global_batch_size} must be a positive multiple of "
                              f"world_size {world_size} (equal slices)")
        if global_batch_size > num_samples:
            raise ConfigError(f"global batch size {global_batch_size} is larger than the dataset ({num_samples} samples)")
        self.num_samples, self.global_batch_size = int(num_samples), int(global_batch_size)
        self.rank, self.world_size, self.seed, self.drop_last = rank, world_size, int(seed), drop_last
        self.local_batch_size = global_batch_size // world_size
        self.epoch = 0
        self._cache: tuple[int, np.ndarray] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def global_batches(self, epoch: Optional[int] = None) -> np.ndarray:
        e = self.epoch if epoch is None else int(epoch)
        if self._cache is None or self._cache[0] != e:
            self._cache = (e, self._build(e))
        return self._cache[1]

    def _build(self, epoch: int) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.global_batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list]:
        lo = self.rank * self.local_batch_size
        for batch in self.global_batches():
            yield batch[lo : lo + self.local_batch_size].tolist()


class PairSelectionBatchSampler(GlobalBatchSampler):
    """Greedy curriculum global batches from a ``PairSelector``; ``num_epochs`` is
    E of the alpha schedule (the pair-selection epochs), epoch e set by set_epoch."""

    def __init__(self, selector: PairSelector, global_batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, num_epochs: int = 1, drop_last: bool = False):
        super().__init__(selector.num_samples, global_batch_size, rank, world_size, seed, drop_last)
        self.selector = selector
        self.num_epochs = int(num_epochs)

    def alpha(self, epoch: Optional[int] = None) -> float:
        return alpha_schedule(self.selector.cfg.schedule, self.epoch if epoch is None else epoch, self.num_epochs)

    def _build(self, epoch: int) -> np.ndarray:
        return self.selector.build_epoch(epoch, self.num_epochs, self.global_batch_size, self.seed, self.drop_last)
