"""Pair scoring, groups, false negatives, curriculum, greedy batches and samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sacrebleu.metrics import CHRF

from slt_llm.config import SelectionConfig
from slt_llm.contrastive.selection import (
    HIGH_TO_HIGH,
    HIGH_TO_LOW,
    LOW_LOW,
    LOW_TO_HIGH,
    PairChrF,
    PairSelectionBatchSampler,
    PairSelector,
    alpha_schedule,
    neutral_delta,
    normalize_sentence,
    positive_relative_pairs,
    score_pairs,
    sentence_clusters,
    text_false_negatives,
)
from slt_llm.contrastive.trajectories import Trajectories, compute_trajectories
from slt_llm.errors import ConfigError
from slt_llm.training.data_order import RandomGlobalBatchSampler


def _traj_from(cand, traj, mean=None, std=None, positive=None):
    cand = torch.as_tensor(np.asarray(cand), dtype=torch.int32)
    traj = torch.as_tensor(np.asarray(traj), dtype=torch.float32)
    pos = torch.zeros(cand.shape[0], traj.shape[2]) if positive is None else torch.as_tensor(positive).float()
    return Trajectories(cand, traj, pos, mean, std)


def test_groups_and_signed_drift_free_scores_on_constructed_trajectories():
    # anchor 0's four candidates: high->low, low->high, high->high, low->low (absolute cosines)
    traj = np.array([[[0.8, 0.5, 0.1], [0.1, 0.4, 0.7], [0.9, 0.9, 0.95], [0.0, 0.1, 0.2]]] * 5)
    cand = np.array([[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 3, 4], [0, 1, 2, 4], [0, 1, 2, 3]])
    # all negatives drifted up by 0.3 and spread out x2 between the first and last checkpoint
    tr = _traj_from(cand, traj, mean=[0.0, 0.1, 0.3], std=[0.2, 0.3, 0.4])
    sc = score_pairs(tr, high_level=0.5)
    assert sc.rule == "absolute"
    assert sc.group[0].tolist() == [HIGH_TO_LOW, LOW_TO_HIGH, HIGH_TO_HIGH, LOW_LOW]
    z0, zl = traj[0, :, 0] / 0.2, (traj[0, :, -1] - 0.3) / 0.4
    np.testing.assert_allclose(sc.delta[0], zl - z0, atol=1e-5)
    np.testing.assert_allclose(sc.score, sc.delta)
    assert sc.score[0, 1] > sc.score[0, 3] > sc.score[0, 0]  # low->high hardest, high->low easiest (signed)
    # the low-low pair ROSE in raw cosine (+0.2) but less than the drift: drift-free it fell
    assert traj[0, 3, -1] > traj[0, 3, 0] and sc.delta[0, 3] < 0
    assert sc.shares() == pytest.approx({"high_to_low": .25, "low_to_high": .25, "high_to_high": .25, "low_low": .25})
    # standardised groups: "high" = at least high_z standard deviations above the checkpoint's mean
    zg = score_pairs(tr, high_z=1.0)
    assert zg.rule == "z" and zg.group[0].tolist() == [HIGH_TO_LOW, LOW_TO_HIGH, HIGH_TO_HIGH, LOW_LOW]
    assert score_pairs(tr, high_z=1.2).group[0, 1] == LOW_LOW  # z_last = 1.0
    # per-dataset quantile thresholds: top 10% at each checkpoint is "high"
    q = score_pairs(tr, high_quantile=0.9)
    assert (q.group == HIGH_TO_HIGH).sum() == 5 and (q.group == LOW_LOW).sum() == 15


def _hand_made_selector(schedule="easy", random_share=0.25):
    """9 samples. Anchor 0's candidates: 1, 2, 3 (fell: similar at the first checkpoint,
    pushed apart by the last), 4, 5, 6 (rose); 7 and 8 are unknown to everyone.
    1-3 fell among themselves, 4-6 rose among themselves. All negatives drift up by 0.4."""
    n, m = 9, 6
    fell, rose = [1, 2, 3], [4, 5, 6]
    cand = np.zeros((n, m), np.int64)
    traj = np.zeros((n, m, 2), np.float32)
    mean, std = np.array([0.1, 0.5]), np.array([0.2, 0.2])

    def put(i, js_fell, js_rose, js_rest):
        row = js_fell + js_rose + js_rest
        cand[i] = row
        for k, j in enumerate(row):
            if j in js_fell:
                traj[i, k] = (0.5, 0.5)  # z: 2 -> 0, raw delta 0 (raw cosines would call it neutral)
            elif j in js_rose:
                traj[i, k] = (0.1, 0.9)  # z: 0 -> 2
            else:
                traj[i, k] = (0.1, 0.5)  # moved with the crowd: z 0 -> 0

    put(0, fell, rose, [])
    for i in fell:
        put(i, [0] + [j for j in fell if j != i], [], [7, 8, 4])
        traj[i, -1] = (0.1, 0.5)
    for i in rose:
        put(i, [], [0] + [j for j in rose if j != i], [7, 8, 1])
        traj[i, -1] = (0.1, 0.5)
    for i in (7, 8):
        put(i, [], [], [1, 2, 3, 4, 5, 6])
    tr = _traj_from(cand, traj, mean=mean, std=std, positive=np.ones((n, 2)))  # positives above every negative
    cfg = SelectionConfig(schedule=schedule, hh_threshold=2.0, random_share=random_share)
    return PairSelector(tr, None, cfg), tr


def test_hand_made_trajectories_give_the_expected_easy_and_hard_batches():
    sel, tr = _hand_made_selector()
    assert sel.scores.delta[0].tolist() == pytest.approx([-2, -2, -2, 2, 2, 2])
    for seed in range(5):  # whatever the random candidates drawn
        easy = sel.build_batch(0, 0.0, 4, seed=seed)
        hard = sel.build_batch(0, 1.0, 4, seed=seed)
        assert sorted(easy.tolist()) == [0, 1, 2, 3]
        assert sorted(hard.tolist()) == [0, 4, 5, 6]
    # batch score = sum of delta over the off-diagonal pairs, unknown pairs at delta_0
    d0 = sel.neutral
    assert sel.batch_score(np.array([0, 1, 2, 3])) == pytest.approx(-2 * 12, abs=1e-4)
    assert sel.batch_score(np.array([0, 4, 5, 6])) == pytest.approx(2 * 12, abs=1e-4)
    assert sel.batch_score(np.array([7, 8])) == pytest.approx(2 * d0)
    # an unknown candidate ranks between the separable and the hard ones, not at the bottom
    s_unknown = sel.batch_score(np.array([0, 7]))
    assert sel.batch_score(np.array([0, 1])) < s_unknown < sel.batch_score(np.array([0, 4]))
    # the epoch builder with the curriculum: easy epochs score below random, hard above
    sel_h, _ = _hand_made_selector("hard")
    e = sel.build_epoch(0, 3, 3, seed=1)
    h = sel_h.build_epoch(0, 3, 3, seed=1)
    assert sum(sel.batch_score(b) for b in e) < sum(sel.batch_score(b) for b in h)


def test_neutral_value_of_unknown_pairs_is_their_exact_mean():
    g = torch.Generator().manual_seed(0)
    n, d = 60, 8
    vs = [torch.nn.functional.normalize(torch.randn(n, d, generator=g) + 0.8 * k, dim=1) for k in range(2)]
    ts = [torch.nn.functional.normalize(torch.randn(n, d, generator=g) + 0.8 * k, dim=1) for k in range(2)]
    tr = compute_trajectories(vs, ts, top_m=7)
    sc = score_pairs(tr)
    s = [v @ t.t() for v, t in zip(vs, ts)]
    z = [(s[k].double() - tr.neg_mean[k]) / tr.neg_std[k] for k in range(2)]
    delta = z[1] - z[0]
    known = torch.zeros(n, n, dtype=torch.bool)
    known[torch.arange(n).unsqueeze(1), tr.cand.long()] = True
    unknown = ~known & ~torch.eye(n, dtype=torch.bool)
    off = ~torch.eye(n, dtype=torch.bool)
    assert float(delta[off].mean()) == pytest.approx(0.0, abs=1e-6)  # drift-free: all pairs average to 0
    assert neutral_delta(tr, sc) == pytest.approx(float(delta[unknown].mean()), abs=1e-5)
    sel = PairSelector(tr, None, SelectionConfig(hh_threshold=2.0))
    assert sel.neutral == pytest.approx(neutral_delta(tr, sc))
    lo, hi = float(sc.delta.min()), float(sc.delta.max())
    assert lo < sel.neutral < hi  # neutral, not the minimum
    full = compute_trajectories(vs, ts, top_m=n - 1)
    assert neutral_delta(full, score_pairs(full)) == 0.0  # nothing unknown


def test_trajectory_false_negatives_relative_to_the_positive():
    g = torch.Generator().manual_seed(1)
    n, d = 40, 8
    vs = [torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1) for _ in range(3)]
    ts = [torch.nn.functional.normalize(v + 0.5 * torch.randn(n, d, generator=g), dim=1) for v in vs]  # aligned
    for t in ts:  # sample 5 has sample 3's sentence: identical text embedding at every checkpoint
        t[5] = t[3]
    tr = compute_trajectories(vs, ts, top_m=39)
    pairs = {tuple(p) for p in positive_relative_pairs(tr, 1e-5).tolist()}  # rounding only
    assert (3, 5) in pairs and (5, 3) in pairs
    s = torch.stack([v @ t.t() for v, t in zip(vs, ts)])  # (K, N, N)
    pos = torch.stack([x.diagonal() for x in s])  # (K, N)
    ref = {(i, j) for i in range(n) for j in range(n) if i != j and bool((s[:, i, j] >= pos[:, i] - 0.05).all())}
    assert {tuple(p) for p in positive_relative_pairs(tr, 0.05).tolist()} == ref
    cfg = SelectionConfig(hh_threshold=2.0)
    cfg.traj_fn_eps = 1e-5
    sel = PairSelector(tr, None, cfg)
    assert sel.false_negatives.pair_mask(3, 5)
    assert {tuple(sorted(p)) for p in pairs} == {tuple(p) for p in sel.false_negatives.sample_pairs.tolist()}
    cfg.traj_fn_eps = None
    assert not PairSelector(tr, None, cfg).false_negatives.pair_mask(3, 5)  # its own switch


def test_normalisation_clusters_and_chrf_matches_sacrebleu():
    texts = ["Morgen regnet es.", "morgen  REGNET es", "Heute ist es sonnig!", "heute ist es sonnig"]
    ids, uniq = sentence_clusters(texts)
    assert ids.tolist() == [0, 0, 1, 1] and uniq == ["morgen regnet es", "heute ist es sonnig"]
    assert normalize_sentence("  Hello,   World!! ") == "hello world"
    sents = ["the weather is nice today in the north", "tomorrow the weather will be nice in the north", "x"]
    chrf = PairChrF(sents)
    m = CHRF()
    for a, b in [(0, 1), (1, 2), (0, 0)]:
        ref = 0.5 * (m.sentence_score(sents[a], [sents[b]]).score + m.sentence_score(sents[b], [sents[a]]).score)
        assert chrf(a, b) == pytest.approx(ref, abs=1e-9)


def test_text_false_negatives_exact_and_near_duplicates():
    texts = [
        "am montag regnet es im norden",  # 0
        "Am Montag regnet es im Norden.",  # 1 exact dup of 0 after normalisation
        "am montag regnet es im nordwesten",  # 2 near dup of 0
        "die sonne scheint heute im sueden kraeftig",  # 3 unrelated
        "morgen",  # 4
    ]
    fn = text_false_negatives(texts, SelectionConfig(text_sim_threshold=70.0))
    m = fn.pair_mask(np.arange(5)[:, None], np.arange(5)[None, :])
    expect = np.zeros((5, 5), bool)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        expect[a, b] = expect[b, a] = True
    assert (m == expect).all()
    # with exhaustive search off, near duplicates are found only among candidate pairs
    only_exact = text_false_negatives(texts, text_sim_threshold=70.0, exhaustive_limit=0)
    assert not only_exact.pair_mask(0, 2) and only_exact.pair_mask(0, 1)
    via_cand = text_false_negatives(texts, text_sim_threshold=70.0, exhaustive_limit=0,
                                    candidate_pairs=np.array([[2, 1], [3, 0]]))
    assert via_cand.pair_mask(0, 2) and not via_cand.pair_mask(0, 3)


def test_curriculum_schedules():
    assert [alpha_schedule("linear", e, 5) for e in range(5)] == [0, .25, .5, .75, 1.0]
    assert [alpha_schedule("log", e, 5) for e in range(5)] == pytest.approx([math.log(1 + e) / math.log(5) for e in range(5)])
    assert [alpha_schedule("sqrt", e, 5) for e in range(5)] == pytest.approx([math.sqrt(e / 4) for e in range(5)])
    assert alpha_schedule("sqrt", 9, 5) == 1.0 and alpha_schedule("sqrt", 0, 1) == 0
    assert alpha_schedule("log", 1, 5) > alpha_schedule("linear", 1, 5)  # log rises faster
    # the documented shape of log over 16 epochs: 0.5 at epoch index 3, 0.75 at index 7
    assert alpha_schedule("log", 3, 16) == pytest.approx(0.5) and alpha_schedule("log", 7, 16) == pytest.approx(0.75)
    assert alpha_schedule("easy", 3, 5) == 0 and alpha_schedule("hard", 0, 5) == 1
    assert alpha_schedule("log", 0, 1) == 0 and alpha_schedule("linear", 9, 5) == 1.0
    with pytest.raises(ConfigError, match="schedule"):
        alpha_schedule("cosine", 0, 5)


def _clustered_problem(n=480, d=16, k=3, n_topics=24, seed=0):
    """Embeddings with topic structure, so candidate scores vary a lot."""
    g = torch.Generator().manual_seed(seed)
    topics = torch.randn(n_topics, d, generator=g)
    lab = torch.randint(0, n_topics, (n,), generator=g)
    vs, ts = [], []
    for i in range(k):
        sharp = 0.5 + i  # the model separates topics more over checkpoints
        vs.append(torch.nn.functional.normalize(sharp * topics[lab] + torch.randn(n, d, generator=g), dim=1))
        ts.append(torch.nn.functional.normalize(sharp * topics[lab] + torch.randn(n, d, generator=g), dim=1))
    return compute_trajectories(vs, ts, top_m=16)


@pytest.fixture(scope="module")
def problem():
    return _clustered_problem()


def test_greedy_curriculum_orders_difficulty_once_per_epoch_deterministic(problem):
    n, bsz = problem.num_samples, 32
    means = {}
    for sched in ("easy", "hard"):
        sel = PairSelector(problem, None, SelectionConfig(schedule=sched, hh_threshold=2.0))
        batches = sel.build_epoch(0, 5, bsz, seed=3)
        assert batches.shape == (n // bsz, bsz)
        assert np.array_equal(np.sort(batches.reshape(-1)), np.arange(n))  # each sample exactly once
        assert np.array_equal(batches, sel.build_epoch(0, 5, bsz, seed=3))  # deterministic
        assert not np.array_equal(batches, sel.build_epoch(0, 5, bsz, seed=4))
        means[sched] = np.mean([sel.batch_score(b) for b in batches])
    rand = RandomGlobalBatchSampler(n, bsz, seed=3).global_batches(0)
    rand_mean = np.mean([sel.batch_score(b) for b in rand])
    assert means["easy"] < rand_mean < means["hard"]


def test_false_negatives_never_meet_as_negatives(problem):
    n = problem.num_samples
    texts = [f"sentence number {i % 120}" for i in range(n)]  # every sentence 4 times: exact duplicates
    cfg = SelectionConfig(schedule="hard", hh_threshold=0.6, text_sim_threshold=101.0)
    sel = PairSelector(problem, texts, cfg)
    fn = sel.false_negatives
    assert len(fn.sample_pairs) > 0  # some high-to-high pairs above 0.6 exist here
    # false-negative pairs are not in the adjacency (never scored, never "hard")
    for u in range(0, n, 7):
        nb = sel.adj_dst[sel.adj_ptr[u]:sel.adj_ptr[u + 1]]
        assert not fn.pair_mask(u, nb).any()
    batches = sel.build_epoch(2, 5, 24, seed=0)
    assert np.array_equal(np.sort(batches.reshape(-1)), np.arange(n))
    together = [int(fn.mask(b, b).sum()) for b in batches]
    rand_together = sum(int(fn.mask(b, b).sum()) for b in RandomGlobalBatchSampler(n, 24, seed=0).global_batches(0))
    # they meet only when nothing else is left (the end of the epoch), and then the loss mask removes them
    assert sum(together[:-2]) == 0
    assert sum(together) < rand_together / 4


def test_samplers_slices_equal_disjoint_and_bad_input(problem):
    n = problem.num_samples
    sel = PairSelector(problem, None, SelectionConfig())
    for cls, first in ((PairSelectionBatchSampler, sel), (RandomGlobalBatchSampler, n)):
        samplers = [cls(first, 50, rank=r, world_size=2, seed=1) for r in range(2)]
        for s in samplers:
            s.set_epoch(1)
        per_rank = [list(s) for s in samplers]
        assert len(per_rank[0]) == len(per_rank[1]) == len(samplers[0]) == math.ceil(n / 50)
        for b0, b1 in zip(*per_rank):
            assert len(b0) == len(b1) == 25 and not set(b0) & set(b1)
        seen = [i for b0, b1 in zip(*per_rank) for i in b0 + b1]
        assert set(seen) == set(range(n)) and len(seen) == math.ceil(n / 50) * 50  # last batch topped up
        dropped = cls(first, 50, rank=0, world_size=2, seed=1, drop_last=True)
        assert len(list(dropped)) == n // 50
    with pytest.raises(ConfigError, match="larger than the dataset"):
        RandomGlobalBatchSampler(n, n + 1)
    with pytest.raises(ConfigError, match="multiple of world_size"):
        PairSelectionBatchSampler(sel, 51, rank=0, world_size=2)
    with pytest.raises(ConfigError, match="K >= 2"):
        PairSelector(_traj_from([[1], [0]], np.zeros((2, 1, 1))), None, SelectionConfig())
