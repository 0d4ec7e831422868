"""A diverging run stops at once with one line and a non-zero exit, and exports nothing from the
diverged steps (issue 21: a NaN loss used to run on with exit 0 and export a NaN model)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from slt_llm.cli import main
from slt_llm.training.checkpoint import TrainerState
from slt_llm.training.divergence import TrainingDiverged, stop_if_not_finite

sys.path.insert(0, str(Path(__file__).parent))
from test_stage1 import _cfg  # noqa: E402
from test_stage2 import make_corpus, make_run  # noqa: E402


def test_the_message_names_the_step_the_terms_and_the_rates():
    stop_if_not_finite("stage 1", 3, {"loss": 1.0, "loss_align": 0.5}, {"encoder": 1e-3})  # finite: nothing
    with pytest.raises(TrainingDiverged) as e:
        stop_if_not_finite("stage 1", 7, {"loss": math.nan, "loss_align": 2.0, "loss_hand": math.inf},
                           {"encoder": 1e-3, "head": 2e-3})
    msg = str(e.value)
    assert "\n" not in msg and "step 7" in msg and "loss_hand=inf" in msg and "encoder=0.001" in msg


def test_a_nan_score_never_becomes_the_best():
    st = TrainerState()
    assert st.update_best([math.nan]) is False and st.best_key is None
    assert st.update_best([3.0]) is True
    assert st.update_best([math.nan, 1.0]) is False and st.best_metric == 3.0


def test_stage2_with_a_diverging_learning_rate_stops_with_one_line(tiny_corpus, tiny_llama, tmp_path, capsys):
    """A learning rate of 1e6: the loss turns non-finite within a few steps; exit 2, one line naming
    the step; no checkpoint or export from the diverged step; metrics stop before it."""
    import yaml

    corpus = make_corpus(tiny_corpus, tmp_path / "corpus")
    cfg = make_run(corpus, Path(tiny_llama), tmp_path / "run", tmp_path / "cache", max_steps=8, eval_every=0,
                   save_every=1)
    raw = yaml.safe_load(cfg.read_text())
    raw["optim"].update(lr_encoder=1e6, lr_projector=1e6, lr_lora=1e6, warmup_steps=0)
    cfg.write_text(yaml.safe_dump(raw))
    code = main(["train", "--config", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    line = [x for x in err if "not finite" in x]
    assert len(line) == 1 and line[0].startswith("slt-llm train: error: stage 2: the loss is not finite at step")
    step = int(line[0].split("at step ")[1].split(" ")[0])
    run = tmp_path / "run"
    saved = sorted(int(p.name.split("_")[1]) for p in (run / "checkpoints").glob("step_*"))
    assert saved and max(saved) < step  # nothing written from the diverged step
    assert not (run / "model").exists()  # no dev set, no final export: nothing NaN exported
    logged = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if "loss" in x]
    assert all(s < step for s in logged)


def test_stage1_nan_term_stops_naming_the_term(tiny_corpus, tiny_llama, tmp_path, monkeypatch):
    """A term that turns NaN at step 2 (here forced in the hand-free joint objective): stage 1
    stops at step 2 naming it; the run has no step-2 metrics line and no export."""
    from slt_llm.contrastive import objective as obj_mod
    from slt_llm.training.stage1 import train_vlp

    real_call = obj_mod.Stage1Objective.__call__
    calls = {"n": 0}

    def poisoned(self, out, batch, fn=None):
        calls["n"] += 1
        total, parts = real_call(self, out, batch, fn)
        if calls["n"] >= 2:
            total = total * math.nan
            parts["loss_translation"] = parts["loss_translation"] * math.nan
        return total, parts

    monkeypatch.setattr(obj_mod.Stage1Objective, "__call__", poisoned)
    run = tmp_path / "vlp"
    with pytest.raises(TrainingDiverged) as e:
        train_vlp(_cfg(tiny_corpus, tiny_llama, run, "selection.selection=random", "train.epochs=2",
                       "data.dev_manifest=null", "vlp.translation_weight=1.0", "llm.lora_targets=[q_proj,v_proj]"))
    msg = str(e.value)
    assert "step 2" in msg and "loss_translation=nan" in msg and "loss_align=" in msg
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1]
    assert not (run / "model").exists()
