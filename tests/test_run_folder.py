"""Run folders: one run per folder (run.json), --resume / --overwrite, and exports
that survive a crash between their renames."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slt_llm.config import SLTConfig, Stage1Config
from slt_llm.errors import ConfigError
from slt_llm.training import run_folder

sys.path.insert(0, str(Path(__file__).parent))
from test_stage2 import make_corpus, make_run  # noqa: E402


class _Rank0:  # the accelerator as far as claim_run_dir is concerned: one process
    is_main_process = True


def test_fresh_run_into_another_runs_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    cfg = SLTConfig()
    rid = run_folder.claim_run_dir(_Rank0(), run, cfg, stage="stage2")
    held = json.loads((run / "run.json").read_text())
    assert held["run_id"] == rid and held["stage"] == "stage2" and held["config_hash"] == run_folder.config_hash(cfg)
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    with pytest.raises(ConfigError, match=f"holds run {rid} .*pass --resume to continue it or --overwrite"):
        run_folder.claim_run_dir(_Rank0(), run, cfg, stage="stage2")
    assert run_folder.claim_run_dir(_Rank0(), run, cfg, stage="stage2", resume=True) == rid  # the same run
    with pytest.raises(ConfigError, match="holds a stage2 run"):
        run_folder.claim_run_dir(_Rank0(), run, Stage1Config(), stage="stage1", resume=True)
    with pytest.raises(ConfigError, match="exclude each other"):
        run_folder.claim_run_dir(_Rank0(), run, cfg, stage="stage2", resume=True, overwrite=True)
    new = run_folder.claim_run_dir(_Rank0(), run, cfg, stage="stage2", overwrite=True)
    assert new != rid and not (run / "metrics.jsonl").exists()
    # a folder left by an older version (no run.json) counts as a run too, and --resume adopts it
    old = tmp_path / "old"
    (old / "checkpoints" / "step_2").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"holds another run \(checkpoints\)"):
        run_folder.claim_run_dir(_Rank0(), old, cfg, stage="stage2")
    adopted = run_folder.claim_run_dir(_Rank0(), old, cfg, stage="stage2", resume=True)
    assert json.loads((old / "run.json").read_text())["run_id"] == adopted


def test_cli_refuses_in_one_line_before_building_anything(tmp_path, tiny_corpus, tiny_llama, capsys):
    from slt_llm.cli import main

    corpus = make_corpus(tiny_corpus, tmp_path / "corpus")
    cfg = make_run(corpus, tiny_llama, tmp_path / "run", tmp_path / "cache")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps({"run_id": "abc", "stage": "stage2", "started": "then"}))
    code = main(["train", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "holds run abc" in err and "--overwrite" in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.json"]  # nothing written


def test_export_swap_survives_a_crash_between_the_renames(tmp_path, monkeypatch):
    """old model renamed aside, crash, new not yet in place: the next start puts
    the old model back; a crash after the new one is in place keeps the new one."""
    from slt_llm import faults

    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "weights").write_text("old")
    new = run_folder.new_folder(dest)
    (new / "weights").write_text("new")

    def crash(name):
        if name == "export_swap":
            raise KeyboardInterrupt("killed between the renames")

    monkeypatch.setattr(faults, "point", crash)
    with pytest.raises(KeyboardInterrupt):
        run_folder.swap_in(new, dest)
    monkeypatch.undo()
    assert not dest.exists() and (tmp_path / "model.old" / "weights").read_text() == "old"
    assert run_folder.recover_swaps(tmp_path) == [dest]  # what a starting run does first
    assert (dest / "weights").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # the swap done in full: new in place, nothing left beside it
    new = run_folder.new_folder(dest)
    (new / "weights").write_text("new")
    run_folder.swap_in(new, dest)
    assert (dest / "weights").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # leftovers of a crash after the second rename (aside copy) or while writing (new-*) are removed
    (tmp_path / "model.old").mkdir()
    run_folder.new_folder(dest)
    assert run_folder.recover_swaps(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (dest / "weights").read_text() == "new"


def test_tensorboard_events_belong_to_the_run_that_claimed_the_folder(tmp_path, tiny_corpus, tiny_llama):
    """Stage 2 logs to ``<run>/tb`` through accelerate's TensorBoard tracker (tensorboard is
    pinned in requirements.txt). The writer opens only after the run folder is claimed: its
    event file appears at once, and a claim counts ``tb`` as a run's artifact. Opened first
    (as before), a fresh run was refused for the tb/ its own writer had made, and --overwrite
    removed the new run's live event file (found on a GPU machine: the run died at its first
    log line)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from slt_llm.cli import main

    corpus = make_corpus(tiny_corpus, tmp_path / "corpus")
    run = tmp_path / "run"
    cfg = make_run(corpus, tiny_llama, run, tmp_path / "cache", max_steps=2, eval_every=0, save_every=0)

    def events() -> list:
        return sorted((run / "tb").rglob("events.out.tfevents.*"))

    assert main(["train", "--config", str(cfg)]) == 0
    first = events()
    assert len(first) == 1
    assert main(["train", "--overwrite", "--config", str(cfg)]) == 0
    second = events()
    assert len(second) == 1 and second != first  # the previous run's events went, this run's stayed
    acc = EventAccumulator(str(second[0].parent))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2]
