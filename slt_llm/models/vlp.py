"""The stage-1 model: hand-centric encoder + video/text heads + a learnable temperature.

::

    batch ─► HandCentricEncoder ─► tokens (B,T',dim), mask (B,T') ─► masked mean ─► (B,dim)
          ─► video head (LayerNorm, Linear, GELU, Linear) ─► (B,E) ─► L2-normalise ─► v
    cached frozen-LLM sentence embedding (B,H) ─► text head (same shape of MLP) ─► (B,E) ─► L2-normalise ─► t
    logit_scale = log(1/temperature), learnable, clamped to [0, log 100]; forward returns exp() of it
    [descriptions] cached frozen-LLM embedding of the sample's hand-motion description (B,H)
          ─► description head (same shape) ─► (B,E) ─► L2-normalise ─► d   (aligned to v, BeyondGloss)
    [hand head] the encoder's per-frame hand prediction (B,T,2,D) (see HandCentricEncoder)
    [vlp.similarity=fine] tokens (B,T',dim) ─► video head per token ─► (B,T',E) unit vectors + mask;
          frozen-LLM token states (B,L,H) + mask ─► text head per token ─► (B,L,E) unit vectors
          (compared by contrastive.loss.fine_grained_similarity; ``forward(..., text_mask=)``)

The LLM is never part of this module: its sentence embeddings come from
:class:`slt_llm.models.text_embed.TextEmbedder` (computed once, cached). Cost of
a forward pass: the encoder's, plus O(B*(dim*E + H*E)) for the heads.

A stage-1 model folder (``save_pretrained``):

- ``vlp_config.yaml``: ``encoder`` (EncoderConfig), ``vlp`` (VLPConfig; its ``similarity``
  says how retrieval scores the model: pooled cosine or the fine token similarity),
  ``text_dim``, ``llm: {path, pooling, dtype, identity}`` (the LLM whose text space the heads
  were trained against: retrieval needs it to embed sentences; ``identity`` is its
  ``llm.llm_identity``, which stage 2 checks its ``llm.path`` against: ``check_stage1_model``);
- ``encoder.safetensors``: the encoder's state dict (what stage 2 loads);
- ``heads.safetensors``: ``video_head.*``, ``text_head.*``, ``logit_scale`` (and
  ``desc_head.*`` when the model was trained with descriptions; ``desc_head: true``
  in the yaml);
- ``clip.yaml``: the ClipConfig used in training (``config.write_clip_settings``,
  the same file as in a stage-2 model folder);
- ``README.md``: the model card (``slt_llm.models.model_card``; its facts: vlp_config.yaml's
  ``training`` and ``dev`` entries, when the trainer gave them).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from slt_llm.config import EncoderConfig, VLPConfig, from_dict, read_clip_settings, to_dict, write_clip_settings
from slt_llm.data.dataset import batch_to_device
from slt_llm.errors import ConfigError, InputError
from slt_llm.run_layout import STAGE1_MODEL_CONFIG

MAX_LOGIT_SCALE = math.log(100.0)
SIMILARITIES = ("pooled", "fine")
BATCH_TENSOR_KEYS = ("full", "left", "right", "keypoints", "boxes", "times", "frame_mask", "lengths", "index")


def _head(in_dim: int, out_dim: int) -> nn.Sequential:
    """LayerNorm -> Linear(in, out) -> GELU -> Linear(out, out). The LayerNorm
    matters on the text side: LLM hidden states have large, uneven scales."""
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """tokens (B,T,D), mask (B,T) bool -> (B,D): mean over the real tokens (a row with no
    real token gives zeros, never NaN)."""
    w = mask.to(tokens.dtype).unsqueeze(-1)  # (B,T,1)
    return (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)


def pad_tokens(tokens: list, masks: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (n_i, T_i, E) token blocks and (n_i, T_i) masks along dim 0, zero-padding
    (mask False) every block to the longest T."""
    t = max(int(x.shape[1]) for x in tokens)
    out = torch.cat([F.pad(x, (0, 0, 0, t - x.shape[1])) for x in tokens])
    mask = torch.cat([F.pad(m, (0, t - m.shape[1]), value=False) for m in masks])
    return out, mask


