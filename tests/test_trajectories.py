"""Blockwise candidate trajectories vs the brute-force N x N reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slt_llm.contrastive.loss import brute_force_fine_similarity
from slt_llm.contrastive.trajectories import (
    Trajectories,
    brute_force_trajectories,
    compute_fine_trajectories,
    compute_trajectories,
    group_size_for,
    ids_hash,
    trajectories_from_matrices,
)
from slt_llm.errors import ConfigError, InputError


def _checkpoints(n, d, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    base_v = torch.randn(n, d, generator=g)
    base_t = torch.randn(n, d, generator=g)
    vs, ts = [], []
    for i in range(k):  # embeddings drift between checkpoints, as heads train
        vs.append(torch.nn.functional.normalize(base_v + 0.7 * i * torch.randn(n, d, generator=g), dim=1))
        ts.append(torch.nn.functional.normalize(base_t + 0.7 * i * torch.randn(n, d, generator=g), dim=1))
    return vs, ts


@pytest.mark.parametrize("n,m,block", [(300, 10, 7), (301, 10, 64), (31, 10, 64), (200, 199, 50)])
def test_matches_bruteforce(n, m, block):
    vs, ts = _checkpoints(n, 12, 4)
    got = compute_trajectories(vs, ts, top_m=m, block_size=block)
    ref = brute_force_trajectories(vs, ts, m)
    m_eff = min(m, n - 1)
    assert got.cand.shape == (n, m_eff) and got.cand.dtype == torch.int32
    assert got.traj.shape == (n, m_eff, 4) and got.positive.shape == (n, 4)
    assert torch.equal(got.cand, ref.cand)  # same candidates in the same order
    torch.testing.assert_close(got.traj, ref.traj, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.positive, ref.positive, atol=1e-5, rtol=1e-5)
    assert not (got.cand == torch.arange(n).unsqueeze(1)).any()  # never the positive


def test_grouped_path_used_and_high_to_low_kept():
    n, m = 400, 8
    assert group_size_for(n, m) > 1  # the exact grouped top-M is what is tested here
    vs, ts = _checkpoints(n, 16, 3, seed=1)
    # pair (5, 17): very similar at the first checkpoint, dissimilar at the last
    ts[0][17] = vs[0][5]
    ts[-1][17] = -vs[-1][5]
    # pair (6, 18): dissimilar first, similar last
    ts[0][18] = -vs[0][6]
    ts[-1][18] = vs[-1][6]
    tr = compute_trajectories(vs, ts, top_m=m, block_size=64)
    # uneven row blocks give the same answer
    other = compute_trajectories(vs, ts, top_m=m, block_size=37)
    assert torch.equal(other.cand, tr.cand) and torch.allclose(other.traj, tr.traj, atol=1e-6)
    assert tr.cand[5, 0] == 17 and tr.traj[5, 0, 0] == pytest.approx(1.0, abs=1e-5)
    assert tr.traj[5, 0, -1] == pytest.approx(-1.0, abs=1e-5)
    assert tr.cand[6, 0] == 18 and tr.traj[6, 0, -1] == pytest.approx(1.0, abs=1e-5)


def test_memory_cap_float16_and_memmap_inputs(tmp_path):
    n, d, k = 120, 8, 3
    vs, ts = _checkpoints(n, d, k, seed=2)
    paths = []
    for i in range(k):  # float16 .npy files, memory-mapped
        for name, x in (("v", vs[i]), ("t", ts[i])):
            p = tmp_path / f"{name}{i}.npy"
            np.save(p, x.numpy().astype(np.float16))
            paths.append(p)
    mv = [np.load(tmp_path / f"v{i}.npy", mmap_mode="r") for i in range(k)]
    mt = [np.load(tmp_path / f"t{i}.npy", mmap_mode="r") for i in range(k)]
    # memory_mb so small that one anchor row per block is all that fits
    got = compute_trajectories(mv, mt, top_m=6, memory_mb=1e-6, dtype=torch.float16)
    ref = brute_force_trajectories([torch.from_numpy(np.array(x)) for x in mv],
                                   [torch.from_numpy(np.array(x)) for x in mt], 6)
    assert got.traj.dtype == torch.float16
    assert torch.equal(got.cand, ref.cand)
    torch.testing.assert_close(got.traj.float(), ref.traj, atol=2e-3, rtol=0)


def test_moments_are_exact_and_key_keeps_high_to_low_under_drift():
    n = 80
    vs, ts = _checkpoints(n, 6, 2, seed=3)
    c = torch.nn.functional.normalize(torch.ones(6), dim=0)  # a global drift up at the end: a shared direction
    vs[1] = torch.nn.functional.normalize(vs[1] + 1.5 * c, dim=1)
    ts[1] = torch.nn.functional.normalize(ts[1] + 1.5 * c, dim=1)
    tr = compute_trajectories(vs, ts, top_m=5)
    off = ~torch.eye(n, dtype=torch.bool)
    for k in range(2):
        s = (vs[k] @ ts[k].t()).double()[off]
        assert tr.neg_mean[k] == pytest.approx(float(s.mean()), abs=1e-6)
        assert tr.neg_std[k] == pytest.approx(float(s.std(unbiased=False)), rel=1e-5)
    assert tr.neg_mean[1] > tr.neg_mean[0] + 0.3
    # a raw-cosine key would take almost only pairs that are high at the (drifted) last checkpoint
    z = tr.standardized()
    assert (z[..., 0] > z[..., 1]).mean() > 0.2


def test_fine_grained_trajectories_match_brute_force():
    g = torch.Generator().manual_seed(5)
    n, k = 30, 3
    vt = [(torch.nn.functional.normalize(torch.randn(n, 4, 6, generator=g), dim=-1), torch.rand(n, 4, generator=g) < .7)
          for _ in range(k)]
    tt = [(torch.nn.functional.normalize(torch.randn(n, 5, 6, generator=g), dim=-1), torch.rand(n, 5, generator=g) < .7)
          for _ in range(k)]
    got = compute_fine_trajectories(vt, tt, top_m=6, block_size=7)
    ref = trajectories_from_matrices([brute_force_fine_similarity(v, vm, t, tm) for (v, vm), (t, tm) in zip(vt, tt)], 6)
    assert got.similarity == "fine"
    assert torch.equal(got.cand, ref.cand)
    torch.testing.assert_close(got.traj, ref.traj, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.positive, ref.positive, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got.neg_mean, ref.neg_mean, atol=1e-6)
    np.testing.assert_allclose(got.neg_std, ref.neg_std, rtol=1e-5)


def test_save_load_roundtrip_and_bad_inputs(tmp_path):
    vs, ts = _checkpoints(50, 8, 2)
    tr = compute_trajectories(vs, ts, top_m=5)
    tr.ids_hash = ids_hash([f"s{i}" for i in range(50)])
    p = tmp_path / "traj.npz"
    tr.save(p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["traj.npz"]  # temp file renamed, none left
    back = Trajectories.load(p, expect_ids_hash=ids_hash([f"s{i}" for i in range(50)]))
    assert torch.equal(back.cand, tr.cand) and torch.equal(back.traj, tr.traj)
    np.testing.assert_array_equal(back.neg_mean, tr.neg_mean)
    with pytest.raises(InputError, match="traj.npz: computed on other training samples"):
        Trajectories.load(p, expect_ids_hash=ids_hash([f"s{i}" for i in range(49)] + ["other"]))
    assert (back.num_samples, back.top_m, back.num_checkpoints) == (50, 5, 2)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        Trajectories.load(bad)
    with pytest.raises(ConfigError, match="at least 2"):
        compute_trajectories(vs[:1], ts[:1])
    with pytest.raises(ConfigError, match="shape"):
        compute_trajectories(vs, [ts[0], ts[1][:40]])
