"""The stage-1 objective: one object built once from the config, a sum of independent terms.

::

    loss = L_align                                   contrastive, video <-> sentence (always)
         + translation_weight * L_translation        joint translation (SCL-SLT's joint setting)
         + desc_weight        * L_desc               hand-motion descriptions <-> video (BeyondGloss)
         + hand_weight        * L_hand               hand-feature distillation (BeyondGloss)

- ``L_align``: :class:`~slt_llm.contrastive.loss.SelectiveInfoNCE` over the global batch with the
  step's false-negative mask, on pooled embeddings (``vlp.similarity=pooled``) or on token
  features with the CiCo-style fine similarity (``fine``).
- ``L_translation``: the target-token cross-entropy of the translation head
  (``TranslatingVLPModel``, the same encoder pass), a mean over the target tokens of the whole
  global batch: this rank's summed loss x world / global token count (one all-reduce of the
  count), so that the ranks' average (what DDP/DeepSpeed average gradients to) is the global
  token mean, as one process computes it.
- ``L_desc``: InfoNCE between the pooled video and the sample's description embedding, identical
  descriptions masked as false negatives (whatever the alignment similarity is).
- ``L_hand``: masked L2 of the per-frame hand head against the teacher features, normalised by
  the global hand-frame count.

Every combination of the four is valid (``pooled``/``fine`` x translation on/off x descriptions
on/off x hand on/off); a weight is 0 when its term is off. The training step calls
:meth:`Stage1Objective.model_kwargs` to know what the model must return, runs the model once,
then calls the objective: ``loss, parts = objective(out, batch, false_negatives)``. ``parts``
holds each active term's local value (detached) under ``loss_align``, ``loss_translation``,
``loss_desc``, ``loss_hand``.
"""

from __future__ import annotations

from typing import Optional

import torch

from slt_llm import distributed as dist_utils
from slt_llm.errors import ConfigError
from slt_llm.models.encoder import hand_distillation_loss

TERMS = ("align", "translation", "desc", "hand")


class Stage1Objective:
    """``similarity`` ("pooled" | "fine"), the three weights (>= 0), ``desc_targets`` (a
    :class:`~slt_llm.contrastive.hand_aux.DescriptionTargets` when ``desc_weight > 0``), and the
    process group's ``rank``/``world_size`` (the contrastive terms gather over it)."""

    def __init__(self, *, similarity: str = "pooled", translation_weight: float = 0.0, desc_weight: float = 0.0,
                 hand_weight: float = 0.0, desc_targets=None, rank: int = 0, world_size: int = 1):
        from slt_llm.contrastive.loss import SelectiveInfoNCE

        if similarity not in ("pooled", "fine"):
            raise ConfigError(f"vlp.similarity must be one of pooled, fine (got {similarity!r})")
        for name, w in (("vlp.translation_weight", translation_weight), ("vlp.desc_weight", desc_weight),
                        ("vlp.hand_weight", hand_weight)):
            if w < 0:
                raise ConfigError(f"{name} must be >= 0 (got {w})")
        if desc_weight > 0 and desc_targets is None:
            raise ConfigError("vlp.desc_weight > 0 needs the training samples' descriptions (data.descriptions)")
        self.similarity = similarity
        self.weights = {"align": 1.0, "translation": float(translation_weight), "desc": float(desc_weight),
                        "hand": float(hand_weight)}
        self.desc_targets = desc_targets
        self.world_size = world_size
        self.loss_fn = SelectiveInfoNCE(rank=rank, world_size=world_size)

    @classmethod
    def from_config(cls, vlp_cfg, *, desc_weight: float, hand_weight: float, desc_targets=None, rank: int = 0,
                    world_size: int = 1) -> "Stage1Objective":
        """From a ``VLPConfig`` and the resolved auxiliary weights (``hand_aux.resolve_weights``)."""
        return cls(similarity=vlp_cfg.similarity, translation_weight=vlp_cfg.translation_weight,
                   desc_weight=desc_weight, hand_weight=hand_weight, desc_targets=desc_targets, rank=rank,
                   world_size=world_size)

    @property
    def active(self) -> list[str]:
        """The terms with a weight > 0, in :data:`TERMS` order (``align`` always)."""
        return [t for t in TERMS if self.weights[t] > 0]

    def describe(self) -> str:
        """One line: the loss as it is computed, e.g. ``align(fine) + 1.0 translation + 0.5 desc``."""
        out = [f"align({self.similarity})"]
        out += [f"{self.weights[t]:g} {t}" for t in self.active if t != "align"]
        return " + ".join(out)

    def model_kwargs(self, batch: dict, *, text: torch.Tensor, text_mask: Optional[torch.Tensor] = None) -> dict:
        """The keyword arguments of ``VLPModel.forward`` for this step: the text features (pooled
        (b, H), or token states (b, L, H) + mask (b, L)), the descriptions' embeddings when that
        term is on, and whether the hand prediction is needed."""
        kw = {"text_emb": text, "text_mask": text_mask, "hand": self.weights["hand"] > 0}
        if self.weights["desc"] > 0:
            kw["desc_emb"] = self.desc_targets.embeddings_for(batch["index"]).to(text.device)  # (b, H)
        return kw

    def __call__(self, out, batch: dict, false_negatives=None) -> tuple[torch.Tensor, dict]:
        """(weighted sum, {"loss_<term>": local detached value}) for one step; ``out`` is the
        model's ``VLPOutput``."""
        w = self.weights
        parts: dict[str, torch.Tensor] = {}
        parts["align"] = self.loss_fn(out.video, out.text, out.scale, index=batch["index"],
                                      false_negatives=false_negatives, video_mask=out.video_mask,
                                      text_mask=out.text_mask)  # fp32 logits
        if w["translation"] > 0:
            if out.translation is None:
                raise ConfigError("vlp.translation_weight > 0, but the model has no translation head")
            n = dist_utils.all_reduce_sum(out.translation["num_tokens"].detach().double().reshape(1))
            parts["translation"] = out.translation["loss_sum"] * (self.world_size / n.clamp(min=1).item())
        if w["desc"] > 0:
            if out.desc is None or out.video_pooled is None:
                raise ConfigError("description loss on, but the model returned no description embedding")
            parts["desc"] = self.loss_fn(out.video_pooled, out.desc, out.scale, index=batch["index"],
                                         false_negatives=self.desc_targets.false_negatives)
        if w["hand"] > 0:
            pred = out.hand_pred
            if pred is None:
                raise ConfigError("hand distillation on, but the encoder has no hand head (encoder.hand_head_dim)")
            target, mask = batch["hand_teacher"], batch["hand_teacher_mask"]
            if target.shape != pred.shape:
                raise ConfigError(f"teacher features {tuple(target.shape)} do not match the hand head's "
                                  f"output {tuple(pred.shape)} (encoder.hand_head_dim vs the sidecars' D)")
            parts["hand"] = hand_distillation_loss(pred, target, mask & batch["frame_mask"][..., None],
                                                   world_size=self.world_size)
        total = parts["align"]
        for t in self.active[1:]:
            total = total + w[t] * parts[t]
        return total, {f"loss_{t}": v.detach() for t, v in parts.items()}
