"""SLTModel: HandCentricEncoder -> Projector -> decoder-only LLM (+ LoRA/QLoRA).

Sequence of sample i (P prompt tokens, n_i valid video tokens, A tokens of
``after_video``, Y_i target tokens + eos):

    [ prompt(language) | video_1..n_i | after_video | target_i </s> ]
      labels -100 ...................................  target ids + eos

Training right-pads to the longest sequence; ``forward`` returns
``loss_sum`` (summed token cross-entropy over target tokens, fp32),
``num_tokens`` (int tensor) and ``loss`` = loss_sum / num_tokens, so training
code can normalise over ranks and accumulation steps. ``generate`` left-pads
``inputs_embeds`` + attention_mask and calls ``llm.generate`` (KV cache,
greedy or beam). Prompt ids are tokenised once (cached); their embeddings are
looked up once per call.

Cost per sample: encoder (see encoder.py) + projector on n_i tokens + one LLM
pass over P + n_i + A + Y_i positions; the LM head only on the Y_i + 1 target
positions (logits (N, vocab), N = target tokens in the batch).

A model folder (``save_pretrained``): ``slt_config.yaml`` (encoder,
projector, llm sections), ``encoder.safetensors``, ``projector.safetensors``,
``adapter/`` (PEFT) or ``llm/`` (merged export), ``tokenizer/``,
``meta.json`` (adapter kind, base model, versions, + ``meta_extra``),
``clip.yaml`` (the ClipConfig of training, ``clip_cfg``; the same file as in a
stage-1 model folder), ``README.md`` (the model card: ``slt_llm.models.model_card``).
safetensors only.

Base-LLM identity: a folder whose LLM lives outside it (an adapter, or none)
records in meta.json ``base_llm`` = {path, identity, config, embedding}
(:func:`slt_llm.models.llm.llm_identity`: a hash of config.json and the
input-embedding weights). :func:`check_model_dir` refuses, in one line naming
both, a base LLM (the recorded one, or ``llm_path`` / ``--llm``) with another
identity: adapter and projector were trained against those embeddings, so
another LLM gives garbage or an IndexError per row. A folder saved before the
record loads with one warning per process and folder.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from slt_llm.config import (ClipConfig, EncoderConfig, LLMConfig, ProjectorConfig, SLTConfig, from_dict,
                            read_clip_settings, to_dict, write_clip_settings)
from slt_llm.errors import ConfigError
from slt_llm.models.encoder import HandCentricEncoder, build_encoder
from slt_llm.models.llm import adapter_metadata, check_same_llm, llm_identity, load_llm
from slt_llm.models.model_card import write_model_card
from slt_llm.models.projector import Projector

MODEL_FORMAT = "slt_llm.model/1"
# Encoder fields that do not change the weights' meaning or shapes.
_ENCODER_NON_ARCH = {"dropout", "backbone_weights"}
# config entries by which a causal LM post-processes lm_head's output (then the loss takes the full path)
_LOGIT_POSTPROCESS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def _versions() -> dict:
    import peft
    import transformers

    import slt_llm

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "slt_llm": getattr(slt_llm, "__version__", "0")}


def encoder_arch(cfg: EncoderConfig) -> dict:
    d = to_dict(cfg)
    return {k: v for k, v in d.items() if k not in _ENCODER_NON_ARCH}


def _load_safetensors(module: nn.Module, path: Path, what: str) -> None:
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path))
    except Exception as e:  # noqa: BLE001  (SafetensorError, OSError: truncated, corrupt, not a file)
        raise ConfigError(f"{path}: cannot read the {what} weights (corrupt or truncated safetensors file: "
                          f"{str(e).splitlines()[0][:160]})") from None
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or bad:
        raise ConfigError(
            f"{path}: {what} weights do not fit this config (checkpoint from a different config?): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, shape mismatch {bad[:3]}"
        )
    module.load_state_dict(sd, strict=True)


def _save_safetensors(module: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(path))


class SLTModel(nn.Module):
    """encoder + projector + llm. ``llm`` is a (PEFT) HF causal LM as returned
    by :func:`slt_llm.models.llm.load_llm`; build everything from a config
    with :meth:`build`."""

    def __init__(self, encoder_cfg: EncoderConfig, projector_cfg: ProjectorConfig, llm_cfg: LLMConfig, llm, tokenizer,
                 *, encoder: Optional[HandCentricEncoder] = None):
        super().__init__()
        self.encoder_cfg, self.projector_cfg, self.llm_cfg = encoder_cfg, projector_cfg, llm_cfg
        self.encoder = encoder if encoder is not None else build_encoder(encoder_cfg)
        hidden = llm.get_input_embeddings().embedding_dim  # weight.shape is (0,) under ZeRO-3 partitioning
        self.projector = Projector(projector_cfg, encoder_cfg.dim, hidden)
        self.llm = llm
        self.tokenizer = tokenizer
        self.meta_extra: dict = {}  # more JSON-able metadata recorded in meta.json (kept by from_pretrained)
        self.clip_cfg = None  # the ClipConfig of training, recorded in clip.yaml when set
        self.lora_merged = False  # merge_lora() folded the adapters into the base: inference only
        prompt = llm_cfg.prompt.format(language=llm_cfg.target_language)
        # prompt ids cached once (bos where the tokenizer adds one)
        self.register_buffer("prompt_ids", torch.tensor(tokenizer(prompt, add_special_tokens=True)["input_ids"], dtype=torch.long), persistent=False)
        self.register_buffer("after_ids", torch.tensor(tokenizer(llm_cfg.after_video, add_special_tokens=False)["input_ids"], dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, cfg: SLTConfig, *, for_training: bool = True, device=None) -> "SLTModel":
        """Load the LLM from ``cfg.llm.path`` (LoRA/QLoRA per cfg.llm), build a
        fresh encoder (+ backbone weights if configured) and projector."""
        llm, tok = load_llm(cfg.llm, for_training=for_training, device=device)
        model = cls(cfg.encoder, cfg.projector, cfg.llm, llm, tok)
        if device is not None:
            model.encoder.to(device)
            model.projector.to(device)
        return model

    @property
    def embed_dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    # -------------------------------------------------------------- sequences
    def _embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids)

    def visual_embeds(self, batch: dict, encoded: Optional[tuple] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,T',hidden) projected video tokens in the LLM embedding dtype, token_mask (B,T').
        ``encoded``: the encoder's ``(tokens, mask)`` of this batch when already computed (stage 1's
        joint objective shares one encoder pass between its terms)."""
        tokens, mask = self.encoder(batch) if encoded is None else encoded
        return self.projector(tokens).to(self.embed_dtype), mask

    def _target_ids(self, texts: list) -> list:
        enc = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        return [list(x) + [eos] for x in enc]

    def _sequences(self, batch: dict, texts: Optional[list], encoded: Optional[tuple] = None):
        """Per-sample embedding sequences (list of (L_i,hidden)) and label lists."""
        vis, vmask = self.visual_embeds(batch, encoded)
        dev = vis.device
        prompt = self._embed_ids(self.prompt_ids.to(dev))  # (P,hidden) once per call
        after = self._embed_ids(self.after_ids.to(dev))  # (A,hidden)
        seqs, labels = [], []
        targets = self._target_ids(texts) if texts is not None else None
        if targets is not None:  # one embedding call for the whole batch: under ZeRO-3 every rank must
            # call each module the same number of times whatever its batch size (skipped samples)
            flat = torch.tensor([t for ts in targets for t in ts], dtype=torch.long, device=dev)
            target_embeds = self._embed_ids(flat).split([len(ts) for ts in targets])
        for i in range(vis.shape[0]):
            parts = [prompt, vis[i][vmask[i]], after]
            lab = [-100] * (prompt.shape[0] + int(vmask[i].sum()) + after.shape[0])
            if targets is not None:
                parts.append(target_embeds[i])
                lab += targets[i]
            seqs.append(torch.cat(parts, 0))
            labels.append(lab)
        return seqs, labels

    # ---------------------------------------------------------------- forward
    def _decoder_and_head(self):
        """(decoder stack, lm_head) of the (PEFT-wrapped) causal LM, or None
        when its logits are not a plain ``lm_head(hidden)`` (final logit
        soft-capping, logit scaling: Gemma-2/3, Cohere, Granite, ...); those
        models take the full-logits path."""
        from peft import PeftModel

        base = self.llm.get_base_model() if isinstance(self.llm, PeftModel) else self.llm
        cfg = base.config
        for attr in _LOGIT_POSTPROCESS:
            v = getattr(cfg, attr, None)
            if v not in (None, False) and not (attr == "logits_scaling" and v == 1.0):
                return None
        head, dec = base.get_output_embeddings(), base.get_decoder()
        if head is None or dec is base:
            return None
        return dec, head

    def forward(self, batch: dict, return_logits: bool = False, encoded: Optional[tuple] = None) -> dict:
        """Teacher-forced loss on target tokens of ``batch["texts"]``.

        The LM head runs only on the N positions whose NEXT token is a target
        (N = sum of target lengths + eos): decoder hidden states (B, L, hidden)
        -> gather (N, hidden) -> lm_head -> (N, vocab) -> fp32 cross-entropy.
        The full computation, lm_head on all B x L positions (prompt, video,
        padding included) and upcast to fp32, costs B*L*vocab*(2 + 4) bytes
        more transient memory (with a 150k vocabulary and L=200, 180 MB per
        sample; see docs/perf/memory.md). ``return_logits=True`` takes that
        full path and returns ``logits`` (B, L, vocab) as well (tests, and
        models whose head is not a plain linear layer); both give the same
        loss and gradients.
        """
        if self.training and self.lora_merged:
            raise RuntimeError("SLTModel: LoRA adapters were merged into the base weights (merge_lora) for "
                               "inference; training this model would apply them twice. Load it again to train.")
        texts = batch["texts"]
        seqs, labels = self._sequences(batch, texts, encoded)
        B, L = len(seqs), max(s.shape[0] for s in seqs)
        hidden = seqs[0].shape[-1]
        dev = seqs[0].device
        embeds = seqs[0].new_zeros(B, L, hidden)
        attn = torch.zeros(B, L, dtype=torch.long, device=dev)
        lab = torch.full((B, L), -100, dtype=torch.long, device=dev)
        for i, (s, l) in enumerate(zip(seqs, labels)):  # right padding
            embeds[i, : s.shape[0]] = s
            attn[i, : s.shape[0]] = 1
            lab[i, : s.shape[0]] = torch.tensor(l, dtype=torch.long, device=dev)
        tgt = lab[:, 1:]  # (B, L-1): the token each position predicts
        num = (tgt != -100).sum()
        parts = None if return_logits else self._decoder_and_head()
        if parts is None:
            logits = self.llm(inputs_embeds=embeds, attention_mask=attn, use_cache=False).logits  # (B,L,V)
            loss_sum = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                       ignore_index=-100, reduction="sum")
            out = {"logits": logits}
        else:
            dec, head = parts
            h = dec(inputs_embeds=embeds, attention_mask=attn, use_cache=False).last_hidden_state  # (B,L,hidden)
            sel = tgt != -100  # (B, L-1)
            logits_t = head(h[:, :-1][sel])  # (N, V), N = target tokens
            loss_sum = F.cross_entropy(logits_t.float(), tgt[sel], reduction="sum")
            out = {}
        out.update({"loss_sum": loss_sum, "num_tokens": num, "loss": loss_sum / num.clamp(min=1)})
        return out

    # --------------------------------------------------------------- generate
    def merge_lora(self) -> int:
        """Fold the LoRA adapters into the LLM's base weights, in place (W += scale * B @ A,
        PEFT's ``merge_adapter``), for inference: each generated token then runs the base
        layers alone instead of two more matmuls and their element-wise ops per adapted layer
        (7 per decoder layer in the shipped recipes). Returns the number of layers merged.

        Nothing changes (returns 0) when there is no adapter, it is merged already, or the
        base is quantized (4-/8-bit: merging would re-quantize it, a lossy change). The merged
        weight has the base's dtype: in fp32 the outputs match the adapters' to float rounding;
        in bf16 the sum is rounded to bf16 like any bf16 weight. There is no way back that is
        exact (unmerging subtracts in floating point), so the model is marked inference-only:
        a training forward raises. ``save_pretrained`` still writes the adapter unchanged."""
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        if self.lora_merged or not isinstance(self.llm, PeftModel):
            return 0
        if self.llm_cfg.load_in_4bit or getattr(self.llm, "is_loaded_in_4bit", False) or \
                getattr(self.llm, "is_loaded_in_8bit", False):
            return 0
        layers = [m for m in self.llm.modules() if isinstance(m, LoraLayer)]
        if not layers:
            return 0
        self.llm.merge_adapter()
        self.lora_merged = True
        return len(layers)

    @torch.no_grad()
    def generate(self, batch: dict, num_beams: int = 1, max_new_tokens: int = 48, **kw) -> list:
        """Translate a batch -> list of B strings (left-padded inputs_embeds,
        KV cache on). Extra ``kw`` go to ``llm.generate``."""
        was_training = self.training
        self.eval()
        try:
            seqs, _ = self._sequences(batch, None)
            B, L = len(seqs), max(s.shape[0] for s in seqs)
            dev = seqs[0].device
            embeds = seqs[0].new_zeros(B, L, seqs[0].shape[-1])
            attn = torch.zeros(B, L, dtype=torch.long, device=dev)
            for i, s in enumerate(seqs):  # left padding
                embeds[i, L - s.shape[0]:] = s
                attn[i, L - s.shape[0]:] = 1
            tok = self.tokenizer
            gen_kw = dict(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False, use_cache=True,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            if num_beams > 1:
                gen_kw["early_stopping"] = True
            gen_kw.update(kw)
            out = self.llm.generate(inputs_embeds=embeds, attention_mask=attn, **gen_kw)
            return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]
        finally:
            self.train(was_training)

    # ---------------------------------------------------------------- stage 1
    def load_encoder_from(self, folder) -> None:
        """Load ``encoder.safetensors`` from a stage-1 model folder (with
        ``vlp_config.yaml``); ConfigError if its encoder config differs."""
        folder = Path(folder)
        cfg_path, w_path = folder / "vlp_config.yaml", folder / "encoder.safetensors"
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise ConfigError(f"{folder}: not a stage-1 model folder (missing {p.name})")
        try:
            raw = yaml.safe_load(cfg_path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{cfg_path}: not valid YAML ({str(e).splitlines()[0]})") from None
        theirs = from_dict(EncoderConfig, raw.get("encoder") or {}, "encoder")
        a, b = encoder_arch(theirs), encoder_arch(self.encoder_cfg)
        if a != b:
            diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
            raise ConfigError(f"{folder}: checkpoint from a different config (encoder {diff}: checkpoint vs this model)")
        _load_safetensors(self.encoder, w_path, "encoder")

    # ------------------------------------------------------------- save/load
    def save_pretrained(self, folder, final=None) -> Path:
        """Write the model folder (see module doc). Only adapter weights of
        the LLM are written (the base is recorded by path). ``final``: the path the
        folder is renamed to afterwards (the model card names it)."""
        from peft import PeftModel

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        llm_cfg = self.llm_cfg
        if llm_cfg.path and llm_cfg.path != "llm" and Path(llm_cfg.path).is_dir():
            # a local base LLM is recorded absolute, so the folder works from any working folder
            # (a hub id stays as given; a merged export's own "llm" stays relative to the folder)
            llm_cfg = dataclasses.replace(llm_cfg, path=str(Path(llm_cfg.path).resolve()))
        (folder / "slt_config.yaml").write_text(yaml.safe_dump(
            {"encoder": to_dict(self.encoder_cfg), "projector": to_dict(self.projector_cfg), "llm": to_dict(llm_cfg)},
            sort_keys=False))
        _save_safetensors(self.encoder, folder / "encoder.safetensors")
        _save_safetensors(self.projector, folder / "projector.safetensors")
        meta = {"format": MODEL_FORMAT, **adapter_metadata(self.llm_cfg), "versions": _versions(), **self.meta_extra}
        if meta["adapter"] != "merged" and llm_cfg.path:
            ident = None
            try:
                ident = llm_identity(llm_cfg.path)
            except ConfigError as e:  # the LLM is loaded already: only a file changed under us gets here
                print(f"warning: {folder}: base-LLM identity not recorded ({e})", file=sys.stderr)
            if ident is not None:
                meta["base_llm"] = {"path": str(llm_cfg.path), **ident}
        if isinstance(self.llm, PeftModel):
            self.llm.save_pretrained(str(folder / "adapter"), safe_serialization=True)
        elif meta["adapter"] == "merged":
            self.llm.save_pretrained(str(folder / "llm"), safe_serialization=True)
            self.tokenizer.save_pretrained(str(folder / "llm"))
        else:
            meta["adapter"] = "none"
        self.tokenizer.save_pretrained(str(folder / "tokenizer"))
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))
        write_clip_settings(folder, self.clip_cfg)
        write_model_card(folder, final=final)  # README.md from what the folder records; file modes follow the umask
        return folder

    @classmethod
    def from_pretrained(cls, folder, llm_path=None, device="cpu", load_in_4bit: Optional[bool] = None,
                        for_training: bool = False, trust_remote_code: bool = False) -> "SLTModel":
        """Rebuild a saved model. Base LLM from ``llm_path`` or the recorded
        path (merged exports carry their own ``llm/``). ``load_in_4bit``
        overrides the recorded choice (None keeps it). Folder checks run
        before anything heavy (:func:`check_model_dir`).

        ``trust_remote_code`` is the caller's choice only (the user's
        ``--trust-remote-code``): whatever the folder's ``slt_config.yaml``
        says is ignored, so a downloaded model folder can never make us run
        its code (an LLM that needs custom code is refused in one line).

        ``folder`` may be a :class:`ModelFolder` (:func:`open_model_folder`) a caller has
        already opened: its small files are then not read again (``llm_path`` must be
        None or the one it was opened with)."""
        if isinstance(folder, ModelFolder):
            if llm_path is not None and str(llm_path) != str(folder.llm_given):
                raise ValueError(f"{folder.path}: opened with llm_path={folder.llm_given!r}, "
                                 f"not {str(llm_path)!r}; open it again with that base LLM")
            opened = folder
        else:
            opened = open_model_folder(folder, llm_path=llm_path)
        folder = opened.path
        enc_cfg, proj_cfg, llm_cfg, meta = opened.encoder, opened.projector, opened.llm, opened.meta
        llm_cfg = dataclasses.replace(llm_cfg, path=str(opened.llm_path), trust_remote_code=bool(trust_remote_code))
        if meta["adapter"] == "merged":
            llm_cfg = dataclasses.replace(llm_cfg, use_lora=False)
        if load_in_4bit is not None:
            llm_cfg = dataclasses.replace(llm_cfg, load_in_4bit=bool(load_in_4bit))
        adapter_dir = folder / "adapter" if meta["adapter"] in ("lora", "qlora") else None
        llm, tok = load_llm(llm_cfg, for_training=for_training, device=device if device != "cpu" else None,
                            adapter_dir=adapter_dir, tokenizer_dir=folder / "tokenizer")
        model = cls(enc_cfg, proj_cfg, llm_cfg, llm, tok, encoder=build_encoder(enc_cfg, load_weights=False))
        model.meta_extra = meta_extra_of(meta)
        model.clip_cfg = opened.clip
        _load_safetensors(model.encoder, folder / "encoder.safetensors", "encoder")
        _load_safetensors(model.projector, folder / "projector.safetensors", "projector")
        model.encoder.to(device)
        model.projector.to(device)
        if not for_training:
            model.eval()
        return model


