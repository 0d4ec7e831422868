"""Resume is exact: a run stopped (``stop_at_step``) or SIGKILLed and resumed logs the same
losses, step for step and bit for bit (CPU, fp32), as the uninterrupted run, in both stages,
with dropout on and a DataLoader worker; and the data loaders' randomness depends on the batch
alone (docs/reliability.md, "Training runs").

Before the fix a resumed stage-2 run drifted from step 3 on (4.078891 vs 4.091710 in issue 21):
building a DataLoader draws its workers' base seed from the global torch generator, so the
resumed run's dropout stream was shifted by that draw.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slt_llm.config import SLTConfig, load_config, save_config
from slt_llm.training.metrics_log import read_metrics

sys.path.insert(0, str(Path(__file__).parent))
from test_stage1 import _cfg as stage1_cfg  # noqa: E402
from test_stage2 import make_corpus, make_run, run_cli  # noqa: E402

# dropout everywhere it exists, a loader worker, accumulation: everything that draws random numbers
STAGE2 = ["encoder.dropout=0.1", "llm.lora_dropout=0.1", "data.num_workers=1"]
STAGE1 = ["encoder.dropout=0.1", "data.num_workers=1", "train.epochs=3", "train.save_every=0"]


def rows_of(run: Path) -> list:
    """(step, loss, lr, grad_norm or temperature) of every training line."""
    return [(r["step"], r["loss"], r.get("lr"), r.get("grad_norm", r.get("temperature")))
            for r in read_metrics(run) if "loss" in r]


def dev_of(run: Path) -> list:
    return [(r["step"], r.get("dev_bleu4", r.get("dev_v2t_r1"))) for r in read_metrics(run)
            if "dev_bleu4" in r or "dev_v2t_r1" in r]


# ------------------------------------------------------------------------------ stage 2
@pytest.fixture(scope="module")
def stage2(tiny_corpus, tiny_llama, tmp_path_factory):
    """An uninterrupted 5-step stage-2 run (2 micro-batches per step, dev BLEU every 2 steps)."""
    from slt_llm.training.stage2 import train_slt

    root = tmp_path_factory.mktemp("exact2")
    corpus = make_corpus(tiny_corpus, root / "corpus")

    def config(name: str) -> SLTConfig:
        path = make_run(corpus, tiny_llama, root / name, root / "cache", max_steps=5, batch_size=2, grad_accum=2,
                        save_every=2, eval_every=2)
        return load_config(SLTConfig, str(path), STAGE2)

    summary = train_slt(config("full"))
    return config, root, summary


@pytest.mark.parametrize("stop", [1, 3])
def test_stage2_stopped_and_resumed_run_repeats_every_loss_bit_for_bit(stage2, stop):
    from slt_llm.training.stage2 import train_slt

    config, root, summary = stage2
    cfg = config(f"stop{stop}")
    train_slt(cfg, stop_at_step=stop)
    assert [r[0] for r in rows_of(root / f"stop{stop}")] == list(range(1, stop + 1))
    again = train_slt(cfg, resume=True)
    want, got = rows_of(root / "full"), rows_of(root / f"stop{stop}")
    assert got == want  # exact float equality of every loss, learning rate and gradient norm
    assert dev_of(root / f"stop{stop}") == dev_of(root / "full")
    assert again["final_loss"] == summary["final_loss"] and again["best_dev_bleu"] == summary["best_dev_bleu"]


@pytest.mark.slow
def test_stage2_sigkilled_run_resumes_bit_for_bit(stage2):
    """A real process SIGKILLed after step 3's update (its newest checkpoint: step 2), resumed."""
    config, root, _ = stage2
    path = root / "killed.yaml"
    save_config(config("killed"), path)
    run_cli(["train", "--config", str(path)], kill_at="step:3")
    assert sorted(p.name for p in (root / "killed" / "checkpoints").iterdir()) == ["step_2"]
    r = run_cli(["train", "--config", str(path), "--resume"])
    assert "resumed from" in r.stdout and "step_2" in r.stdout
    assert rows_of(root / "killed") == rows_of(root / "full")
    assert dev_of(root / "killed") == dev_of(root / "full")


# ------------------------------------------------------------------------------ stage 1
@pytest.fixture(scope="module")
def stage1(tiny_corpus, tiny_llama, tmp_path_factory):
    """Uninterrupted stage-1 runs (3 epochs of 3 steps, dev R@1 at every epoch end): the random
    arm, and pair selection continuing a 2-epoch reference phase."""
    from slt_llm.training.stage1 import train_vlp

    root = tmp_path_factory.mktemp("exact1")
    arms = {"random": ["selection.selection=random"],
            "ps": ["selection.selection=ps", "selection.protocol=continuation", "selection.ref_epochs=2"]}

    def config(arm: str, name: str):
        return stage1_cfg(tiny_corpus, tiny_llama, root / name, *STAGE1, *arms[arm])

    results = {arm: train_vlp(config(arm, f"full_{arm}")) for arm in arms}
    return config, root, results


