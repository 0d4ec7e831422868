"""Stage-1 hand auxiliaries (BeyondGloss): description contrastive loss + hand-feature distillation.

Their terms in the stage-1 objective (``slt_llm.contrastive.objective.Stage1Objective``,
which computes them; per rank, see ``SelectiveInfoNCE`` for the global batch)::

    L = L_align + ... + desc_weight * L_desc(v, d) + hand_weight * L_hand(pred, teacher)

- ``L_desc``: the same symmetric global-batch InfoNCE as the alignment loss, between
  the video embedding v and the sample's hand-motion description d (its frozen-LLM
  embedding, computed once and cached like the sentences, through the model's
  description head). Pairs are by sample id (``data.descriptions``, read with
  ``slt_llm.data.describe.read_descriptions``; a training id without a description
  is an ``InputError`` naming the file and the id). Samples with identical
  descriptions are false negatives of each other (masked, never pushed apart).
  The batch (random or pair-selected) is the one the alignment loss uses.
- ``L_hand``: ``slt_llm.models.encoder.hand_distillation_loss`` between the
  encoder's per-frame hand prediction and the sidecar teacher features, masked
  to the frames that have that hand, normalised by the global count.

Weights (``resolve_weights``): ``vlp.desc_weight`` / ``vlp.hand_weight``, or when
unset 0.5 with ``data.descriptions`` and 0.3 with ``data.hand_teacher`` (the
BeyondGloss values), else 0. Cost: one (b, B) logit pair more than the alignment
loss for L_desc, O(B*T*D) for L_hand; the description embeddings are one LLM
pass per unique description, cached.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from slt_llm.errors import ConfigError

__all__ = ["DEFAULT_DESC_WEIGHT", "DEFAULT_HAND_WEIGHT", "resolve_weights", "DescriptionTargets"]

DEFAULT_DESC_WEIGHT = 0.5
DEFAULT_HAND_WEIGHT = 0.3


def resolve_weights(data_cfg, vlp_cfg) -> tuple[float, float]:
    """(desc_weight, hand_weight) for a stage-1 config (see the module docstring).
    ConfigError for a negative weight or a weight > 0 without its input."""
    dw = vlp_cfg.desc_weight if vlp_cfg.desc_weight is not None else (
        DEFAULT_DESC_WEIGHT if data_cfg.descriptions else 0.0)
    hw = vlp_cfg.hand_weight if vlp_cfg.hand_weight is not None else (
        DEFAULT_HAND_WEIGHT if data_cfg.hand_teacher else 0.0)
    if dw < 0 or hw < 0:
        raise ConfigError(f"vlp.desc_weight and vlp.hand_weight must be >= 0 (got {dw}, {hw})")
    if dw > 0 and not data_cfg.descriptions:
        raise ConfigError(f"vlp.desc_weight={dw} needs data.descriptions (a JSONL from `slt-llm describe`)")
    if hw > 0 and not data_cfg.hand_teacher:
        raise ConfigError(f"vlp.hand_weight={hw} needs data.hand_teacher=true (sidecars from `slt-llm hand-teacher`)")
    return float(dw), float(hw)


class DescriptionTargets:
    """The training samples' descriptions, by dataset index.

    ``texts`` (U,) unique descriptions, ``index`` long (N,) sample -> row of ``texts``,
    ``false_negatives`` (identical descriptions). ``set_embeddings((U, H))`` once (the frozen
    LLM's), then ``embeddings_for(batch_index) -> (b, H)``.
    """

    def __init__(self, path, sample_ids: Sequence[str]):
        from slt_llm.contrastive.loss import FalseNegatives
        from slt_llm.contrastive.retrieval import unique_sentences
        from slt_llm.data.describe import read_descriptions

        descs = read_descriptions(path)
        per_sample = [descs[str(i)] for i in sample_ids]  # a missing id: InputError(path, id)
        self.path = str(path)
        self.texts, self.index = unique_sentences(per_sample)
        self.false_negatives = FalseNegatives(self.index.numpy())
        self.emb: Optional[torch.Tensor] = None

    def set_embeddings(self, emb: torch.Tensor) -> None:
        if emb.shape[0] != len(self.texts):
            raise ConfigError(f"{self.path}: {emb.shape[0]} embeddings for {len(self.texts)} descriptions")
        self.emb = emb

    def embeddings_for(self, batch_index: torch.Tensor) -> torch.Tensor:
        """(b,) dataset indices -> (b, H) cached LLM embeddings of their descriptions."""
        if self.emb is None:
            raise ConfigError("DescriptionTargets: set_embeddings first")
        return self.emb[self.index[batch_index.cpu()]]