@dataclass
class VLPOutput:
    """What one ``VLPModel.forward`` gives the stage-1 objective (shapes in ``forward``)."""

    video: torch.Tensor  # (B, E) pooled, or (B, T', E) token unit vectors (fine)
    text: torch.Tensor  # (B, E) or (B, L, E)
    scale: torch.Tensor  # () = exp(clamped logit_scale) = 1 / temperature
    video_mask: Optional[torch.Tensor] = None  # (B, T') bool (fine)
    text_mask: Optional[torch.Tensor] = None  # (B, L) bool (fine)
    video_pooled: Optional[torch.Tensor] = None  # (B, E): the pooled video (pooled similarity, or descriptions on)
    desc: Optional[torch.Tensor] = None  # (B, E) description unit vectors
    hand_pred: Optional[torch.Tensor] = None  # (B, T, 2, D) per-frame hand prediction
    # the translation head's {"loss_sum": summed target-token cross-entropy (), "num_tokens": (),
    # "loss": their ratio} on this rank (TranslatingVLPModel; the objective normalises over ranks)
    translation: Optional[dict] = None


class VLPModel(nn.Module):
    """Encoder + heads + temperature. ``text_dim`` is the frozen LLM's hidden size.

    ``llm_path``/``pooling``/``llm_dtype`` are recorded in the saved folder so a
    stage-1 model can embed new sentences the same way it was trained.
    """

    def __init__(self, encoder_cfg: EncoderConfig, vlp_cfg: VLPConfig, text_dim: int, *,
                 llm_path: Optional[str] = None, llm_dtype: str = "float32", desc_head: bool = False,
                 load_backbone: bool = True):
        super().__init__()
        from slt_llm.models.encoder import build_encoder

        if vlp_cfg.init_temperature <= 0:
            raise ConfigError(f"vlp.init_temperature must be > 0, got {vlp_cfg.init_temperature}")
        if vlp_cfg.similarity not in SIMILARITIES:
            raise ConfigError(f"vlp.similarity must be one of {', '.join(SIMILARITIES)} (got {vlp_cfg.similarity!r})")
        self.encoder_cfg = encoder_cfg
        self.vlp_cfg = vlp_cfg
        self.text_dim = int(text_dim)
        self.llm_path = llm_path
        self.llm_dtype = llm_dtype
        self.clip_cfg = None  # the ClipConfig used in training (recorded in saved folders when set)
        self.encoder = build_encoder(encoder_cfg, load_weights=load_backbone)  # + encoder.backbone_weights
        self.video_head = _head(encoder_cfg.dim, vlp_cfg.embed_dim)
        self.text_head = _head(self.text_dim, vlp_cfg.embed_dim)
        # hand-motion descriptions (same frozen-LLM space as the sentences, their own head)
        self.desc_head = _head(self.text_dim, vlp_cfg.embed_dim) if desc_head else None
        # shape (1,), not a 0-dim tensor: DeepSpeed's engine cannot broadcast 0-dim parameters
        self.logit_scale = nn.Parameter(torch.tensor([math.log(1.0 / vlp_cfg.init_temperature)]))

    # ----------------------------------------------------------------- forward
    def clamped_logit_scale(self) -> torch.Tensor:
        """logit_scale clamped to [0, log 100] (CLIP's cap), differentiable inside the range."""
        return self.logit_scale.clamp(0.0, MAX_LOGIT_SCALE).squeeze(0)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.clamped_logit_scale()).item())

    def encode_video(self, batch: dict) -> torch.Tensor:
        """Collated clip batch -> (B, E) unit vectors."""
        tokens, mask = self.encoder(batch)  # (B,T',dim), (B,T')
        return F.normalize(self.video_head(masked_mean(tokens, mask)), dim=-1)

    @property
    def fine(self) -> bool:
        """True when trained with the fine-grained (token-level) similarity (``vlp.similarity``)."""
        return getattr(self.vlp_cfg, "similarity", "pooled") == "fine"

    def encode_video_tokens(self, batch: dict):
        """Collated clip batch -> ``(tokens (B, T', E) unit vectors per temporal token, mask
        (B, T') bool)``: the encoder's tokens through the video head one by one."""
        tokens, mask = self.encoder(batch)  # (B,T',dim), (B,T')
        return F.normalize(self.video_head(tokens), dim=-1), mask

    def encode_text_tokens(self, tokens: torch.Tensor, mask: torch.Tensor):
        """(B, L, H) frozen-LLM token states + (B, L) mask -> ((B, L, E) unit vectors, mask)."""
        return F.normalize(self.text_head(tokens.to(self.logit_scale.dtype)), dim=-1), mask

    def encode_text(self, text_emb: torch.Tensor) -> torch.Tensor:
        """(B, H) frozen-LLM sentence embeddings -> (B, E) unit vectors."""
        return F.normalize(self.text_head(text_emb.to(self.logit_scale.dtype)), dim=-1)

    def encode_description(self, desc_emb: torch.Tensor) -> torch.Tensor:
        """(B, H) frozen-LLM description embeddings -> (B, E) unit vectors (needs ``desc_head``)."""
        if self.desc_head is None:
            raise ConfigError("this stage-1 model has no description head (built without descriptions)")
        return F.normalize(self.desc_head(desc_emb.to(self.logit_scale.dtype)), dim=-1)

    def forward(self, batch: dict, text_emb: torch.Tensor, *, text_mask: Optional[torch.Tensor] = None,
                desc_emb: Optional[torch.Tensor] = None, hand: bool = False) -> "VLPOutput":
        """One encoder pass -> everything the stage-1 objective's terms read (:class:`VLPOutput`).

        Pooled similarity: ``text_emb`` (B, H) sentence embeddings; video/text (B, E) unit vectors.
        Fine (``vlp.similarity=fine``): ``text_emb`` (B, L, H) token states and ``text_mask`` (B, L);
        video (B, T', E) per-token unit vectors with ``video_mask`` (B, T'), text (B, L, E).
        ``desc_emb`` (B, H): description embeddings -> ``desc`` (B, E) and ``video_pooled`` (B, E).
        ``hand``: also the per-frame hand prediction (B, T, 2, D) (needs ``encoder.hand_head_dim``)."""
        if self.fine and text_mask is None:
            raise ConfigError("vlp.similarity=fine: the model needs the text token states and their mask")
        tokens, mask, hand_pred = self.encoder(batch, return_hand=True)  # (B,T',dim), (B,T'), (B,T,2,D)|None
        pooled = None
        if not self.fine or desc_emb is not None:
            pooled = F.normalize(self.video_head(masked_mean(tokens, mask)), dim=-1)  # (B, E)
        if self.fine:
            video, video_mask = F.normalize(self.video_head(tokens), dim=-1), mask  # (B, T', E)
            text, text_mask = self.encode_text_tokens(text_emb, text_mask)  # (B, L, E)
        else:
            video, video_mask, text = pooled, None, self.encode_text(text_emb)
        return VLPOutput(video=video, text=text, scale=self.clamped_logit_scale().exp(), video_mask=video_mask,
                         text_mask=text_mask, video_pooled=pooled,
                         desc=self.encode_description(desc_emb) if desc_emb is not None else None,
                         hand_pred=hand_pred if hand else None,
                         translation=self.translate_loss(batch, (tokens, mask)))

    def translate_loss(self, batch: dict, encoded: tuple) -> Optional[dict]:
        """None here; :class:`TranslatingVLPModel` returns its translation head's loss parts."""
        return None

    # --------------------------------------------------------------- embedding
    @torch.no_grad()
    def embed_videos(self, loader: Iterable[dict], device: Optional[torch.device | str] = None):
        """Embed every clip a loader yields (eval mode, no grad).

        Returns ``(emb (N,E) float32 CPU, index (N,) long)`` where ``index`` is the
        dataset position of each row (``batch["index"]``), in loader order; skipped
        samples are simply absent. Cost: one encoder pass per clip.
        """
        out = self._embed_loader(loader, device, lambda b: (self.encode_video(b).float().cpu(),))
        if out is None:
            return torch.zeros(0, self.vlp_cfg.embed_dim), torch.zeros(0, dtype=torch.long)
        (embs,), idx = out
        return torch.cat(embs), idx

    def _embed_loader(self, loader: Iterable[dict], device, encode):
        """Run ``encode(batch on device) -> tuple of CPU tensors`` over every non-empty batch of
        ``loader`` in eval mode (training mode restored): ``(per-output lists, index (N,))``,
        or None when no batch had a sample."""
        device = device or next(self.parameters()).device
        was_training = self.training
        self.eval()
        outs, idx = [], []
        try:
            for batch in loader:
                if batch is None or int(batch["index"].numel()) == 0:
                    continue
                outs.append(encode(batch_to_device(batch, device)))
                idx.append(batch["index"].long().cpu())
        finally:
            self.train(was_training)
        if not outs:
            return None
        return [list(x) for x in zip(*outs)], torch.cat(idx)

    @torch.no_grad()
    def embed_video_tokens(self, loader: Iterable[dict], device: Optional[torch.device | str] = None,
                           dtype: torch.dtype = torch.float16):
        """Like :meth:`embed_videos` with the per-token video embeddings: ``(tokens (N, T, E),
        mask (N, T) bool, index (N,) long)``, zero-padded to the longest clip's T (``dtype``,
        float16 by default: N x T x E x 2 bytes)."""
        def encode(b):
            v, m = self.encode_video_tokens(b)
            return v.to(dtype).cpu(), m.bool().cpu()

        out = self._embed_loader(loader, device, encode)
        if out is None:
            e = self.vlp_cfg.embed_dim
            return torch.zeros(0, 0, e, dtype=dtype), torch.zeros(0, 0, dtype=torch.bool), torch.zeros(0, dtype=torch.long)
        (toks, masks), idx = out
        return (*pad_tokens(toks, masks), idx)

    @torch.no_grad()
    def embed_text_tokens(self, states, batch_size: int = 256, dtype: torch.dtype = torch.float16):
        """``TokenStates`` of U sentences -> ``(tokens (U, L, E) unit vectors, mask (U, L))``
        (``dtype`` on CPU; eval mode, no grad)."""
        device = self.logit_scale.device
        was_training = self.training
        self.eval()
        toks, masks = [], []
        try:
            for s in range(0, len(states), batch_size):
                x, m = states.padded(torch.arange(s, min(s + batch_size, len(states))))
                t, _ = self.encode_text_tokens(x.to(device), m)
                toks.append(t.to(dtype).cpu())
                masks.append(m)
        finally:
            self.train(was_training)
        if not toks:
            return torch.zeros(0, 0, self.vlp_cfg.embed_dim, dtype=dtype), torch.zeros(0, 0, dtype=torch.bool)
        return pad_tokens(toks, masks)

    @torch.no_grad()
    def embed_texts(self, text_embs: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """(U, H) cached LLM embeddings -> (U, E) float32 CPU unit vectors (eval mode, no grad)."""
        device = self.logit_scale.device
        was_training = self.training
        self.eval()
        try:
            out = [self.encode_text(text_embs[s:s + batch_size].to(device)).float().cpu()
                   for s in range(0, text_embs.shape[0], batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.vlp_cfg.embed_dim)

    # ---------------------------------------------------------------- save/load
    def heads_state_dict(self) -> dict:
        sd = {f"video_head.{k}": v for k, v in self.video_head.state_dict().items()}
        sd.update({f"text_head.{k}": v for k, v in self.text_head.state_dict().items()})
        if self.desc_head is not None:
            sd.update({f"desc_head.{k}": v for k, v in self.desc_head.state_dict().items()})
        sd["logit_scale"] = self.logit_scale.detach().reshape(1)
        return sd

    def save_pretrained(self, out_dir: str | os.PathLike, *, pooling: Optional[str] = None,
                        clip_cfg=None, card: Optional[dict] = None, final=None) -> Path:
        """Write the stage-1 model folder (see module docstring); returns its path.
        ``clip_cfg`` (a ClipConfig, default ``self.clip_cfg``) is recorded in ``clip.yaml`` so
        retrieval decodes clips the way training did. ``card``: what the trainer records for the
        model card (``model_card.training_facts``: ``training``, ``dev``), kept in vlp_config.yaml;
        ``final``: the path the folder is renamed to afterwards (the card names it).
        Files are written to temp names and renamed, so a reader never sees half a folder."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cfg = {
            "encoder": to_dict(self.encoder_cfg),
            "vlp": to_dict(self.vlp_cfg),
            "text_dim": self.text_dim,
            "llm": {"path": self.llm_path, "pooling": pooling or self.vlp_cfg.pooling, "dtype": self.llm_dtype,
                    **_identity_record(self.llm_path, out)},
            "desc_head": self.desc_head is not None,
            **{k: v for k, v in (card or {}).items() if k in ("training", "dev")},
        }
        enc = {k: v.detach().cpu().contiguous() for k, v in self.encoder.state_dict().items()}
        heads = {k: v.detach().cpu().contiguous() for k, v in self.heads_state_dict().items()}
        for name, sd in (("encoder.safetensors", enc), ("heads.safetensors", heads)):
            save_file(sd, str(out / (name + ".tmp")))
            os.replace(out / (name + ".tmp"), out / name)
        write_clip_settings(out, clip_cfg if clip_cfg is not None else self.clip_cfg)
        (out / (STAGE1_MODEL_CONFIG + ".tmp")).write_text(yaml.safe_dump(cfg, sort_keys=False))
        os.replace(out / (STAGE1_MODEL_CONFIG + ".tmp"), out / STAGE1_MODEL_CONFIG)
        from slt_llm.models.model_card import write_model_card

        write_model_card(out, final=final)  # README.md; file modes follow the umask (safetensors writes 0600)
        return out

    @classmethod
    def read_config(cls, model_dir: str | os.PathLike) -> dict:
        p = Path(model_dir) / STAGE1_MODEL_CONFIG
        if not p.is_file():
            raise InputError(model_dir, "not a stage-1 model folder (no vlp_config.yaml); "
                                        "expected the output of `slt-llm vlp` (RUN_DIR/model)")
        try:
            cfg = yaml.safe_load(p.read_text())
            return {"encoder": from_dict(EncoderConfig, cfg["encoder"], "encoder"),
                    "vlp": from_dict(VLPConfig, cfg["vlp"], "vlp"),
                    "text_dim": int(cfg["text_dim"]), "llm": dict(cfg.get("llm") or {}),
                    "desc_head": bool(cfg.get("desc_head", False))}
        except (yaml.YAMLError, KeyError, TypeError, ValueError, ConfigError) as e:
            raise InputError(p, f"unreadable stage-1 model config ({str(e).splitlines()[0]})") from None

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> "VLPModel":
        """Rebuild a model saved by :meth:`save_pretrained` (safetensors only, nothing unpickled)."""
        from safetensors.torch import load_file

        cfg = cls.read_config(model_dir)
        model = cls(cfg["encoder"], cfg["vlp"], cfg["text_dim"], llm_path=cfg["llm"].get("path"),
                    llm_dtype=cfg["llm"].get("dtype", "float32"), desc_head=cfg["desc_head"], load_backbone=False)
        model.clip_cfg = read_clip_settings(model_dir)
        d = Path(model_dir)
        for name in ("encoder.safetensors", "heads.safetensors"):
            if not (d / name).is_file():
                raise InputError(d / name, "missing from the stage-1 model folder")
        try:
            model.encoder.load_state_dict(load_file(str(d / "encoder.safetensors")))
            heads = load_file(str(d / "heads.safetensors"))
            model.video_head.load_state_dict({k[len("video_head."):]: v for k, v in heads.items()
                                              if k.startswith("video_head.")})
            model.text_head.load_state_dict({k[len("text_head."):]: v for k, v in heads.items()
                                             if k.startswith("text_head.")})
            if model.desc_head is not None:
                model.desc_head.load_state_dict({k[len("desc_head."):]: v for k, v in heads.items()
                                                 if k.startswith("desc_head.")})
            with torch.no_grad():
                model.logit_scale.copy_(heads["logit_scale"].reshape(1))
        except (RuntimeError, KeyError) as e:
            raise InputError(d, f"weights do not match vlp_config.yaml ({str(e).splitlines()[0][:200]})") from None
        return model.to(device)


def _identity_record(llm_path, folder) -> dict:
    """``{"identity": {identity, config, embedding}}`` of the LLM the heads were aligned to
    (``llm.llm_identity``, memoised per process), for vlp_config.yaml; {} when it cannot be read."""
    from slt_llm.models.llm import llm_identity

    if not llm_path:
        return {}
    try:
        ident = llm_identity(llm_path)
    except ConfigError as e:  # the LLM was readable when training began: only a file changed under us gets here
        print(f"warning: {folder}: base-LLM identity not recorded ({e})", file=sys.stderr)
        return {}
    return {"identity": ident} if ident is not None else {}


def check_stage1_model(folder, llm_path, clip_cfg=None) -> None:
    """Stage 2's ``train.init_encoder``, checked before any work: a stage-1 model folder whose
    recorded base LLM (vlp_config.yaml ``llm.identity``) is not the LLM at ``llm_path`` is
    refused (ConfigError, one line naming both); a folder recording no identity (written before
    the record) passes with a warning when its recorded path differs. ``clip_cfg`` (stage 2's
    ``data.clip``) differing from the folder's clip.yaml is one warning line naming the
    settings. A folder that is no stage-1 model folder is a ConfigError too."""
    from slt_llm import distributed as dist_utils
    from slt_llm.models.llm import check_same_llm

    folder = Path(folder)
    if not (folder / STAGE1_MODEL_CONFIG).is_file():  # worded as SLTModel.load_encoder_from words it
        raise ConfigError(f"{folder}: not a stage-1 model folder (missing {STAGE1_MODEL_CONFIG})")
    llm = VLPModel.read_config(folder)["llm"]
    rec, main = llm.get("identity"), dist_utils.is_main()
    if isinstance(rec, dict) and rec.get("identity"):
        check_same_llm({"path": llm.get("path"), **rec}, llm_path, folder=folder,
                       hint=f"set llm.path to the LLM stage 1 was trained against, or train stage 1 against {llm_path}")
    elif main and llm.get("path") and str(llm["path"]) != str(llm_path) and \
            not (Path(str(llm["path"])).is_dir() and Path(str(llm_path)).is_dir()
                 and Path(str(llm["path"])).resolve() == Path(str(llm_path)).resolve()):
        print(f"warning: {folder}: records no base-LLM identity; trained against {llm['path']}, "
              f"this run's LLM is {llm_path}", file=sys.stderr)
    theirs = read_clip_settings(folder)
    if clip_cfg is not None and theirs is not None and main:
        a, b = to_dict(theirs), to_dict(clip_cfg)
        diff = [f"{k}={a.get(k)!r} vs {b.get(k)!r}" for k in a if a.get(k) != b.get(k)]
        if diff:
            print(f"warning: {folder}: stage 1 sampled clips otherwise than this run's data.clip "
                  f"({', '.join(diff)}: stage 1 vs this run)", file=sys.stderr)


class TranslatingVLPModel(VLPModel):
    """A ``VLPModel`` with a translation head sharing its encoder (stage 1 with
    ``vlp.translation_weight > 0``): ``translation`` is an ``SLTModel`` (projector +
    the LLM of ``llm_cfg``, LoRA when ``llm_cfg.use_lora``) built on ``self.encoder``.

    ``forward`` adds ``translation``: the target-token cross-entropy of ``batch["texts"]``
    given the video (teacher forcing; summed, its token count, and their ratio), from the same
    encoder pass as the contrastive terms. Cost: one LLM forward/backward over prompt + video tokens + target.
    ``save_pretrained`` writes the stage-1 folder only (encoder + heads); the translation head
    is not kept.
    """

    def __init__(self, encoder_cfg: EncoderConfig, vlp_cfg: VLPConfig, text_dim: int, *, llm_cfg, projector_cfg,
                 llm_path: Optional[str] = None, llm_dtype: str = "float32", desc_head: bool = False):
        super().__init__(encoder_cfg, vlp_cfg, text_dim, llm_path=llm_path, llm_dtype=llm_dtype, desc_head=desc_head)
        from slt_llm.models.llm import load_llm
        from slt_llm.models.slt_model import SLTModel

        llm, tok = load_llm(llm_cfg, for_training=True)
        self.translation = SLTModel(encoder_cfg, projector_cfg, llm_cfg, llm, tok, encoder=self.encoder)

    def translate_loss(self, batch: dict, encoded: tuple) -> dict:
        return self.translation(batch, encoded=encoded)
