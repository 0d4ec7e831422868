"""The shared training infrastructure (training/accelerator, checkpoint, data_order, optim, token_loss, metrics_log) with a small stand-in token model, in one process (plain Accelerate).

The multi-process DeepSpeed paths are exercised with the real SLT model in
tests/test_distributed_stage2.py.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from slt_llm.config import OptimConfig, TrainConfig
from slt_llm.errors import ConfigError
from slt_llm.training import accelerator as accel, checkpoint, data_order, metrics_log, optim, token_loss

V = 40  # vocabulary of the stand-in


class TokenModel(torch.nn.Module):
    """encoder (embedding) + projector + head; next-token loss over masked positions.

    forward(batch) -> {"loss_sum", "num_tokens", "loss"} like SLTModel.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.encoder = torch.nn.Embedding(V, 12)
        self.projector = torch.nn.Linear(12, 12)
        self.head = torch.nn.Linear(12, V)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)

    def forward(self, batch):
        x, mask = batch["x"], batch["mask"]
        logits = self.head(torch.tanh(self.projector(self.encoder(x[:, :-1]))))  # (B, L-1, V)
        m = mask[:, 1:]
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1), reduction="none")
        loss_sum = (ce.reshape(m.shape) * m).sum()
        n = m.sum()
        return {"loss_sum": loss_sum, "num_tokens": int(n), "loss": loss_sum / n.clamp(min=1)}


