"""``slt-llm export --model DIR --out DIR``: merge LoRA into the base LLM for deployment.

The base is always loaded NON-quantized for merging (``cfg.llm.dtype``, or
``--dtype``; a QLoRA adapter trained on an NF4 base is merged into the bf16/
fp32 base, so the merged weights differ from the 4-bit model by the
quantization error only). ``merge_and_unload`` folds B @ A * alpha/r into
each target weight; the output folder is a normal model folder whose ``llm/``
is the merged HF model and whose meta.json says ``"adapter": "merged"``;
``SLTModel.from_pretrained`` loads both kinds. Cost: one copy of the base
weights in memory and on disk.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Optional

from slt_llm.errors import ConfigError


def export_merged(model_dir, out, *, llm_path=None, dtype: Optional[str] = None, overwrite: bool = False) -> Path:
    """Merge the adapter of ``model_dir`` into its base; write ``out``. ``out`` must be new or
    empty (checked before any work); with ``overwrite`` an existing one is replaced, only once
    the new folder is complete (written beside it, then swapped in)."""
    from slt_llm.models.encoder import build_encoder
    from slt_llm.models.llm import load_llm
    from slt_llm.config import read_clip_settings
    from slt_llm.models.slt_model import SLTModel, _load_safetensors, check_model_dir, meta_extra_of

    model_dir, out = Path(model_dir), Path(out)
    info = check_model_dir(model_dir, llm_path=llm_path)
    meta = info["meta"]
    if meta["adapter"] not in ("lora", "qlora"):
        raise ConfigError(f"{model_dir}: nothing to merge (adapter kind {meta['adapter']!r})")
    if out.resolve() == model_dir.resolve():
        raise ConfigError(f"{out}: export must go to a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out}: exists and is not empty; export writes a new folder (give another --out, or "
                          f"--overwrite to replace it)")
    llm_cfg = dataclasses.replace(info["llm"], path=str(info["llm_path"]), load_in_4bit=False)
    if dtype:
        llm_cfg = dataclasses.replace(llm_cfg, dtype=dtype)
    elif meta["adapter"] == "qlora" and info["llm"].dtype == "float16":
        llm_cfg = dataclasses.replace(llm_cfg, dtype="bfloat16")
    llm, tok = load_llm(llm_cfg, for_training=False, adapter_dir=model_dir / "adapter",
                        tokenizer_dir=model_dir / "tokenizer")
    merged = llm.merge_and_unload()
    enc_cfg = info["encoder"]
    model = SLTModel(enc_cfg, info["projector"], dataclasses.replace(llm_cfg, use_lora=False, path="llm"), merged, tok,
                     encoder=build_encoder(enc_cfg, load_weights=False))
    _load_safetensors(model.encoder, model_dir / "encoder.safetensors", "encoder")
    _load_safetensors(model.projector, model_dir / "projector.safetensors", "projector")
    model.meta_extra = {**meta_extra_of(meta), "adapter": "merged",
                        "merged_from": {"model": str(model_dir), "adapter": meta["adapter"],
                                        "base_model": str(info["llm_path"]), "base_llm": meta.get("base_llm")}}
    model.clip_cfg = read_clip_settings(model_dir)
    tmp = out.with_name(f".{out.name}.export-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        model.save_pretrained(tmp, final=out)
        if out.exists():  # --overwrite (or an empty folder): replaced only now, by a complete one
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
