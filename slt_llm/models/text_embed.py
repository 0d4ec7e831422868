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

Cache layout (``cache_dir``): one file per identity,
``text_emb-<key>.safetensors`` holding ``{"embeddings": (N, H) float32}``
(row i for ``texts[i]``) with the metadata ``format``, ``identity`` and
``texts`` (JSON strings). The identity is everything that changes the
numbers: the LLM path (absolute) + a hash of its ``config.json`` and of its
weight/tokenizer files' names, sizes and mtimes, the pooling, the compute
dtype, and the versions of torch and transformers; ``key`` is a hash of it.
So another LLM, pooling, dtype or library version MISSES the cache (its own
file is made; the others stay for when one switches back): embeddings are
never reused across any of these. A file whose recorded identity differs from
the one its name promises, or whose row count differs from its texts, is
refused with an :class:`~slt_llm.errors.InputError` naming it.

:class:`TokenTextEmbedder` keeps the per-token states instead (the sentence
tokens' last hidden states, for ``vlp.similarity=fine``), stored flat as
float16 (:class:`TokenStates`) in a cache of its own,
``text_tok-<key>.safetensors`` (identity ``pooling: "tokens"``,
``storage: "float16"``): 2*H bytes per token.

The file is written through a unique temp file in the same folder, fsync'ed,
then renamed over the old one (``os.replace``): a crash at any point leaves
the previous cache or the new one, never a torn file (a stray
``.text_emb-*.tmp`` may remain after a SIGKILL; it is never read).
"""

from __future__ import annotations

import contextlib

import hashlib
import json
import os
import tempfile
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
    """Write ``data`` to ``path`` atomically: a unique temp file in the same
    folder (so concurrent writers never share one), fsync, ``os.replace``; the
    temp file is removed if anything fails before the rename completes."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def numeric_identity(llm_path: str, pooling: str, dtype: str) -> dict:
    """What determines the embedding values: the LLM (path + fingerprint),
    pooling, compute dtype, and the torch / transformers versions."""
    import transformers

    return {"llm_path": llm_path, "llm_hash": llm_fingerprint(llm_path), "pooling": pooling, "dtype": dtype,
            "torch": torch.__version__, "transformers": transformers.__version__}


@contextlib.contextmanager
def _whole_model():
    """Load a model whole in this process even when a ZeRO-3 run is active.

    Under ``accelerate``'s DeepSpeed ZeRO-3 plugin transformers builds every
    ``from_pretrained`` inside ``deepspeed.zero.Init``: parameters are partitioned
    over the ranks and every rank must take part in the build. The frozen LLM of
    the text embedder is one process's model (rank 0 fills the cache while the
    others wait), so it must not be partitioned: that collective build with rank 0
    alone hung stage 1 with a cold cache.
    """
    try:
        from transformers.integrations import deepspeed as hf_ds
    except ImportError:  # pragma: no cover - transformers is pinned
        yield
        return
    ref = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = ref


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
        from slt_llm.models.llm import resolve_llm_path

        self.llm_path = str(resolve_llm_path(llm_path).resolve())  # a hub id -> its local snapshot
        self.pooling = pooling
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = torch.device(device)
        self.trust_remote_code = trust_remote_code
        self.identity = self._make_identity()
        self.key = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:16]
        self._model = None
        self._tokenizer = None
        self._texts: list[str] = []
        self._row: dict[str, int] = {}
        self._emb: Optional[torch.Tensor] = None  # (N, H) float32
        self.num_computed = 0
        if self.cache_dir is not None:
            self._load_cache()

    # ------------------------------------------------------------------ cache
    _PREFIX = "text_emb"

    def _make_identity(self) -> dict:
        return numeric_identity(self.llm_path, self.pooling, self.dtype)

    @property
    def cache_path(self) -> Optional[Path]:
        """This identity's cache file (None without ``cache_dir``)."""
        return None if self.cache_dir is None else self.cache_dir / f"{self._PREFIX}-{self.key}.safetensors"

    def _load_cache(self) -> None:
        from safetensors import safe_open

        path = self.cache_path
        if not path.is_file():
            return  # a miss: another identity (LLM, pooling, dtype, versions) or nothing cached yet
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                emb = f.get_tensor("embeddings").float()
            ident = json.loads(meta["identity"])
            texts = json.loads(meta["texts"])
        except Exception as e:  # noqa: BLE001  (any unreadable file: one line)
            raise InputError(path, f"text-embedding cache is unreadable ({type(e).__name__}: {e}); delete it") from None
        if ident != self.identity:
            diff = [f"{k}: file has {ident.get(k)!r}, wanted {v!r}" for k, v in self.identity.items() if ident.get(k) != v]
            raise InputError(path, "text-embedding cache file does not hold the identity its name promises ("
                             + "; ".join(diff) + "); delete it")
        if emb.shape[0] != len(texts):
            raise InputError(path, f"text-embedding cache holds {emb.shape[0]} rows for {len(texts)} texts; delete it")
        self._texts, self._emb = list(texts), emb
        self._row = {t: i for i, t in enumerate(self._texts)}

    def _save_cache(self) -> None:
        from safetensors.torch import save

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        meta = {"format": "2", "identity": json.dumps(self.identity, sort_keys=True),
                "texts": json.dumps(self._texts, ensure_ascii=False)}
        # one file (embeddings + texts + identity), one rename: never a torn cache
        _atomic_write_bytes(self.cache_path, save({"embeddings": self._emb.contiguous()}, metadata=meta))

    # ------------------------------------------------------------------ model
    def _load_model(self) -> None:
        """Load the frozen LLM whole in this process (never ZeRO-3 partitioned, see ``_whole_model``)."""
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # AutoModel on a causal-LM folder reports the unused lm_head
        try:
            tok = AutoTokenizer.from_pretrained(self.llm_path, trust_remote_code=self.trust_remote_code)
            with _whole_model():
                model = AutoModel.from_pretrained(self.llm_path, dtype=_DTYPES[self.dtype], use_safetensors=True,
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
    def _hidden_batches(self, texts: Sequence[str]):
        """Runs the LLM over ``texts`` in length-sorted batches; yields ``(idx, hidden (b, L, H)
        float32 CPU, pool (b, L) bool)`` with ``pool`` the sentence tokens (padding and special
        tokens excluded; a sentence of special tokens only keeps them all)."""
        self._load_model()
        tok, model = self._tokenizer, self._model
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
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
            yield idx, hidden, pool

    @torch.no_grad()
    def _compute(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), H) float32; runs the LLM."""
        out: list[Optional[torch.Tensor]] = [None] * len(texts)
        for idx, hidden, pool in self._hidden_batches(texts):
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


# ------------------------------------------------------------------ per-token states
FP16_MAX = float(torch.finfo(torch.float16).max)


class TokenStates:
    """Per-token frozen-LLM states of U sentences, stored flat and compact.

    ``data`` (sum_u L_u, H) float16: the sentence tokens of sentence u are rows
    ``offsets[u]:offsets[u+1]`` (``offsets`` (U+1,) int64). Memory: 2 bytes x H per
    token (e.g. 13 tokens x 1536 dims = 40 KB a sentence), no padding.
    """

    def __init__(self, data: torch.Tensor, offsets: torch.Tensor):
        self.data, self.offsets = data, offsets.long()

    def __len__(self) -> int:
        return int(self.offsets.numel()) - 1

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def select(self, rows) -> "TokenStates":
        """The states of sentences ``rows`` (in that order)."""
        rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        parts = [self.data[self.offsets[r]:self.offsets[r + 1]] for r in rows.tolist()]
        lens = torch.tensor([p.shape[0] for p in parts], dtype=torch.long)
        data = torch.cat(parts) if parts else self.data[:0]
        return TokenStates(data, torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)]))

    def padded(self, rows=None, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (n, L_max, H), mask (n, L_max) bool)`` of sentences ``rows`` (all when None),
        zero-padded on the right; L_max is the longest of these sentences."""
        if rows is None:
            rows = torch.arange(len(self))
        rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        lens = self.lengths[rows]
        lmax = int(lens.max()) if rows.numel() else 0
        out = torch.zeros(rows.numel(), lmax, self.dim, dtype=dtype)
        for j, r in enumerate(rows.tolist()):
            o = int(self.offsets[r])
            out[j, :int(lens[j])] = self.data[o:o + int(lens[j])].to(dtype)
        mask = torch.arange(lmax)[None, :] < lens[:, None]
        return out, mask


