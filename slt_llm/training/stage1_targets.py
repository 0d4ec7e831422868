"""What stage 1 aligns the videos to, made once before training: the part of
:class:`~slt_llm.training.stage1.Stage1Trainer` that owns its targets.

:class:`AlignmentTargets` is a mixin of the trainer. ``embed_texts``: the frozen LLM's
sentence embeddings of the training and dev sentences (``text_idx`` maps a training sample to
its unique sentence, ``text_llm`` / ``dev_text_llm`` pooled, and with ``vlp.similarity=fine``
``text_tok`` / ``dev_text_tok`` token states), cached on disk (``run_layout.text_cache_dir``).
``setup_hand_aux``: BeyondGloss's auxiliary targets (``contrastive.hand_aux``): the weights,
each training sample's hand-motion description embedded by the same LLM, and the hand head's
size from the hand-teacher sidecars. It reads the trainer's ``cfg``, ``accelerator``,
``device``, ``train_texts``, ``train_samples`` and ``dev_samples``.
"""

from __future__ import annotations

from slt_llm import run_layout as layout
from slt_llm.errors import ConfigError


def embed_texts_rank0_first(embedder_args: dict, texts: list[str], accelerator, tokens: bool = False):
    """Rank 0 fills the text cache, the others then read it (no concurrent writers).
    ``tokens``: per-token states (``TokenTextEmbedder``, its own cache) instead of pooled."""
    from slt_llm.models.text_embed import TextEmbedder, TokenTextEmbedder

    cls = TokenTextEmbedder if tokens else TextEmbedder
    if accelerator.is_main_process:
        emb = cls(**embedder_args)
        out = emb.embed(texts)
        emb.release()
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        emb = cls(**embedder_args)
        out = emb.embed(texts)
    return emb, out


class AlignmentTargets:
    """The text side and the auxiliary targets of a stage-1 run (module docstring)."""

    def embed_texts(self) -> None:
        """The text side: the frozen LLM's sentence embeddings of train + dev, once (cached)."""
        from slt_llm.contrastive.retrieval import unique_sentences

        cfg = self.cfg
        ekw = dict(llm_path=cfg.llm.path, pooling=cfg.vlp.pooling, dtype=cfg.llm.dtype, device=self.device,
                   cache_dir=layout.text_cache_dir(cfg), trust_remote_code=cfg.llm.trust_remote_code)
        train_uniq, self.text_idx = unique_sentences(self.train_texts)
        self.dev_uniq = list(dict.fromkeys(s.text for s in self.dev_samples))
        _, all_text = embed_texts_rank0_first(ekw, train_uniq + self.dev_uniq, self.accelerator)
        self.text_llm = all_text[:len(train_uniq)]  # (U_train, H)
        self.dev_text_llm = all_text[len(train_uniq):]  # (U_dev, H)
        self.text_dim = int(all_text.shape[1])
        self.text_tok = self.dev_text_tok = None
        if cfg.vlp.similarity == "fine":  # the frozen LLM's token states (their own cache)
            tkw = {k: v for k, v in ekw.items() if k != "pooling"}
            _, tok = embed_texts_rank0_first(tkw, train_uniq + self.dev_uniq, self.accelerator, tokens=True)
            self.text_tok = tok.select(range(len(train_uniq)))  # U_train sentences, (L_u, H) each
            self.dev_text_tok = tok.select(range(len(train_uniq), len(tok)))

    def setup_hand_aux(self) -> None:
        """The auxiliary loss weights (``hand_aux.resolve_weights``); with descriptions, each
        training sample's description (by id) embedded once by the frozen LLM (cached like the
        sentences); with the hand teacher, the hand head's size from the first training sidecar
        when ``encoder.hand_head_dim`` is 0 (docs/hand_descriptions.md)."""
        from slt_llm.contrastive.hand_aux import DescriptionTargets, resolve_weights

        cfg = self.cfg
        self.desc_weight, self.hand_weight = resolve_weights(cfg.data, cfg.vlp)
        self.desc_targets = None
        if self.desc_weight > 0:
            self.desc_targets = DescriptionTargets(cfg.data.descriptions, [s.id for s in self.train_samples])
            ekw = dict(llm_path=cfg.llm.path, pooling=cfg.vlp.pooling, dtype=cfg.llm.dtype,
                       cache_dir=layout.text_cache_dir(cfg), trust_remote_code=cfg.llm.trust_remote_code)
            _, emb = embed_texts_rank0_first(ekw, self.desc_targets.texts, self.accelerator)
            self.desc_targets.set_embeddings(emb)  # (U_desc, H)
        if self.hand_weight > 0:
            from slt_llm.data.hand_teacher import find_sidecar, read_sidecar

            dim = read_sidecar(find_sidecar(self.train_samples[0].video, cfg.data.hands_dir)).dim
            if cfg.encoder.hand_head_dim == 0:
                cfg.encoder.hand_head_dim = dim
            elif cfg.encoder.hand_head_dim != dim:
                raise ConfigError(f"encoder.hand_head_dim={cfg.encoder.hand_head_dim} but the hand-teacher "
                                  f"sidecars have D={dim} (set it to {dim}, or 0 to take it from the sidecars)")