def _data(n=48, L=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(3, L + 1, (n,), generator=g)  # very different lengths: token weighting matters
    x = torch.randint(0, V, (n, L), generator=g)
    mask = (torch.arange(L)[None] < lens[:, None]).float()
    return x, mask


def _batch(x, mask, idx):
    return {"x": x[idx], "mask": mask[idx]}


def _run(tmp_path, *, batch_size, grad_accum, steps=3, max_grad_norm=1e9):
    """Train the stand-in for ``steps`` optimizer steps; return (losses, final params)."""
    tc = TrainConfig(run_dir=str(tmp_path / f"run_{batch_size}_{grad_accum}"), batch_size=batch_size,
                     grad_accum=grad_accum, seed=0)
    oc = OptimConfig(lr_encoder=5e-2, lr_projector=5e-2, lr_head=5e-2, warmup_steps=1, max_grad_norm=max_grad_norm)
    acc = accel.setup_accelerator(tc, oc)
    try:
        model = TokenModel()
        opt = optim.build_optimizer(optim.make_param_groups(model, oc), oc)
        sch = optim.build_scheduler(opt, oc, steps)
        model, opt, sch = acc.prepare(model, opt, sch)
        x, mask = _data()
        batches = data_order.global_batches(len(x), batch_size, tc.seed, 0, multiple_of=grad_accum)
        losses = []
        for s in range(steps):
            micro = [_batch(x, mask, b) for b in batches[s * grad_accum:(s + 1) * grad_accum]]
            counts = [int(b["mask"][:, 1:].sum()) for b in micro] if grad_accum > 1 else None
            out = token_loss.token_loss_step(acc, model, opt, sch, micro, lambda m, b: m(b),
                                    max_grad_norm=max_grad_norm, local_token_counts=counts)
            losses.append(out["loss"])
        params = {k: v.detach().clone() for k, v in acc.unwrap_model(model).state_dict().items()}
        return losses, params
    finally:
        accel.teardown(acc)


def test_grad_accum_equals_large_batch(tmp_path):
    """4 micro-batches of 2 (token-normalised over the step) == one batch of 8, step by step."""
    l_big, p_big = _run(tmp_path, batch_size=8, grad_accum=1)
    l_acc, p_acc = _run(tmp_path, batch_size=2, grad_accum=4)
    assert l_big == pytest.approx(l_acc, rel=1e-5, abs=1e-6)
    for k in p_big:
        torch.testing.assert_close(p_big[k], p_acc[k], rtol=1e-5, atol=1e-6)
    assert p_big["head.weight"].abs().sum() > 0 and l_big[-1] != l_big[0]  # it trained


def test_token_normalisation_is_not_mean_of_means(tmp_path):
    """The per-step loss is total token loss / total tokens, not an average of micro-batch means."""
    x, mask = _data()
    model = TokenModel()
    batches = data_order.global_batches(len(x), 2, 0, 0, multiple_of=4)
    micro = [_batch(x, mask, b) for b in batches[:4]]
    with torch.no_grad():
        outs = [model(b) for b in micro]
    token_mean = sum(float(o["loss_sum"]) for o in outs) / sum(o["num_tokens"] for o in outs)
    mean_of_means = sum(float(o["loss"]) for o in outs) / 4
    assert abs(token_mean - mean_of_means) > 1e-4  # the data make the two differ
    l_acc, _ = _run(tmp_path, batch_size=2, grad_accum=4, steps=1)
    assert l_acc[0] == pytest.approx(token_mean, rel=1e-6)
    assert token_loss.token_loss_scale(100, world_size=2, grad_accum=4) == pytest.approx(0.08)


def test_one_random_global_batch_order():
    """Stage 2's batches and stage 1's random batches come from one definition
    (data_order.random_global_batches), on their own streams; the orders are the ones they always had."""
    import numpy as np

    rgb = data_order.random_global_batches
    assert data_order.global_batches(50, 8, 3, 2, multiple_of=2) == rgb(50, 8, 3, 2, multiple_of=2).tolist()
    sampler = data_order.RandomGlobalBatchSampler(50, 8, seed=3)
    assert np.array_equal(sampler.global_batches(2), rgb(50, 8, 3, 2, stream=(11,), drop_last=False))
    assert data_order.global_batches(10, 4, 0, 0) == [[4, 6, 2, 7], [3, 5, 9, 0]]
    topped = data_order.RandomGlobalBatchSampler(10, 4, seed=0).global_batches(0).tolist()
    assert topped == [[4, 0, 2, 6], [8, 1, 7, 5], [3, 9, 0, 5]]  # the last batch topped up from the full ones
    assert rgb(3, 4, 0, 0).shape == (0, 4)
    with pytest.raises(ValueError, match="multiple_of=1"):
        rgb(10, 4, 0, 0, drop_last=False, multiple_of=2)


def test_data_order_deterministic_and_sharded():
    a = data_order.global_batches(50, 8, seed=3, epoch=2)
    b = data_order.global_batches(50, 8, seed=3, epoch=2)
    c = data_order.global_batches(50, 8, seed=3, epoch=3)
    assert a == b and a != c and len(a) == 6
    assert sorted(i for g in a for i in g) == sorted(set(i for g in a for i in g))  # no repeats in an epoch
    # two ranks of batch 4 see exactly the global batch of one process with batch 8
    for g in a:
        assert data_order.rank_slice(g, 0, 2) + data_order.rank_slice(g, 1, 2) == g
    assert len(data_order.global_batches(50, 8, 3, 2, multiple_of=4)) == 4
    # evaluation shards: equal counts per rank, every index once among valid entries
    seen = []
    for r in range(3):
        idx, ok = data_order.shard_evenly(7, r, 3)
        assert len(idx) == 3
        seen += [i for i, v in zip(idx, ok) if v]
    assert sorted(seen) == list(range(7))
    tc = TrainConfig(batch_size=4, grad_accum=2, epochs=3)
    assert data_order.steps_per_epoch(50, tc, world_size=2) == 3 and data_order.total_steps(50, tc, 2) == 9


def test_schedule_and_param_groups():
    assert optim.lr_factor(0, 4, 20) == pytest.approx(0.2)
    assert optim.lr_factor(3, 4, 20) == pytest.approx(0.8)
    assert optim.lr_factor(4, 4, 20) == pytest.approx(1.0)
    assert optim.lr_factor(12, 4, 20) == pytest.approx(0.5)  # half way through the cosine
    assert optim.lr_factor(20, 4, 20) == pytest.approx(0.0, abs=1e-12)
    assert optim.lr_factor(15, 4, 20, "constant") == 1.0

    class WithLora(TokenModel):
        def __init__(self):
            super().__init__()
            self.llm = torch.nn.ModuleDict({"lora_A": torch.nn.Linear(4, 4, bias=False)})
            self.frozen = torch.nn.Linear(3, 3)
            self.frozen.requires_grad_(False)

    oc = OptimConfig(lr_encoder=1.0, lr_projector=2.0, lr_lora=3.0, lr_head=4.0, weight_decay=0.1)
    groups = {g["name"]: g for g in optim.make_param_groups(WithLora(), oc)}
    assert {k: g["lr"] for k, g in groups.items()} == {
        "encoder": 1.0, "projector": 2.0, "projector_no_decay": 2.0, "lora": 3.0, "head": 4.0, "head_no_decay": 4.0}
    assert groups["projector_no_decay"]["weight_decay"] == 0.0 and groups["projector"]["weight_decay"] == 0.1
    n = sum(p.numel() for g in groups.values() for p in g["params"])
    assert n == sum(p.numel() for p in WithLora().parameters() if p.requires_grad)
    # the schedule applies per group
    opt = optim.build_optimizer(list(groups.values()), oc)
    sch = optim.build_scheduler(opt, OptimConfig(warmup_steps=1, schedule="cosine"), 5)
    assert [g["lr"] for g in opt.param_groups][:1] == [pytest.approx(0.5 * g) for g in [opt.param_groups[0]["initial_lr"]]]
    opt.step()  # (no gradients: a no-op, keeps torch's step-order check quiet)
    sch.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["initial_lr"])
    with pytest.raises(ConfigError, match="adamw"):
        optim.build_optimizer(list(groups.values()), OptimConfig(optimizer="sgd"))


