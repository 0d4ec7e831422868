"""Sentence embeddings from the FROZEN LLM, computed once per unique sentence and cached on disk.

Stage 1 aligns the visual encoder to the LLM's own text space, so the text side
is the LLM itself, frozen: each sentence is tokenized (with the tokenizer's
special tokens, e.g. BOS, so the model sees its usual input), run through the
base model (``AutoModel``: the decoder stack without the LM head), and its last
hidden states (after the final norm) are pooled:

- ``"mean"`` (default): mean over the SENTENCE tokens (padding and special
  tokens such as BOS/EOS excluded; BOS is an attention sink with an outlying
  hidden state in most decoder LLMs);
- ``"last"``: the hidden state of the last sentence token (a causal model's
  summary of the whole sentence).

Cost: one forward pass of the LLM per unique sentence, O(N_unique * L * LLM);
done once per corpus, then every epoch and every reference checkpoint reads
the cache. Memory: the LLM once (loaded lazily, only on a cache miss, and
released by :meth:`TextEmbedder.release`) plus ``(N_unique, hidden)`` float32.

Cache layout (``cache_dir``):

- ``index.json``: ``{"format": 1, "identity": {...}, "dim": H, "texts": [...]}``
  where identity = LLM path (absolute) + a hash of its ``config.json`` and of
  its weight/tokenizer files' names, sizes and mtimes, + the pooling;
- ``embeddings.safetensors``: ``{"embeddings": (N, H) float32}``, row i for
  ``texts[i]``.

Both files are written atomically (temp file + rename). A cache made with
another LLM (or a changed LLM directory) or another pooling is REJECTED with an
:class:`~slt_llm.errors.InputError` naming the cache and the difference; it is
never silently reused. Use another ``vlp.text_cache_dir`` or delete it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

from slt_llm.errors import ConfigError, InputError

POOLINGS = ("mean", "last")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                    "special_tokens_map.json")


def llm_fingerprint(llm_path: str | os.PathLike) -> str:
    """A short hash of an LLM directory: ``config.json`` bytes + (name, size, mtime) of
    its weight and tokenizer files. Changes when the model is rebuilt or replaced.
    Cost: a few stat() calls, no weights are read."""
    root = Path(llm_path)
    cfg = root / "config.json"
    if not root.is_dir() or not cfg.is_file():
        raise InputError(llm_path, "not an LLM directory (no config.json); point llm.path at a local "
                                   "AutoModelForCausalLM folder")
    h = hashlib.sha256(cfg.read_bytes())
    for p in sorted(root.rglob("*")):
        if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name in _TOKENIZER_FILES):
            st = p.stat()
            h.update(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class TextEmbedder:
    """Frozen-LLM sentence embedder with an on-disk cache.

    Args:
        llm_path: a local ``AutoModelForCausalLM`` directory (Qwen2, Llama, Gemma, ...).
        pooling: ``"mean"`` | ``"last"`` (see module docstring).
        dtype: the LLM's compute dtype (``float32`` | ``bfloat16`` | ``float16``);
            embeddings are always returned as float32.
        batch_size: sentences per forward pass (sorted by length to limit padding).
        cache_dir: where the cache lives; None = no disk cache (in-memory only).
        device: where the LLM runs.

    ``embed(texts) -> (len(texts), hidden)`` float32 on CPU; repeated texts are
    computed once. ``num_computed`` counts sentences actually run through the LLM
    (0 on a full cache hit; the LLM is then never loaded).
    """

    def __init__(
        self,
        llm_path: str | os.PathLike,
        pooling: str = "mean",
        dtype: str = "float32",
        batch_size: int = 32,
        cache_dir: Optional[str | os.PathLike] = None,
        device: str | torch.device = "cpu",
        trust_remote_code: bool = False,
    ):
        if pooling not in POOLINGS:
            raise ConfigError(f"vlp.pooling={pooling!r}: expected one of {', '.join(POOLINGS)}")
        if dtype not in _DTYPES:
            raise ConfigError(f"llm.dtype={dtype!r}: expected one of {', '.join(_DTYPES)}")
        if batch_size < 1:
            raise ConfigError(f"text embedding batch_size must be >= 1, got {batch_size}")
        self.llm_path = str(Path(llm_path).resolve())
        self.pooling = pooling
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = torch.device(device)
        self.trust_remote_code = trust_remote_code
        self.identity = {"llm_path": self.llm_path, "llm_hash": llm_fingerprint(self.llm_path),
                         "pooling": pooling}
        self._model = None
        self._tokenizer = None
        self._texts: list[str] = []
        self._row: dict[str, int] = {}
        self._emb: Optional[torch.Tensor] = None  # (N, H) float32
        self.num_computed = 0
        if self.cache_dir is not None:
            self._load_cache()

    # ------------------------------------------------------------------ cache
    @property
    def _index_path(self) -> Path:
        return self.cache_dir / "index.json"

    @property
    def _emb_path(self) -> Path:
        return self.cache_dir / "embeddings.safetensors"

    def _load_cache(self) -> None:
        from safetensors.torch import load_file

        if not self._index_path.is_file():
            return
        try:
            index = json.loads(self._index_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(self._index_path, f"text-embedding cache index is unreadable ({e})") from None
        ident = index.get("identity", {})
        if ident != self.identity:
            diff = [f"{k}: cache has {ident.get(k)!r}, wanted {v!r}" for k, v in self.identity.items()
                    if ident.get(k) != v]
            raise InputError(self.cache_dir, "text-embedding cache was made with another LLM or pooling ("
                             + "; ".join(diff) + "); use another vlp.text_cache_dir or delete this one")
        if not self._emb_path.is_file():
            raise InputError(self._emb_path, "text-embedding cache is incomplete (index without embeddings)")
        emb = load_file(str(self._emb_path))["embeddings"].float()
        texts = list(index["texts"])
        if emb.shape[0] != len(texts):
            raise InputError(self._emb_path, f"text-embedding cache holds {emb.shape[0]} rows for "
                                             f"{len(texts)} texts")
        self._texts, self._emb = texts, emb
        self._row = {t: i for i, t in enumerate(texts)}

    def _save_cache(self) -> None:
        from safetensors.torch import save

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # embeddings first: an index never points at rows that are not on disk
        _atomic_write_bytes(self._emb_path, save({"embeddings": self._emb.contiguous()}))
        index = {"format": 1, "identity": self.identity, "dim": int(self._emb.shape[1]), "texts": self._texts}
        _atomic_write_bytes(self._index_path, json.dumps(index, ensure_ascii=False).encode())

    # ------------------------------------------------------------------ model
    def _load_model(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # AutoModel on a causal-LM folder reports the unused lm_head
        try:
            tok = AutoTokenizer.from_pretrained(self.llm_path, trust_remote_code=self.trust_remote_code)
            model = AutoModel.from_pretrained(self.llm_path, dtype=_DTYPES[self.dtype],
                                              trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError, KeyError) as e:
            raise InputError(self.llm_path, f"cannot load the LLM for text embeddings ({str(e).splitlines()[0]})") \
                from None
        finally:
            hf_logging.set_verbosity(level)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
        if tok.pad_token_id is None:
            raise InputError(self.llm_path, "tokenizer has no pad, eos or unk token to pad with")
        tok.padding_side = "right"
        model.eval().requires_grad_(False).to(self.device)
        self._model, self._tokenizer = model, tok

    def release(self) -> None:
        """Free the LLM (the cached embeddings stay)."""
        self._model = None
        self._tokenizer = None

    @property
    def dim(self) -> Optional[int]:
        if self._emb is not None:
            return int(self._emb.shape[1])
        return None

    @torch.no_grad()
    def _compute(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), H) float32; runs the LLM."""
        self._load_model()
        tok, model = self._tokenizer, self._model
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Optional[torch.Tensor]] = [None] * len(texts)
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True,
                      return_special_tokens_mask=True)
            attn = enc["attention_mask"]  # (b, L)
            special = enc.pop("special_tokens_mask").bool()
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            hidden = model(**enc).last_hidden_state.float().cpu()  # (b, L, H)
            pool = attn.bool() & ~special  # sentence tokens
            empty = ~pool.any(dim=1)
            pool[empty] = attn[empty].bool()  # a sentence of special tokens only: use them all
            if self.pooling == "mean":
                w = pool.unsqueeze(-1).float()
                emb = (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)
            else:  # last sentence token
                pos = torch.arange(pool.shape[1]).expand_as(pool)
                last = torch.where(pool, pos, torch.full_like(pos, -1)).max(dim=1).values  # (b,)
                emb = hidden[torch.arange(hidden.shape[0]), last]
            for j, i in enumerate(idx):
                out[i] = emb[j]
        self.num_computed += len(texts)
        return torch.stack(out) if out else torch.zeros(0, 0)

    # ------------------------------------------------------------------ API
    def embed(self, texts: Iterable[str]) -> torch.Tensor:
        """Embeddings of ``texts`` in order: (len(texts), H) float32, CPU.

        Sentences already cached are read; the missing unique ones are computed
        in one pass and appended to the cache (written once, atomically).
        """
        texts = list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._row))
        if missing:
            new = self._compute(missing)
            if self._emb is not None and new.shape[1] != self._emb.shape[1]:
                raise InputError(self.cache_dir or self.llm_path, "cached embeddings have another width")
            base = len(self._texts)
            self._texts.extend(missing)
            self._row.update({t: base + i for i, t in enumerate(missing)})
            self._emb = new if self._emb is None else torch.cat([self._emb, new])
            if self.cache_dir is not None:
                self._save_cache()
        if not texts:
            return torch.zeros(0, self.dim or 0)
        return self._emb[torch.tensor([self._row[t] for t in texts], dtype=torch.long)]