@pytest.mark.parametrize("arm,stop", [("random", 2), ("random", 3), ("ps", 7)])
def test_stage1_stopped_and_resumed_run_repeats_every_loss_bit_for_bit(stage1, arm, stop):
    """Stopped mid-epoch (2), at an epoch end (3), inside the pair-selection phase (7: the
    selector is rebuilt from the saved trajectories on resume)."""
    from slt_llm.training.stage1 import train_vlp

    config, root, results = stage1
    run = root / f"{arm}_stop{stop}"
    cfg = config(arm, run.name)
    res = train_vlp(cfg, stop_at_step=stop)
    assert res["steps"] == stop and not (run / "result.json").exists()  # not a finished run
    assert (run / "checkpoints" / f"step_{stop}" / "trainer_state.json").is_file()
    again = train_vlp(cfg, resume=True)
    assert rows_of(run) == rows_of(root / f"full_{arm}")
    assert dev_of(run) == dev_of(root / f"full_{arm}")
    assert again["best_dev_r1"] == results[arm]["best_dev_r1"] and again["final_loss"] == results[arm]["final_loss"]
    assert (run / "result.json").is_file()


@pytest.mark.slow
def test_stage1_sigkilled_run_resumes_bit_for_bit(stage1):
    """A real `slt-llm vlp` SIGKILLed after step 5's update (newest checkpoint: step 4), resumed;
    and `--stop-at-step` on the command line."""
    config, root, _ = stage1
    path = root / "killed.yaml"
    cfg = config("random", "killed")
    cfg.train.save_every = 2
    save_config(cfg, path)
    run_cli(["vlp", "--config", str(path)], kill_at="step:5")
    assert sorted(p.name for p in (root / "killed" / "checkpoints").iterdir()) == ["step_2", "step_4"]
    run_cli(["vlp", "--config", str(path), "--resume", "--stop-at-step", "7"])
    assert max(r[0] for r in rows_of(root / "killed")) == 7 and not (root / "killed" / "result.json").exists()
    r = run_cli(["vlp", "--config", str(path), "--resume"])
    assert "resumed from" in r.stdout and "step 7" in r.stdout
    assert rows_of(root / "killed") == rows_of(root / "full_random")
    assert dev_of(root / "killed") == dev_of(root / "full_random")


# ------------------------------------------------------------------------------ loaders
class _Draws(torch.utils.data.Dataset):
    """An item is what loading it draws from python, numpy and torch (a random augmentation)."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        return (i, random.random(), float(np.random.rand()), float(torch.rand(())))


def _collate(items):
    return items


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_randomness_depends_on_the_batch_alone(workers):
    """A loader started at batch 2 (a resumed run) loads what the whole epoch's loader loaded
    there, with 0 or 2 worker processes, the same as one process; the global generators are
    neither read nor moved by building or iterating a loader; another epoch draws otherwise."""
    from slt_llm.data.loader import batch_loader

    batches = [[3, 1, 4], [5, 9, 2], [6, 0, 8], [7, 11, 10]]
    torch.manual_seed(123)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    whole = list(batch_loader(_Draws(), batches, _collate, workers, seed=(0, 1)))
    rest = list(batch_loader(_Draws(), batches[2:], _collate, workers, seed=(0, 1), first=2))
    assert rest == whole[2:]
    assert whole == list(batch_loader(_Draws(), batches, _collate, 0, seed=(0, 1)))  # any worker count
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])
    other = list(batch_loader(_Draws(), batches, _collate, workers, seed=(0, 2)))
    assert [x[0] for b in other for x in b] == [x[0] for b in whole for x in b]  # same samples...
    assert all(x[1:] != y[1:] for b, c in zip(other, whole) for x, y in zip(b, c))  # ...other draws
    draws = [x[1] for b in whole for x in b]
    assert len(set(draws)) == len(draws)  # every item its own stream


def test_a_step_draws_the_same_whatever_ran_before():
    """``seed_step``: what optimizer step s draws depends on (seed, s) alone."""
    from slt_llm.training.checkpoint import seed_step

    seed_step(0, 3)
    a = torch.rand(4)
    torch.rand(100)  # a DataLoader, an evaluation ... drew numbers in between
    random.random()
    seed_step(0, 3)
    assert torch.equal(torch.rand(4), a)
    seed_step(0, 4)
    assert not torch.equal(torch.rand(4), a)
    seed_step(1, 3)
    assert not torch.equal(torch.rand(4), a)
