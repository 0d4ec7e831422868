"""Pair selection over every unused sample (``selection.candidates=all``): the dense selector's
batches against brute force, its score controls (shuffled, last), its false negatives, the
trainer path in one and two processes, ``train.data_seed``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_stage1 import _cfg, _losses, launch_two_vlp  # noqa: E402

from slt_llm.config import SelectionConfig  # noqa: E402
from slt_llm.contrastive import dense  # noqa: E402
from slt_llm.contrastive.loss import FalseNegatives  # noqa: E402
from slt_llm.errors import ConfigError  # noqa: E402


def _sims(n=40, seed=0):
    rng = np.random.default_rng(seed)
    first = (rng.standard_normal((n, n)) * 0.1).astype(np.float32)
    last = (first + rng.standard_normal((n, n)) * 0.1).astype(np.float32)
    np.fill_diagonal(first, 0.9)  # positives far above every negative: no trajectory false negative
    np.fill_diagonal(last, 0.9)
    return first, last


def test_standardize_and_scores():
    first, last = _sims()
    z = dense.standardize(last)
    off = ~np.eye(len(z), dtype=bool)
    assert abs(float(z[off].mean())) < 1e-5 and float(z[off].std()) == pytest.approx(1.0, rel=1e-4)
    d = dense.pair_scores(first, last, "delta")
    np.testing.assert_allclose(d[off], (dense.standardize(last) - dense.standardize(first))[off], atol=1e-6)
    assert (np.diagonal(d) == 0).all()
    np.testing.assert_allclose(dense.pair_scores(first, last, "last")[off], z[off], atol=1e-6)
    sh = dense.pair_scores(first, last, "shuffled", seed=3)
    # the same values, other pairs: the distribution is kept, the pair information is not
    np.testing.assert_allclose(np.sort(sh[off]), np.sort(d[off]), atol=1e-6)
    assert np.corrcoef(sh[off], d[off])[0, 1] < 0.2
    with pytest.raises(ConfigError, match="selection.score"):
        dense.pair_scores(first, last, "nope")


def test_dense_similarity_matches_the_loss_similarities():
    from slt_llm.contrastive.loss import fine_grained_similarity

    g = torch.Generator().manual_seed(0)
    v, t = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    np.testing.assert_allclose(dense.dense_similarity(v, t), (v @ t.T).numpy(), rtol=1e-6)
    vt, tt = torch.randn(7, 4, 6, generator=g), torch.randn(7, 3, 6, generator=g)
    vm, tm = torch.ones(7, 4, dtype=torch.bool), torch.ones(7, 3, dtype=torch.bool)
    vm[2, 3:] = False
    tm[5, 1:] = False
    got = dense.dense_similarity((vt, vm), (tt, tm), block_size=3)
    np.testing.assert_allclose(got, fine_grained_similarity(vt, vm, tt, tm).numpy(), rtol=1e-5, atol=1e-6)


def test_greedy_batches_follow_the_score_against_brute_force():
    first, last = _sims(n=30, seed=1)
    n, bsz = 30, 5
    for schedule, pick in (("hard", np.argmax), ("easy", np.argmin)):
        sel = dense.DensePairSelector(first, last, SelectionConfig(schedule=schedule, candidates="all"))
        s = dense.pair_scores(first, last, "delta")
        w = s + s.T
        batches = sel.build_epoch(0, 4, bsz, seed=2)
        assert batches.shape == (6, bsz) and sorted(batches.reshape(-1).tolist()) == list(range(n))
        b = batches[0]  # the first batch, all samples unused: each next member is the extreme gain
        members = [int(b[0])]
        for nxt in b[1:]:
            avail = [c for c in range(n) if c not in members]
            assert int(nxt) == avail[int(pick(w[members].sum(axis=0)[avail]))]
            members.append(int(nxt))
        if schedule == "hard":
            hard = np.mean([sel.batch_score(b) for b in batches])
        else:
            easy = np.mean([sel.batch_score(b) for b in batches])
    assert hard > easy
    # deterministic in (seed, epoch)
    sel = dense.DensePairSelector(first, last, SelectionConfig(candidates="all"))
    assert np.array_equal(sel.build_epoch(1, 4, bsz, seed=2), sel.build_epoch(1, 4, bsz, seed=2))
    assert not np.array_equal(sel.build_epoch(1, 4, bsz, seed=2), sel.build_epoch(1, 4, bsz, seed=3))


def test_false_negatives_stay_apart_and_are_masked():
    first, last = _sims(n=24, seed=2)
    groups = np.arange(24) // 2  # pairs (0,1), (2,3), ...: the same sentence
    first[4, 9] = last[4, 9] = 0.89  # as similar as the positive at both checkpoints: trajectory rule
    sel = dense.DensePairSelector(first, last, SelectionConfig(candidates="all", schedule="hard"),
                                  base_fn=FalseNegatives(groups))
    fn = sel.false_negatives
    assert fn.pair_mask(0, 1) and fn.pair_mask(4, 9) and fn.pair_mask(9, 4) and not fn.pair_mask(0, 2)
    assert not fn.pair_mask(3, 3)
    assert fn.mask(torch.tensor([0, 4]), torch.tensor([1, 9, 5])).tolist() == [[True, False, False], [False, True, True]]  # 4 and 5: one group
    assert set(fn.partners(4).tolist()) == {5, 9}
    for b in sel.build_epoch(0, 2, 4, seed=0)[:-1]:  # a partner joins only when nothing else is left (the end)
        assert not fn.mask(b, b).any()
    with pytest.raises(ConfigError, match="candidates=top_m"):
        dense.check_dense_size(dense.DENSE_LIMIT + 1)


def test_config_rules(tiny_corpus, tiny_llama, tmp_path):
    from slt_llm.training.stage1 import validate_config

    with pytest.raises(ConfigError, match="needs selection.candidates=all"):
        validate_config(_cfg(tiny_corpus, tiny_llama, tmp_path, "selection.score=shuffled"))
    with pytest.raises(ConfigError, match="candidates must be"):
        validate_config(_cfg(tiny_corpus, tiny_llama, tmp_path, "selection.candidates=some"))


@pytest.fixture(scope="module")
def reference_run(tiny_corpus, tiny_llama, tmp_path_factory):
    """The random arm with a reference checkpoint after each of its 2 epochs (fine similarity)."""
    from slt_llm.training.stage1 import train_vlp

    run = tmp_path_factory.mktemp("ref_dense")
    train_vlp(_cfg(tiny_corpus, tiny_llama, run, "selection.selection=random", "train.epochs=2",
                   "vlp.similarity=fine", "data.dev_manifest=null"))
    return run


def test_trainer_selects_from_every_sample_and_shares_the_dense_file(reference_run, tiny_corpus, tiny_llama, tmp_path):
    from slt_llm.training.stage1 import train_vlp

    common = ["selection.selection=ps", "selection.protocol=separate", f"selection.reference_run={reference_run}",
              "selection.candidates=all", "train.epochs=2", "vlp.similarity=fine", "data.dev_manifest=null",
              "vlp.translation_weight=1.0", "llm.lora_targets=[q_proj,v_proj]"]
    res = train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "ps", *common))
    path = reference_run / "reference" / "dense_similarity.npz"
    first, last = dense.load_similarities(path)
    assert first.shape == (24, 24) and np.isfinite(first).all() and not np.array_equal(first, last)
    rows = _losses(tmp_path / "ps")
    assert [r["phase"] for r in rows] == ["ps"] * 6 and res["selection_s"] > 0
    assert all(np.isfinite(r["loss_translation"]) for r in rows)
    stamp = path.stat().st_mtime_ns
    for score in ("shuffled", "last"):  # the controls reuse the reference run's matrices
        train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / score, *common, f"selection.score={score}"))
        assert path.stat().st_mtime_ns == stamp
    # another training set must not read these matrices
    with pytest.raises(Exception, match="another training set"):
        dense.load_similarities(path, expect_ids_hash="0" * 16)
    with pytest.raises(Exception, match="fine similarity, this run uses vlp.similarity=pooled"):
        dense.load_similarities(path, expect_similarity="pooled")


def test_data_seed_changes_only_the_batches(tiny_corpus, tiny_llama, tmp_path):
    from slt_llm.training.stage1 import train_vlp

    common = ["selection.selection=random", "train.epochs=1", "data.dev_manifest=null", "train.seed=4"]
    train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "a", *common))
    train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "b", *common, "train.data_seed=4"))
    train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "c", *common, "train.data_seed=5"))
    a, b, c = (_losses(tmp_path / x) for x in "abc")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)  # default = train.seed
    assert [r["loss"] for r in a] != pytest.approx([r["loss"] for r in c], rel=1e-3)


@pytest.mark.slow
def test_two_processes_select_like_one(reference_run, tiny_corpus, tiny_llama, tmp_path):
    """2 gloo processes (ZeRO-2, batch 4 each) build the same global batches from the dense
    matrices as 1 process with batch 8: the same losses."""
    from slt_llm.training.stage1 import train_vlp

    common = ["selection.selection=ps", "selection.protocol=separate", f"selection.reference_run={reference_run}",
              "selection.candidates=all", "train.epochs=1", "vlp.similarity=fine", "data.dev_manifest=null",
              "optim.max_grad_norm=0", "optim.warmup_steps=0", "optim.schedule=constant"]
    train_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "one", *common, "train.deepspeed=ds_configs/zero2.json"))
    launch_two_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "two", *common, "train.batch_size=4"), tmp_path / "two.yaml")
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    for x, y in zip(one, two):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-4, abs=1e-5)