class TokenTextEmbedder(TextEmbedder):
    """The frozen LLM's last hidden states PER SENTENCE TOKEN (padding and special tokens
    excluded, as for mean pooling), for the fine-grained similarity (``vlp.similarity=fine``).

    Same arguments, model loading and atomic cache as :class:`TextEmbedder`, but a cache of
    its own: ``text_tok-<key>.safetensors`` holding ``{"data": (S, H) float16, "offsets":
    (U+1,) int64}`` (see :class:`TokenStates`); the identity records ``pooling: "tokens"``
    and ``storage: "float16"``, so it never mixes with a pooled cache (another prefix and
    key). States are stored as float16 (clamped to its range, +-65504); the LLM runs in
    ``dtype``. ``embed(texts) -> TokenStates`` in the order of ``texts``.
    Memory: 2 bytes x H x (sentence tokens) per unique sentence, on disk and in memory.
    """

    _PREFIX = "text_tok"

    def __init__(self, llm_path, dtype: str = "float32", batch_size: int = 32, cache_dir=None,
                 device="cpu", trust_remote_code: bool = False):
        self._states: Optional[TokenStates] = None
        super().__init__(llm_path, pooling="mean", dtype=dtype, batch_size=batch_size, cache_dir=cache_dir,
                         device=device, trust_remote_code=trust_remote_code)

    def _make_identity(self) -> dict:
        ident = numeric_identity(self.llm_path, "tokens", self.dtype)
        ident["storage"] = "float16"
        return ident

    def _load_cache(self) -> None:
        from safetensors import safe_open

        path = self.cache_path
        if not path.is_file():
            return
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                data, offsets = f.get_tensor("data"), f.get_tensor("offsets")
            ident = json.loads(meta["identity"])
            texts = json.loads(meta["texts"])
        except Exception as e:  # noqa: BLE001
            raise InputError(path, f"token-state cache is unreadable ({type(e).__name__}: {e}); delete it") from None
        if ident != self.identity:
            diff = [f"{k}: file has {ident.get(k)!r}, wanted {v!r}" for k, v in self.identity.items() if ident.get(k) != v]
            raise InputError(path, "token-state cache file does not hold the identity its name promises ("
                             + "; ".join(diff) + "); delete it")
        if offsets.numel() != len(texts) + 1 or int(offsets[-1]) != data.shape[0]:
            raise InputError(path, f"token-state cache holds {offsets.numel() - 1} sentences / {data.shape[0]} "
                                   f"tokens for {len(texts)} texts; delete it")
        self._texts, self._states = list(texts), TokenStates(data, offsets)
        self._row = {t: i for i, t in enumerate(self._texts)}

    def _save_cache(self) -> None:
        from safetensors.torch import save

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        meta = {"format": "1", "identity": json.dumps(self.identity, sort_keys=True),
                "texts": json.dumps(self._texts, ensure_ascii=False)}
        blob = save({"data": self._states.data.contiguous(), "offsets": self._states.offsets.contiguous()},
                    metadata=meta)
        _atomic_write_bytes(self.cache_path, blob)

    @property
    def dim(self) -> Optional[int]:
        return None if self._states is None else self._states.dim

    @torch.no_grad()
    def _compute_tokens(self, texts: Sequence[str]) -> TokenStates:
        out: list[Optional[torch.Tensor]] = [None] * len(texts)
        for idx, hidden, pool in self._hidden_batches(texts):
            for j, i in enumerate(idx):
                out[i] = hidden[j][pool[j]].clamp(-FP16_MAX, FP16_MAX).to(torch.float16)
        self.num_computed += len(texts)
        lens = torch.tensor([o.shape[0] for o in out], dtype=torch.long)
        return TokenStates(torch.cat(out), torch.cat([torch.zeros(1, dtype=torch.long), lens.cumsum(0)]))

    def embed(self, texts: Iterable[str]) -> TokenStates:
        """Token states of ``texts`` in order (a :class:`TokenStates`, float16, CPU); the
        missing unique sentences are computed in one pass and appended to the cache."""
        texts = list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._row))
        if missing:
            new = self._compute_tokens(missing)
            if self._states is not None and new.dim != self._states.dim:
                raise InputError(self.cache_dir or self.llm_path, "cached token states have another width")
            base = len(self._texts)
            self._texts.extend(missing)
            self._row.update({t: base + i for i, t in enumerate(missing)})
            if self._states is None:
                self._states = new
            else:
                shift = self._states.offsets[-1]
                self._states = TokenStates(torch.cat([self._states.data, new.data]),
                                           torch.cat([self._states.offsets, new.offsets[1:] + shift]))
            if self.cache_dir is not None:
                self._save_cache()
        if self._states is None:
            return TokenStates(torch.zeros(0, 0, dtype=torch.float16), torch.zeros(1, dtype=torch.long))
        return self._states.select([self._row[t] for t in texts])