def meta_extra_of(meta: dict) -> dict:
    """The ``meta_extra`` part of a saved ``meta.json``: everything but the format,
    versions and adapter description that ``save_pretrained`` writes itself (the
    adapter kind is kept when it is ``merged``: that is what marks a merged export)."""
    own = {"format", "versions", "base_llm", *adapter_metadata(LLMConfig()).keys()}
    extra = {k: v for k, v in meta.items() if k not in own}
    if meta.get("adapter") == "merged":
        extra["adapter"] = "merged"
    return extra


_WARNED_NO_IDENTITY: set = set()


@dataclasses.dataclass(frozen=True)
class ModelFolder:
    """A model folder opened once (:func:`open_model_folder`): everything its small files
    say, so a run (``slt-llm translate``) checks the folder, reads ``meta.json``,
    ``slt_config.yaml`` and the clip settings once and hands this object on
    (:meth:`SLTModel.from_pretrained` accepts it in place of a path)."""

    path: Path
    encoder: EncoderConfig
    projector: ProjectorConfig
    llm: LLMConfig  # as recorded, trust_remote_code always False
    meta: dict  # meta.json
    llm_path: Path  # the base LLM to load (resolved), or the folder's llm/ (merged export)
    llm_given: Optional[str]  # the llm_path it was opened with (None: the recorded one)
    clip: Optional[ClipConfig]  # the clip settings of training (None: the folder records none)