def test_adamw8bit_lowers_loss():
    import bitsandbytes as bnb

    x, mask = _data()
    model = TokenModel()
    oc = OptimConfig(optimizer="adamw8bit", lr_encoder=3e-2, lr_projector=3e-2, lr_head=3e-2)
    opt = optim.build_optimizer(optim.make_param_groups(model, oc), oc)
    assert isinstance(opt, bnb.optim.AdamW8bit)
    batch = {"x": x, "mask": mask}
    first = float(model(batch)["loss"].detach())
    for _ in range(15):
        opt.zero_grad()
        model(batch)["loss"].backward()
        opt.step()
    assert float(model(batch)["loss"].detach()) < 0.8 * first


def test_bad_deepspeed_config_is_config_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"zero_optimization": {"stage": 3,}')
    with pytest.raises(ConfigError, match="bad.json: DeepSpeed config is not valid JSON"):
        accel.setup_accelerator(TrainConfig(deepspeed=str(bad), run_dir=str(tmp_path)))
    nozero = tmp_path / "nozero.json"
    nozero.write_text('{"train_micro_batch_size_per_gpu": "auto"}')
    with pytest.raises(ConfigError, match="nozero.json: .*no zero_optimization"):
        accel.setup_accelerator(TrainConfig(deepspeed=str(nozero), run_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="missing.json: DeepSpeed config file not found"):
        accel.check_deepspeed_config(tmp_path / "missing.json")
    stage = tmp_path / "stage.json"
    stage.write_text('{"zero_optimization": {"stage": 5}}')
    with pytest.raises(ConfigError, match="stage must be"):
        accel.check_deepspeed_config(stage)
    import os

    assert "RANK" not in os.environ or os.environ.get("RANK") == "0"


def test_metrics_logger_schema_and_truncate(tmp_path):
    log = metrics_log.MetricsLogger(tmp_path)
    for s in (1, 2, 3):
        log.log(s, loss=torch.tensor(1.0 / s), lr=1e-3, samples_per_s=12.5, epoch=0)
    rows = metrics_log.read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"step", "loss", "lr", "samples_per_s"} <= set(r)
        assert isinstance(r["loss"], float)
    log.truncate_after(2)
    assert [r["step"] for r in metrics_log.read_metrics(tmp_path)] == [1, 2]
    json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])


