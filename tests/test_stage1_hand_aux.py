"""Stage 1 with BeyondGloss's hand auxiliaries on the tiny synthetic corpus: descriptions +
hand-teacher distillation with pair selection (losses logged separately, bad sidecars skipped and
counted), and a 2-process DeepSpeed ZeRO-2 run that matches one process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest


sys.path.insert(0, str(Path(__file__).parent))
from test_stage1 import _cfg, launch_two_vlp  # noqa: E402


@pytest.fixture(scope="module")
def aux_inputs(tiny_corpus, tmp_path_factory):
    """descriptions.jsonl of the training split + a sidecar folder (one training sample's
    sidecar holds NaN: it must be skipped and counted)."""
    from slt_llm.data.describe import describe_samples, write_descriptions
    from slt_llm.data.hand_teacher import keypoint_teacher, sidecar_path, write_sidecar
    from slt_llm.data.manifest import read_manifest
    from slt_llm.data.pose import read_pose

    root = tmp_path_factory.mktemp("hand_aux")
    samples = list(read_manifest(tiny_corpus / "train.jsonl"))
    rows, errors = describe_samples(samples)
    assert not errors
    write_descriptions(root / "descriptions.jsonl", rows)
    hands = root / "hands"
    for s in samples:
        t = keypoint_teacher(read_pose(s.pose), s.pose)
        write_sidecar(sidecar_path(s.video, hands), t.left, t.right, t.left_mask, t.right_mask, t.fps)
    bad = sidecar_path(samples[-1].video, hands)
    np.savez(bad, left=np.full((5, 63), np.nan, np.float32), right=np.zeros((5, 63), np.float16),
             left_mask=np.ones(5, bool), right_mask=np.ones(5, bool), fps=np.float64(12.0))
    return {"descriptions": root / "descriptions.jsonl", "hands": hands, "bad_id": samples[-1].id}


def _aux(inputs) -> list:
    return [f"data.descriptions={inputs['descriptions']}", "data.hand_teacher=true",
            f"data.hands_dir={inputs['hands']}"]


def _rows(run):
    return [r for r in map(json.loads, (Path(run) / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_pair_selection_with_both_auxiliaries_logs_and_learns(tiny_corpus, tiny_llama, aux_inputs, tmp_path):
    from slt_llm.models.vlp import VLPModel
    from slt_llm.training.stage1 import train_vlp

    run = tmp_path / "ps_aux"
    res = train_vlp(_cfg(tiny_corpus, tiny_llama, run, "selection.selection=ps", "selection.protocol=continuation", "train.epochs=4",
                         "data.dev_manifest=null", *_aux(aux_inputs)))
    assert res["skipped"] == 1  # the NaN sidecar
    rows = _rows(run)
    assert [r["step"] for r in rows] == list(range(1, 13))  # 23 readable samples: 3 global batches x 4 epochs
    assert {r["phase"] for r in rows} == {"reference", "ps"}
    for r in rows:
        assert r["loss_desc"] > 0 and r["loss_hand"] > 0
        # the logged total is the alignment loss + 0.5 L_desc + 0.3 L_hand
        assert r["loss"] == pytest.approx(r["loss_align"] + 0.5 * r["loss_desc"] + 0.3 * r["loss_hand"], rel=1e-4)
    assert np.mean([r["loss_hand"] for r in rows[-3:]]) < np.mean([r["loss_hand"] for r in rows[:3]])
    m = VLPModel.from_pretrained(run / "model")
    assert m.desc_head is not None and m.encoder.cfg.hand_head_dim == 63  # D taken from the sidecars


@pytest.mark.slow
def test_two_process_zero2_with_auxiliaries_matches_one_process(tiny_corpus, tiny_llama, aux_inputs, tmp_path):
    """2 gloo processes x batch 4 under accelerate + DeepSpeed ZeRO-2 == 1 process x batch 8, for the
    total loss and each auxiliary term (the hand loss is normalised by the global hand-frame count)."""
    from slt_llm.training.stage1 import train_vlp

    common = ["selection.selection=random_fn", "train.epochs=2", "train.max_steps=3", "data.dev_manifest=null",
              "optim.max_grad_norm=0", "optim.warmup_steps=0", "optim.schedule=constant", *_aux(aux_inputs)]
    single = tmp_path / "one"
    train_vlp(_cfg(tiny_corpus, tiny_llama, single, *common, "train.deepspeed=ds_configs/zero2.json"))
    launch_two_vlp(_cfg(tiny_corpus, tiny_llama, tmp_path / "two", *common, "train.batch_size=4"), tmp_path / "two.yaml")
    one, two = _rows(single), _rows(tmp_path / "two")
    assert [x["step"] for x in two] == [1, 2, 3]
    for a, b in zip(one, two):
        for key in ("loss", "loss_align", "loss_desc", "loss_hand"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), key
    assert one[-1]["loss"] != one[0]["loss"]