def open_model_folder(folder, llm_path=None) -> ModelFolder:
    """:func:`check_model_dir` + the folder's clip settings (``config.read_clip_settings``,
    reusing the meta.json just read), each small file read once. No weights are loaded.
    ConfigError naming what is missing or unreadable."""
    folder = Path(folder)
    info = check_model_dir(folder, llm_path=llm_path)
    return ModelFolder(path=folder, encoder=info["encoder"], projector=info["projector"], llm=info["llm"],
                       meta=info["meta"], llm_path=Path(info["llm_path"]),
                       llm_given=None if llm_path is None else str(llm_path),
                       clip=read_clip_settings(folder, meta=info["meta"]))


def check_model_dir(folder, llm_path=None) -> dict:
    """Cheap validation of a model folder (no model weights loaded; the base LLM's
    embedding tensor is read once to check its identity, see the module doc). Returns
    {"encoder", "projector", "llm" (configs), "meta", "llm_path"}; ConfigError
    naming what is missing otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: model folder not found")
    need = ["slt_config.yaml", "meta.json", "encoder.safetensors", "projector.safetensors", "tokenizer"]
    missing = [n for n in need if not (folder / n).exists()]
    if missing:
        raise ConfigError(f"{folder}: incomplete model folder (missing {', '.join(missing)})")
    try:
        meta = json.loads((folder / "meta.json").read_text())
        raw = yaml.safe_load((folder / "slt_config.yaml").read_text()) or {}
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{folder}: unreadable meta.json/slt_config.yaml ({str(e).splitlines()[0]})") from None
    if not isinstance(meta, dict) or "adapter" not in meta:
        raise ConfigError(f"{folder / 'meta.json'}: no 'adapter' entry (not written by SLTModel.save_pretrained)")
    enc = from_dict(EncoderConfig, raw.get("encoder") or {}, "encoder")
    proj = from_dict(ProjectorConfig, raw.get("projector") or {}, "projector")
    llm = from_dict(LLMConfig, raw.get("llm") or {}, "llm")
    llm = dataclasses.replace(llm, trust_remote_code=False)  # data from the folder, never a licence to run code
    kind = meta["adapter"]
    if kind in ("lora", "qlora"):
        ad = folder / "adapter"
        if not (ad / "adapter_config.json").is_file() or not (ad / "adapter_model.safetensors").is_file():
            raise ConfigError(f"{folder}: incomplete model folder (adapter/ lacks adapter_config.json or adapter_model.safetensors)")
    if kind == "merged":
        path = folder / "llm"
        if not (path / "config.json").is_file():
            raise ConfigError(f"{folder}: incomplete model folder (merged export without llm/config.json)")
    else:
        from slt_llm.models.llm import resolve_llm_path

        given = llm_path or llm.path
        if not given:
            raise ConfigError(f"{folder}: the model records no base LLM; pass the base model (llm_path / --llm)")
        try:
            path = resolve_llm_path(given)  # a folder, or a hub id (its local snapshot)
        except ConfigError as e:
            raise ConfigError(f"{folder}: base LLM not usable ({e}); pass the base model directory "
                              f"(llm_path / --llm)") from None
        if isinstance(meta.get("base_llm"), dict):
            check_same_llm(meta["base_llm"], given, folder=folder)
        elif str(folder.resolve()) not in _WARNED_NO_IDENTITY:
            _WARNED_NO_IDENTITY.add(str(folder.resolve()))
            print(f"warning: {folder}: records no base-LLM identity (saved by an older slt_llm); {given} is not "
                  f"checked to be the LLM it was trained on", file=sys.stderr)
    return {"encoder": enc, "projector": proj, "llm": llm, "meta": meta, "llm_path": path}