def _prepared_step(acc, oc):
    """(model, optimizer, scheduler prepared on ``acc``, one-optimizer-step function on a fixed batch)."""
    model = TokenModel()
    opt = optim.build_optimizer(optim.make_param_groups(model, oc), oc)
    sch = optim.build_scheduler(opt, oc, 10)
    model, opt, sch = acc.prepare(model, opt, sch)
    x, mask = _data()

    def step():
        return token_loss.token_loss_step(acc, model, opt, sch, [_batch(x, mask, [0, 1])], lambda m, b: m(b),
                                          max_grad_norm=1.0)

    return model, opt, sch, step


def test_checkpoint_roundtrip_rotation_and_rng(tmp_path):
    tc = TrainConfig(run_dir=str(tmp_path), batch_size=2)
    oc = OptimConfig(lr_encoder=0.1, lr_projector=0.1, lr_head=0.1, warmup_steps=0)
    acc = accel.setup_accelerator(tc, oc)
    try:
        model, opt, sch, step = _prepared_step(acc, oc)
        other = tmp_path / "checkpoints" / "step_0"  # another run's (older, complete) checkpoint in the folder
        other.mkdir(parents=True)
        (other / "trainer_state.json").write_text(checkpoint.TrainerState(step=0, run_id="other").to_json())
        for k in range(1, 4):
            step()
            st = checkpoint.TrainerState(step=k, epoch=0, batch_in_epoch=k, best_metric=1.5 * k, best_step=k,
                                         run_id="mine")
            checkpoint.save_checkpoint(acc, tmp_path, st, keep=2)
        # rotation kept this run's newest two and never touched the other run's checkpoint
        assert [p.name for p in checkpoint.list_checkpoints(tmp_path, "mine")] == ["step_2", "step_3"]
        assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_0", "step_2", "step_3"]
        later = tmp_path / "checkpoints" / "step_99"  # a newer checkpoint of another run is not resumed from
        later.mkdir()
        (later / "trainer_state.json").write_text(checkpoint.TrainerState(step=99, run_id="other").to_json())
        assert checkpoint.latest_checkpoint(tmp_path, "mine").name == "step_3"
        shutil.rmtree(later)
        saved = {k: v.clone() for k, v in acc.unwrap_model(model).state_dict().items()}
        lr_saved = opt.param_groups[0]["lr"]
        noise_after_save = torch.rand(3)
        step()
        step()
        assert not torch.equal(saved["head.weight"], acc.unwrap_model(model).head.weight)
        st = checkpoint.load_checkpoint(acc, checkpoint.latest_checkpoint(tmp_path))
        assert (st.step, st.batch_in_epoch, st.best_metric, st.best_step) == (3, 3, 4.5, 3)
        for k, v in acc.unwrap_model(model).state_dict().items():
            torch.testing.assert_close(v, saved[k], rtol=0, atol=0)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr_saved)
        assert torch.equal(torch.rand(3), noise_after_save)  # RNG continues as after the save
        # an incomplete checkpoint (no trainer state) is ignored
        (tmp_path / "checkpoints" / "step_9").mkdir()
        assert checkpoint.latest_checkpoint(tmp_path).name == "step_3"
    finally:
        accel.teardown(acc)


