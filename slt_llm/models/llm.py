"""The LLM half of the SLT model: any local decoder-only ``AutoModelForCausalLM``.

``load_llm(cfg)`` checks the directory (exists, is a causal decoder-only LM,
remote code only when asked, a tokenizer with an eos token) BEFORE loading any
weights, then loads the model and wires LoRA / QLoRA in one place,
:func:`prepare_llm` (the shape of peft ``examples/sft/utils.py::
create_and_prepare_model``):

* QLoRA (``load_in_4bit``): NF4 + double quantization through bitsandbytes,
  ``bnb_4bit_compute_dtype`` and ``bnb_4bit_quant_storage`` from config (the
  storage dtype lets ZeRO-3 shard the packed 4-bit weights), then
  ``prepare_model_for_kbit_training``. That helper upcasts EVERY non-4-bit
  weight to fp32; we keep that for the norms (tiny, numerically sensitive)
  but put the frozen input embeddings and lm_head back to the compute dtype
  (with a 32k vocabulary and hidden 2048 that is 2 x 65 M parameters: 262 MB
  saved in bf16 vs fp32; see docs/perf/memory.md). lm_head casts its input
  to its own dtype; SLTModel upcasts logits to fp32 for the loss.
* LoRA on the explicit ``cfg.lora_targets`` (a target that matches no module
  is a ConfigError), base frozen, adapters fp32.
* Gradient checkpointing switchable (``use_reentrant=False``; input grads on,
  since inputs_embeds come from the projector).

Adapter facts are recorded by :func:`adapter_metadata`, never guessed from a
folder name.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from slt_llm.config import LLMConfig
from slt_llm.distributed import print0
from slt_llm.errors import ConfigError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "uint8": torch.uint8}
ENCODER_ONLY = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "albert", "deberta", "deberta-v2",
                "camembert", "mpnet", "ernie", "modernbert"}


def to_dtype(name: str, what: str = "llm.dtype") -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ConfigError(f"{what}: unknown dtype {name!r} (choose float32, bfloat16 or float16)")
    return DTYPES[name]


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# what a causal LM needs from a hub snapshot (weights as safetensors only: nothing is unpickled)
_HUB_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.jinja"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_llm_path(path) -> Path:
    """A local model folder as it is; a Hugging Face hub id (``org/name``) -> its local snapshot
    folder through ``huggingface_hub.snapshot_download``: downloaded when needed, or, when the
    user's environment says ``HF_HUB_OFFLINE=1``, taken from the local cache only (the cache is
    ``HF_HUB_CACHE`` / ``HF_HOME`` as huggingface_hub reads them). ConfigError, one line: a
    folder that does not exist and is no hub id, an offline miss (said as such), a failed
    download."""
    if path is None or str(path) == "":
        raise ConfigError("llm.path is not set (a local AutoModelForCausalLM folder or a Hugging Face hub id)")
    p = Path(path)
    if p.is_dir():
        return p
    s = str(path)
    if p.exists() or not _HUB_ID.match(s):
        raise ConfigError(f"{p}: LLM directory not found (llm.path takes a local folder or a hub id like org/name)")
    from huggingface_hub import snapshot_download

    offline = _offline()
    try:
        return Path(snapshot_download(s, allow_patterns=_HUB_FILES, local_files_only=offline,
                                      cache_dir=os.environ.get("HF_HUB_CACHE") or None))
    except Exception as e:  # noqa: BLE001  (huggingface_hub raises many kinds)
        if offline:
            raise ConfigError(f"{s}: no such folder, and as a Hugging Face hub id it is not in the local cache while "
                              f"HF_HUB_OFFLINE=1 (offline): download it once with network access, or give a "
                              f"local folder") from None
        raise ConfigError(f"{s}: no such folder, and the Hugging Face hub did not give it "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None


def check_llm_dir(path, *, trust_remote_code: bool = False):
    """Cheap checks on an LLM directory (reads config.json only); returns the
    ``AutoConfig``. ConfigError: missing dir / config, remote code not allowed,
    not a decoder-only causal LM."""
    p = resolve_llm_path(path)
    if not (p / "config.json").is_file():
        raise ConfigError(f"{p}: not a Hugging Face model directory (no config.json)")
    try:
        raw = json.loads((p / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p / 'config.json'}: not valid JSON ({e})") from None
    if raw.get("auto_map") and not trust_remote_code:
        raise ConfigError(f"{p}: the model needs custom code (auto_map in config.json); it is not run unless you "
                          f"allow it (llm.trust_remote_code=true in your config, or --trust-remote-code)")
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{p}: cannot read the model config ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    model_type = getattr(config, "model_type", "")
    causal_names = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    archs = list(getattr(config, "architectures", None) or [])
    is_causal = (
        not getattr(config, "is_encoder_decoder", False)
        and model_type not in ENCODER_ONLY
        and (model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (trust_remote_code and raw.get("auto_map")))
        and (not archs or any(a in causal_names or a.endswith("ForCausalLM") for a in archs))
    )
    if not is_causal:
        raise ConfigError(
            f"{p}: not a decoder-only causal LM (model_type={model_type!r}, architectures={archs}); "
            "llm.path needs an AutoModelForCausalLM such as Llama, Qwen2 or Gemma"
        )
    return config


# ------------------------------------------------------------------ identity
# config.json entries that say how a copy was saved, not what the model is
_VOLATILE_CONFIG = {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "use_cache"}
_EMBED_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight",
                   "embed_in.weight", "embeddings.weight")
_identity_memo: dict = {}


def _safetensors_header(path: Path) -> tuple[dict, int]:
    """(header dict, byte offset of the data) of a safetensors file; reads the header only."""
    import struct

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("shorter than a safetensors header")
        n = struct.unpack("<Q", head)[0]
        if n > 100_000_000:
            raise ValueError("header length out of range")
        raw = f.read(n)
    if len(raw) < n:
        raise ValueError("header cut short")
    return json.loads(raw), 8 + n


def _weight_files(root: Path) -> list:
    """The safetensors files of an HF model folder: those of its index, or every *.safetensors at its top."""
    index = root / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{index}: unreadable weight index ({e})") from None
        return [root / n for n in names]
    return sorted(root.glob("*.safetensors"))


def llm_identity(path) -> dict | None:
    """What a base LLM IS, for a model folder to record and check (:func:`check_same_llm`):
    ``{"identity": 16 hex, "config": 16 hex, "embedding": {"tensor", "shape", "dtype"}}`` where
    ``identity`` hashes config.json (minus how it was saved: transformers version, dtype, name)
    and the input-embedding tensor's bytes as stored (read from its safetensors file: header +
    that tensor only; a 150k x 4096 bf16 embedding is 1.2 GB read once per process, memoised).
    With no recognisable embedding tensor the hash covers every safetensors header (names,
    dtypes, shapes) and file size instead (``embedding`` is then None). None when the folder
    has no safetensors weights (the loader refuses those anyway). A weight file that cannot be
    read is a ConfigError naming it. The same model saved in another dtype is another identity."""
    import hashlib

    root = resolve_llm_path(path).resolve()
    cfg_path = root / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{root}: not a Hugging Face model directory (no config.json)")
    files = _weight_files(root)
    key = (str(root), *((str(p), p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (str(p),)
                        for p in [cfg_path, *files]))
    if key in _identity_memo:
        return _identity_memo[key]
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{cfg_path}: not valid JSON ({e})") from None
    canon = json.dumps({k: v for k, v in raw.items() if k not in _VOLATILE_CONFIG}, sort_keys=True)
    cfg_hash = hashlib.sha256(canon.encode()).hexdigest()[:16]
    if not files:
        _identity_memo[key] = None
        return None
    headers = {}
    for f in files:
        try:
            headers[f] = _safetensors_header(f)
        except (OSError, ValueError) as e:  # json errors are ValueErrors
            raise ConfigError(f"{root}: cannot load the model ({f.name}: corrupt or truncated safetensors file: "
                              f"{str(e).splitlines()[0][:120]})") from None
    vocab = raw.get("vocab_size") or (raw.get("text_config") or {}).get("vocab_size")
    found = None
    for suffix in _EMBED_SUFFIXES:
        for f, (h, _) in headers.items():
            for name, info in h.items():
                if name != "__metadata__" and name.endswith(suffix) and len(info.get("shape", [])) == 2 \
                        and (vocab is None or info["shape"][0] == vocab):
                    found = found or (f, name, info)
    h = hashlib.sha256(canon.encode())
    embedding = None
    if found is not None:
        f, name, info = found
        start, end = info["data_offsets"]
        base = headers[f][1]
        with open(f, "rb") as fh:
            fh.seek(base + start)
            left, chunk = end - start, 1 << 24
            while left > 0:
                data = fh.read(min(chunk, left))
                if not data:
                    raise ConfigError(f"{root}: cannot load the model ({f.name}: corrupt or truncated safetensors "
                                      f"file: tensor {name} cut short)")
                h.update(data)
                left -= len(data)
        embedding = {"tensor": name, "shape": list(info["shape"]), "dtype": info.get("dtype")}
    else:
        for f, (hd, base) in headers.items():
            h.update(json.dumps({k: v for k, v in hd.items() if k != "__metadata__"}, sort_keys=True).encode())
            h.update(f"{f.name}|{f.stat().st_size}".encode())
    ident = {"identity": h.hexdigest()[:16], "config": cfg_hash, "embedding": embedding}
    _identity_memo[key] = ident
    return ident


def check_same_llm(recorded: dict, given, *, folder,
                   hint: str = "pass the base model it was trained on (--llm)") -> None:
    """ConfigError (one line naming both, ending in ``hint``) when the base LLM at ``given`` is not
    the one whose :func:`llm_identity` a model folder recorded (``recorded``: its meta.json
    ``base_llm``, or a stage-1 folder's ``llm`` record)."""
    ident = llm_identity(given)
    want = recorded.get("identity")
    if ident is None or not want or ident["identity"] == want:
        return
    why = []
    if recorded.get("config") and recorded["config"] != ident["config"]:
        why.append("another config.json")
    a, b = recorded.get("embedding") or {}, ident.get("embedding") or {}
    if a.get("shape") and b.get("shape") and a["shape"] != b["shape"]:
        why.append(f"embedding {'x'.join(map(str, a['shape']))} vs {'x'.join(map(str, b['shape']))}")
    elif a.get("dtype") and b.get("dtype") and a["dtype"] != b["dtype"]:
        why.append(f"embedding dtype {a['dtype']} vs {b['dtype']}")
    elif not why:
        why.append("other embedding weights")
    raise ConfigError(f"{folder}: trained on base LLM {recorded.get('path')} (identity {want}) but given {given} "
                      f"(identity {ident['identity']}: {', '.join(why)}); {hint}")


def load_tokenizer(path, *, trust_remote_code: bool = False):
    """AutoTokenizer from ``path``; needs an eos token; pad falls back to eos."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{path}: cannot load the tokenizer ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if tok.eos_token is None or tok.eos_token_id is None:
        raise ConfigError(f"{path}: the tokenizer has no eos token (needed to end translations)")
    if tok.pad_token is None:
        print0(f"note: {path}: tokenizer has no pad token; using eos ({tok.eos_token!r}) for padding")
        tok.pad_token = tok.eos_token
    return tok


def adapter_kind(cfg: LLMConfig) -> str:
    if not cfg.use_lora:
        return "none"
    return "qlora" if cfg.load_in_4bit else "lora"


def adapter_metadata(cfg: LLMConfig) -> dict:
    """What an adapter is (recorded in meta.json; never inferred from names)."""
    return {
        "adapter": adapter_kind(cfg),
        "base_model": str(cfg.path) if cfg.path else None,
        "lora_targets": list(cfg.lora_targets),
        "lora_r": cfg.lora_r,
        "lora_alpha": cfg.lora_alpha,
        "load_in_4bit": bool(cfg.load_in_4bit),
        "bnb_4bit_quant_type": "nf4" if cfg.load_in_4bit else None,
        "bnb_4bit_compute_dtype": cfg.bnb_4bit_compute_dtype if cfg.load_in_4bit else None,
        "bnb_4bit_quant_storage": cfg.bnb_4bit_quant_storage if cfg.load_in_4bit else None,
        "dtype": cfg.dtype,
    }


def bnb_config(cfg: LLMConfig):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=to_dtype(cfg.bnb_4bit_compute_dtype, "llm.bnb_4bit_compute_dtype"),
        bnb_4bit_quant_storage=to_dtype(cfg.bnb_4bit_quant_storage, "llm.bnb_4bit_quant_storage"),
    )


def _cast_input_hook(module, args):
    x = args[0]
    w = module.weight
    if x.dtype != w.dtype and w.dtype.is_floating_point:
        return (x.to(w.dtype),) + tuple(args[1:])
    return None


def _check_targets(model, targets: list) -> None:
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(f"llm.lora_targets: {missing} match no module of this model (linear layers: {linear})")


def prepare_llm(model, cfg: LLMConfig, *, for_training: bool = True, adapter_dir=None):
    """ALL LoRA/QLoRA wiring. ``model`` is a freshly loaded HF causal LM
    (4-bit already when ``cfg.load_in_4bit``). Returns the (PEFT) model with
    the base frozen and only LoRA parameters trainable (none if use_lora is
    off or for inference). ``adapter_dir``: load a saved PEFT adapter instead
    of creating new LoRA layers."""
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    for p in model.parameters():
        p.requires_grad_(False)
    gc = bool(cfg.gradient_checkpointing and for_training)
    if cfg.load_in_4bit and for_training:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gc, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        # Deliberate: norms stay fp32 (from the helper); frozen embeddings and
        # lm_head go back to the compute dtype (they are the largest non-4-bit
        # tensors and never receive gradients).
        keep = to_dtype(cfg.bnb_4bit_compute_dtype, "llm.bnb_4bit_compute_dtype")
        for mod in {model.get_input_embeddings(), model.get_output_embeddings()}:
            if mod is not None and mod.weight.__class__.__name__ != "Params4bit":
                mod.weight.data = mod.weight.data.to(keep)
        # bitsandbytes' CPU inference path (eval + no grad, avx512bf16) repacks
        # 4-bit weights in place into a layout whose later backward runs
        # through an op without an autograd kernel (torch warns it may be
        # silently wrong). A model being trained (dev-set generate between
        # steps) must never take that path.
        for mod in model.modules():
            if hasattr(mod, "support_avx512bf16_for_cpu"):
                mod.support_avx512bf16_for_cpu = False
    elif gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if gc:
        model.enable_input_require_grads()
        model.config.use_cache = False
    out_emb = model.get_output_embeddings()
    if out_emb is not None and not getattr(out_emb, "_slt_cast_hook", False):
        out_emb.register_forward_pre_hook(_cast_input_hook)
        out_emb._slt_cast_hook = True
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=for_training)
    elif cfg.use_lora and for_training:
        _check_targets(model, list(cfg.lora_targets))
        lcfg = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
            target_modules=list(cfg.lora_targets), bias="none", task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lcfg)
    if for_training:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        print0(f"llm: {adapter_kind(cfg)} trainable params {trainable:,} / {total:,} ({100.0 * trainable / max(total, 1):.3f}%)")
    return model


def load_llm(cfg: LLMConfig, *, for_training: bool = True, device=None, adapter_dir=None, tokenizer_dir=None):
    """Load a local causal LM + tokenizer and wire LoRA/QLoRA (see module doc).

    Returns ``(model, tokenizer)``. Cheap checks run first (ConfigError):
    missing/invalid dir, encoder-only or encoder-decoder config, remote code
    without ``trust_remote_code``, tokenizer without eos. ``adapter_dir``
    loads a saved PEFT adapter; ``tokenizer_dir`` overrides where the
    tokenizer comes from. Cost: the weights once in ``cfg.dtype`` (or NF4:
    ~0.5 byte/param + ~0.5% quantization state)."""
    from transformers import AutoModelForCausalLM

    path = resolve_llm_path(cfg.path)  # a hub id -> its local snapshot
    check_llm_dir(path, trust_remote_code=cfg.trust_remote_code)
    tokenizer = load_tokenizer(tokenizer_dir or path, trust_remote_code=cfg.trust_remote_code)
    kwargs = {"trust_remote_code": cfg.trust_remote_code, "use_safetensors": True}  # never unpickle weights
    if cfg.load_in_4bit:
        kwargs["quantization_config"] = bnb_config(cfg)
        kwargs["dtype"] = to_dtype(cfg.bnb_4bit_compute_dtype, "llm.bnb_4bit_compute_dtype")
        kwargs["device_map"] = {"": str(device) if device is not None else "cpu"}
    else:
        kwargs["dtype"] = to_dtype(cfg.dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except Exception as e:  # noqa: BLE001  (OSError, ValueError, SafetensorError of a truncated file, ...)
        raise ConfigError(f"{cfg.path}: cannot load the model ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    # what PEFT records as the adapter's base_model_name_or_path: the hub id as given, or the local
    # folder ABSOLUTE, so AutoPeftModelForCausalLM finds it from any working folder
    model.name_or_path = str(cfg.path) if not Path(str(cfg.path)).is_dir() else str(Path(cfg.path).resolve())
    if device is not None and not cfg.load_in_4bit:
        model = model.to(device)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model = prepare_llm(model, cfg, for_training=for_training, adapter_dir=adapter_dir)
    if not for_training:
        model.eval()
    return model, tokenizer
