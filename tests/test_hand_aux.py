"""Stage-1 hand auxiliaries: weights, description pairing by id, the combined auxiliary loss."""

from __future__ import annotations

import json

import pytest
import torch

from slt_llm.config import DataConfig, VLPConfig
from slt_llm.contrastive.hand_aux import DescriptionTargets, resolve_weights
from slt_llm.contrastive.objective import Stage1Objective
from slt_llm.models.vlp import VLPOutput
from slt_llm.contrastive.loss import SelectiveInfoNCE
from slt_llm.errors import ConfigError, InputError


def test_weights_default_to_beyondgloss_values_only_when_the_inputs_are_given():
    assert resolve_weights(DataConfig(), VLPConfig()) == (0.0, 0.0)
    assert resolve_weights(DataConfig(descriptions="d.jsonl"), VLPConfig()) == (0.5, 0.0)
    assert resolve_weights(DataConfig(hand_teacher=True), VLPConfig()) == (0.0, 0.3)
    assert resolve_weights(DataConfig(descriptions="d", hand_teacher=True), VLPConfig(desc_weight=0.0)) == (0.0, 0.3)
    with pytest.raises(ConfigError, match="needs data.descriptions"):
        resolve_weights(DataConfig(), VLPConfig(desc_weight=0.5))
    with pytest.raises(ConfigError, match="needs data.hand_teacher"):
        resolve_weights(DataConfig(), VLPConfig(hand_weight=0.1))


def test_descriptions_pair_by_id_and_identical_ones_are_false_negatives(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"id": "c", "description": "moves up"}, {"id": "a", "description": "moves down"},
            {"id": "b", "description": "moves up"}, {"id": "z", "description": "unused"}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t = DescriptionTargets(p, ["a", "b", "c"])  # dataset order differs from the file's
    assert [t.texts[i] for i in t.index.tolist()] == ["moves down", "moves up", "moves up"]
    fn = t.false_negatives.mask(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]))
    assert fn.tolist() == [[False, False, False], [False, False, True], [False, True, False]]
    t.set_embeddings(torch.eye(len(t.texts)))
    rows = t.index[[2, 0]]
    assert torch.equal(t.embeddings_for(torch.tensor([2, 0])), torch.eye(2)[rows])
    with pytest.raises(InputError) as e:
        DescriptionTargets(p, ["a", "train_00042"])
    assert str(p) in str(e.value) and "'train_00042'" in str(e.value)


class _Desc:
    """Stand-in DescriptionTargets: no false negatives."""
    false_negatives = None

    def embeddings_for(self, index):
        raise AssertionError("not used here")


def test_objective_adds_the_weighted_auxiliary_terms():
    from slt_llm.models.encoder import hand_distillation_loss

    torch.manual_seed(0)
    b, T, D, E = 4, 5, 3, 8
    video = torch.nn.functional.normalize(torch.randn(b, E), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(b, E), dim=-1)
    desc = torch.nn.functional.normalize(torch.randn(b, E), dim=-1)
    scale = torch.tensor(10.0)
    pred, target = torch.randn(b, T, 2, D), torch.randn(b, T, 2, D)
    mask = torch.rand(b, T, 2) > 0.5
    frame_mask = torch.ones(b, T, dtype=torch.bool)
    frame_mask[0, 3:] = False
    batch = {"index": torch.arange(b), "hand_teacher": target, "hand_teacher_mask": mask, "frame_mask": frame_mask}
    out = VLPOutput(video=video, text=text, scale=scale, video_pooled=video, desc=desc, hand_pred=pred)
    loss_fn = SelectiveInfoNCE()
    obj = Stage1Objective(desc_weight=0.5, hand_weight=0.3, desc_targets=_Desc())
    total, parts = obj(out, batch)
    want_align = loss_fn(video, text, scale)
    want_desc = loss_fn(video, desc, scale)
    want_hand = hand_distillation_loss(pred, target, mask & frame_mask[..., None])
    assert float(parts["loss_desc"]) == pytest.approx(float(want_desc))
    assert float(parts["loss_hand"]) == pytest.approx(float(want_hand))
    assert float(total) == pytest.approx(float(want_align) + 0.5 * float(want_desc) + 0.3 * float(want_hand))
    # padded frames never count, even if a (bad) mask says so
    assert float(want_hand) != pytest.approx(float(hand_distillation_loss(pred, target, mask)))
    total, parts = Stage1Objective()(out, batch)
    assert set(parts) == {"loss_align"} and float(total) == pytest.approx(float(want_align))
    bad = VLPOutput(video=video, text=text, scale=scale, hand_pred=pred[..., :2])
    with pytest.raises(ConfigError, match="hand_head_dim"):
        Stage1Objective(hand_weight=0.3)(bad, batch)
    with pytest.raises(ConfigError, match="hand head"):
        Stage1Objective(hand_weight=0.3)(VLPOutput(video=video, text=text, scale=scale), batch)
    with pytest.raises(ConfigError, match=">= 0"):
        Stage1Objective(translation_weight=-1.0)