def test_a_bad_file_in_the_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    """Truncate (or replace by a plain pickle) each file of the newest checkpoint in turn: resume
    warns in one line naming that file and restores the checkpoint before, weights, optimizer,
    scheduler and RNG included; with no usable checkpoint left it starts fresh, saying so (issue 21)."""
    import pickle

    tc = TrainConfig(run_dir=str(tmp_path / "run"), batch_size=2)
    oc = OptimConfig(lr_encoder=0.1, lr_projector=0.1, lr_head=0.1, warmup_steps=0)
    acc = accel.setup_accelerator(tc, oc)
    try:
        model, opt, sch, step = _prepared_step(acc, oc)
        run = tmp_path / "run"
        saved = {}
        for k in (1, 2):
            step()
            checkpoint.save_checkpoint(acc, run, checkpoint.TrainerState(step=k, run_id="r"), keep=3)
            saved[k] = ({n: v.clone() for n, v in acc.unwrap_model(model).state_dict().items()},
                        opt.param_groups[0]["lr"], torch.rand(2))
        newest = run / "checkpoints" / "step_2"
        kinds = sorted(p.name for p in newest.iterdir())
        assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl",
                "trainer_state.json"} <= set(kinds), kinds
        assert checkpoint.checkpoint_problem(newest) is None
        pristine = {n: (newest / n).read_bytes() for n in kinds}
        cases = [(n, pristine[n][: len(pristine[n]) // 2]) for n in kinds]  # every file cut in half
        cases.append(("optimizer.bin", pickle.dumps({"state": {}, "param_groups": []})))  # a plain pickle
        for name, data in cases:
            (newest / name).write_bytes(data)
            step()  # move away from step 1's state
            capsys.readouterr()
            st = checkpoint.resume_state(acc, run, what="stage 2", run_id="r")
            err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            assert st.step == 1, name
            assert len(err) == 1 and err[0].startswith(f"stage 2: warning: {newest / name}: "), (name, err)
            assert f"resuming from the previous checkpoint {run / 'checkpoints' / 'step_1'}" in err[0]
            weights, lr, noise = saved[1]
            for n, v in acc.unwrap_model(model).state_dict().items():
                torch.testing.assert_close(v, weights[n], rtol=0, atol=0)
            assert opt.param_groups[0]["lr"] == pytest.approx(lr)
            assert torch.equal(torch.rand(2), noise)
            with pytest.raises(ConfigError) as e:  # loaded directly: one line naming the file
                checkpoint.load_checkpoint(acc, newest)
            assert str(e.value).startswith(f"{newest / name}: ") and "\n" not in str(e.value)
            (newest / name).write_bytes(pristine[name])
        assert checkpoint.resume_state(acc, run, run_id="r").step == 2  # intact again: the newest is used
        for k in (1, 2):  # nothing usable: a fresh start, said so
            (run / "checkpoints" / f"step_{k}" / "model.safetensors").write_bytes(b"\0" * 5)
        capsys.readouterr()
        assert checkpoint.resume_state(acc, run, run_id="r").step == 0
        out = capsys.readouterr()
        assert out.err.count("warning:") == 2 and "no usable checkpoint" in out.out
    finally:
        accel.teardown(acc)


def test_checkpoint_from_other_model_is_config_error(tmp_path):
    tc = TrainConfig(run_dir=str(tmp_path), batch_size=2)
    oc = OptimConfig()
    acc = accel.setup_accelerator(tc, oc)
    try:
        model = acc.prepare(TokenModel())
        checkpoint.save_checkpoint(acc, tmp_path, checkpoint.TrainerState(step=1), keep=1)
    finally:
        accel.teardown(acc)
    acc = accel.setup_accelerator(tc, oc)
    try:
        other = torch.nn.Sequential(torch.nn.Linear(3, 3))
        acc.prepare(other)
        with pytest.raises(ConfigError, match="does not match"):
            checkpoint.load_checkpoint(acc, checkpoint.latest_checkpoint(tmp_path))
    finally:
        accel.teardown(acc)
    assert model is not None and math.isfinite(1.0)


def test_deepspeed_group_cache_is_dropped_with_the_process_group(tmp_path):
    """A second in-process run after teardown must not reuse DeepSpeed's cached clone
    of a destroyed world group ("Group ... is not registered" in engine set-up)."""
    import torch.distributed as dist
    from deepspeed.utils import groups

    from slt_llm.training.accelerator import _forget_deepspeed_groups

    import deepspeed

    def init(i):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / f'pg{i}'}", rank=0, world_size=1)
        deepspeed.init_distributed(dist_backend="gloo")  # DeepSpeed's comm layer over that group

    init(0)
    groups._clone_world_group()
    dist.destroy_process_group()
    init(1)
    try:
        with pytest.raises(ValueError, match="not registered"):
            dist.get_global_rank(groups._clone_world_group(), 0)  # the stale clone, as before the fix
        _forget_deepspeed_groups()
        assert dist.get_global_rank(groups._clone_world_group(), 0) == 0
    finally:
        dist.destroy_process_group()
        _forget_deepspeed_groups()
