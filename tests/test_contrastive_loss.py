"""SelectiveInfoNCE: brute-force reference, false-negative mask, and 2-process gloo parity."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from slt_llm.contrastive.loss import (
    FalseNegatives,
    SelectiveInfoNCE,
    brute_force_fine_similarity,
    fine_grained_similarity,
    gather_features,
)
from slt_llm.errors import ConfigError

B, D, W = 8, 6, 2


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    xv = torch.randn(B, D, generator=g, dtype=torch.float64)
    xt = torch.randn(B, D, generator=g, dtype=torch.float64)
    proj = torch.randn(D, D, generator=g, dtype=torch.float64) / math.sqrt(D)
    index = torch.tensor([5, 0, 9, 3, 7, 1, 8, 2])  # dataset indices of the global batch
    # clusters: 0 and 9 share a sentence; 3's cluster is a near-dup of 7's; (8, 1) is an hh pair
    cluster_ids = np.arange(10)
    cluster_ids[9] = 0
    fn = FalseNegatives(cluster_ids, cluster_pairs=np.array([[7, 3]]), sample_pairs=np.array([[8, 1]]))
    return xv, xt, proj, index, fn


def _fine_problem(seed=1):
    """Token features (B, 4, D) / (B, 5, D) with ragged masks; rows 4..7 (rank 1's slice) never
    use the last video token, so that rank can pass shorter tokens (the gather pads)."""
    g = torch.Generator().manual_seed(seed)
    xv = torch.randn(B, 4, D, generator=g, dtype=torch.float64)
    xt = torch.randn(B, 5, D, generator=g, dtype=torch.float64)
    vm = torch.rand(B, 4, generator=g) < 0.7
    tm = torch.rand(B, 5, generator=g) < 0.6
    vm[:, 0] = tm[:, 0] = True
    vm[4:, 3] = False
    return xv, vm, xt, tm


def _fine_loss_ref(xv, vm, xt, tm, proj, scale, fn_mask=None):
    """InfoNCE over the brute-force fine-grained similarity (float64, explicit)."""
    v = torch.nn.functional.normalize(xv @ proj, dim=-1)
    t = torch.nn.functional.normalize(xt @ proj, dim=-1)
    s = brute_force_fine_similarity(v, vm, t, tm)
    n = s.shape[0]
    total = 0.0
    for a in range(n):
        for row in (s[a], s[:, a]):
            keep = [c for c in range(n) if c == a or fn_mask is None or not fn_mask[a][c]]
            total += -scale * float(row[a]) + math.log(sum(math.exp(scale * float(row[c])) for c in keep))
    return total / (2 * n)


def test_fine_grained_similarity_matches_brute_force():
    xv, vm, xt, tm = _fine_problem()
    v, t = torch.nn.functional.normalize(xv, dim=-1), torch.nn.functional.normalize(xt, dim=-1)
    ref = brute_force_fine_similarity(v, vm, t, tm)
    torch.testing.assert_close(fine_grained_similarity(v, vm, t, tm), ref)
    torch.testing.assert_close(fine_grained_similarity(v, vm, t, tm, chunk_mb=1e-6), ref)  # one column per chunk
    torch.testing.assert_close(fine_grained_similarity(v, vm, t, tm, pairwise=False), ref.diagonal())
    # one token each side: the pooled cosine
    one = fine_grained_similarity(v[:, :1], vm[:, :1], t[:, :1], tm[:, :1])
    torch.testing.assert_close(one, v[:, 0] @ t[:, 0].t())


def test_fine_grained_loss_matches_brute_force_and_has_gradients():
    xv, vm, xt, tm = _fine_problem()
    _, _, proj, index, fn = _problem()
    proj = proj.clone().requires_grad_(True)
    crit = SelectiveInfoNCE()
    loss = crit(xv @ proj, xt @ proj, torch.tensor(7.0, dtype=torch.float64), video_mask=vm, text_mask=tm,
                index=index, false_negatives=fn)
    mask = fn.mask(index, index).numpy()
    assert float(loss.detach()) == pytest.approx(_fine_loss_ref(xv, vm, xt, tm, proj.detach(), 7.0, mask), rel=1e-9)
    loss.backward()
    assert proj.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="video_mask"):
        crit(xv, xt, torch.tensor(1.0))


def _brute_loss(v, t, scale, mask):
    """Explicit per-row sums in float64; mask[a, c] True removes column c from row a."""
    v = v / v.norm(dim=1, keepdim=True)
    t = t / t.norm(dim=1, keepdim=True)
    n = v.shape[0]
    total = 0.0
    for a in range(n):
        for x, y in ((v, t), (t, v)):
            den = sum(math.exp(scale * float(x[a] @ y[c])) for c in range(n) if c == a or not mask[a][c])
            total += -scale * float(x[a] @ y[a]) + math.log(den)
    return total / (2 * n)


def test_false_negative_mask_matches_definition():
    _, _, _, index, fn = _problem()
    m = fn.mask(index, index).numpy()
    idx = index.tolist()
    cid = fn.cluster_ids
    for a, i in enumerate(idx):
        for c, j in enumerate(idx):
            expect = i != j and (
                cid[i] == cid[j] or {cid[i], cid[j]} == {3, 7} or {i, j} == {1, 8}
            )
            assert m[a, c] == expect, (i, j)
    assert m.sum() == 6  # (0,9), (3,7), (1,8), each both ways
    assert sorted(fn.partners(0).tolist()) == [9] and fn.partners(3).tolist() == [7]
    assert fn.partners(4).size == 0


def test_loss_equals_bruteforce_with_and_without_mask():
    xv, xt, _, index, fn = _problem()
    loss = SelectiveInfoNCE()
    scale = torch.tensor(7.5, dtype=torch.float64)
    plain = loss(xv, xt, scale)
    assert plain.item() == pytest.approx(_brute_loss(xv, xt, 7.5, np.zeros((B, B), bool)), rel=1e-5)
    masked = loss(xv, xt, scale, index=index, false_negatives=fn)
    assert loss.last_stats["masked"] == 6
    ref = _brute_loss(xv, xt, 7.5, fn.mask(index, index).numpy())
    assert masked.item() == pytest.approx(ref, rel=1e-5)
    assert masked.item() < plain.item()  # fewer negatives in the denominators
    # a mask on the positive itself is ignored
    full = torch.ones(B, B, dtype=torch.bool)
    only_pos = loss(xv, xt, scale, fn_mask=full)
    assert only_pos.item() == pytest.approx(0.0, abs=1e-6)


def test_temperature_has_one_owner_the_model():
    """The loss uses the scale it is given (gradient flows to it); the stage-1 model owns the
    learnable temperature and caps the scale at 100 (no gradient beyond the cap)."""
    from slt_llm.config import EncoderConfig, VLPConfig
    from slt_llm.models.vlp import VLPModel

    xv, xt, *_ = _problem()
    s = torch.tensor(7.0, requires_grad=True)
    SelectiveInfoNCE()(xv, xt, s).backward()
    assert s.grad is not None and s.grad.abs() > 0
    assert not list(SelectiveInfoNCE().parameters())
    m = VLPModel(EncoderConfig(dim=16, hand_channels=[4, 8], full_channels=[4, 8], keypoint_hidden=8, num_layers=1,
                               num_heads=2), VLPConfig(embed_dim=8, init_temperature=0.07), 12)
    assert m.clamped_logit_scale().exp().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        m.logit_scale.fill_(math.log(500.0))
    capped = m.clamped_logit_scale().exp()
    assert capped.item() == pytest.approx(100.0, rel=1e-5)
    SelectiveInfoNCE()(xv, xt, capped).backward()
    assert m.logit_scale.grad.item() == 0.0
    with pytest.raises(ConfigError):
        SelectiveInfoNCE(rank=2, world_size=2)


def _run_single():
    xv, xt, proj, index, fn = _problem()
    xv.requires_grad_(True)
    xt.requires_grad_(True)
    proj = proj.clone().requires_grad_(True)
    scale = torch.tensor(9.0, dtype=torch.float64, requires_grad=True)
    loss = SelectiveInfoNCE()(xv @ proj, xt @ proj, scale, index=index, false_negatives=fn)
    loss.backward()
    return loss.detach(), xv.grad, xt.grad, proj.grad, scale.grad


def _worker(rank, port, out_dir):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=W)
    try:
        xv, xt, proj, index, fn = _problem()
        b = B // W
        sl = slice(rank * b, (rank + 1) * b)
        xv_l = xv[sl].clone().requires_grad_(True)
        xt_l = xt[sl].clone().requires_grad_(True)
        proj = proj.clone().requires_grad_(True)
        scale = torch.tensor(9.0, dtype=torch.float64, requires_grad=True)
        crit = SelectiveInfoNCE(rank, W, false_negatives=fn)
        loss = crit(xv_l @ proj, xt_l @ proj, scale, index=index[sl])
        loss.backward()
        # what DDP / DeepSpeed do with parameter gradients: average over ranks
        for g in (proj.grad, scale.grad):
            dist.all_reduce(g)
            g /= W
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        mean_loss /= W
        # the gather itself: forward order and identity of the local slice
        gathered = gather_features(xv_l.detach(), rank, W)
        # fine-grained loss: rank 1 passes one video token fewer (ragged lengths are padded)
        fv, fvm, ft, ftm = _fine_problem()
        tv = 4 if rank == 0 else 3
        fproj = _problem()[2].clone().requires_grad_(True)
        floss = SelectiveInfoNCE(rank, W)(fv[sl, :tv] @ fproj, ft[sl] @ fproj, torch.tensor(7.0, dtype=torch.float64),
                                          video_mask=fvm[sl, :tv], text_mask=ftm[sl])
        floss.backward()
        dist.all_reduce(fproj.grad)
        fproj.grad /= W
        fmean = floss.detach().clone()
        dist.all_reduce(fmean)
        fmean /= W
        # trajectories sharded over the two ranks (pooled and fine-grained)
        from slt_llm.contrastive.trajectories import compute_fine_trajectories, compute_trajectories

        vs, ts, vt, tt = _traj_problem()
        tr = compute_trajectories(vs, ts, top_m=6, block_size=5, rank=rank, world_size=W)
        ftr = compute_fine_trajectories(vt, tt, top_m=5, block_size=4, rank=rank, world_size=W)
        torch.save(
            dict(loss=mean_loss, xv=xv_l.grad, xt=xt_l.grad, proj=proj.grad, scale=scale.grad,
                 gathered=gathered, masked=crit.last_stats["masked"], floss=fmean, fproj=fproj.grad,
                 traj=(tr.cand, tr.traj, tr.positive, torch.from_numpy(tr.neg_mean), torch.from_numpy(tr.neg_std)),
                 ftraj=(ftr.cand, ftr.traj, ftr.positive, torch.from_numpy(ftr.neg_mean), torch.from_numpy(ftr.neg_std))),
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def _traj_problem(n=23, d=5, k=3):
    g = torch.Generator().manual_seed(4)
    vs = [torch.nn.functional.normalize(torch.randn(n, d, generator=g) + 0.5 * i, dim=1) for i in range(k)]
    ts = [torch.nn.functional.normalize(torch.randn(n, d, generator=g) + 0.5 * i, dim=1) for i in range(k)]
    vt = [(torch.nn.functional.normalize(torch.randn(n, 3, d, generator=g), dim=-1), torch.rand(n, 3, generator=g) < 0.8)
          for _ in range(k)]
    tt = [(torch.nn.functional.normalize(torch.randn(n, 4, d, generator=g), dim=-1), torch.rand(n, 4, generator=g) < 0.8)
          for _ in range(k)]
    return vs, ts, vt, tt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gather_parity(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=W, join=True)
    loss, gxv, gxt, gproj, gscale = _run_single()
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(W)]
    xv, *_ = _problem()
    b = B // W
    for r, out in enumerate(res):
        torch.testing.assert_close(out["gathered"], xv)
        torch.testing.assert_close(out["loss"], loss)
        torch.testing.assert_close(out["proj"], gproj)
        torch.testing.assert_close(out["scale"], gscale)
        # an input lives on one rank only, so its share of the averaged loss is grad / W
        torch.testing.assert_close(out["xv"] / W, gxv[r * b : (r + 1) * b])
        torch.testing.assert_close(out["xt"] / W, gxt[r * b : (r + 1) * b])
    # the rank-local masks cover the whole global mask (6 entries) between them
    assert sum(o["masked"] for o in res) == 6
    # fine-grained loss across ranks = the single-process one (value and shared-parameter gradient)
    fv, fvm, ft, ftm = _fine_problem()
    fproj = _problem()[2].clone().requires_grad_(True)
    fl = SelectiveInfoNCE()(fv @ fproj, ft @ fproj, torch.tensor(7.0, dtype=torch.float64), video_mask=fvm,
                            text_mask=ftm)
    fl.backward()
    # sharded trajectories = one process
    from slt_llm.contrastive.trajectories import compute_fine_trajectories, compute_trajectories

    vs, ts, vt, tt = _traj_problem()
    one = compute_trajectories(vs, ts, top_m=6, block_size=5)
    fone = compute_fine_trajectories(vt, tt, top_m=5, block_size=4)
    for out in res:
        torch.testing.assert_close(out["floss"], fl.detach())
        torch.testing.assert_close(out["fproj"], fproj.grad)
        for key, ref in (("traj", one), ("ftraj", fone)):
            cand, traj, pos, mean, std = out[key]
            assert torch.equal(cand, ref.cand)
            torch.testing.assert_close(traj, ref.traj)
            torch.testing.assert_close(pos, ref.positive)
            np.testing.assert_allclose(mean.numpy(), ref.neg_mean, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(std.numpy(), ref.neg_std, rtol=1e-6)
    assert gscale.abs() > 0 and gproj.abs().sum() > 0
