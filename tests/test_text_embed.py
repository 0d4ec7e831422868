"""Frozen-LLM sentence embeddings: values vs a hand-computed reference, cache hit/miss by
identity (LLM, pooling, dtype, library versions), atomic writes."""

import os

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from slt_llm.errors import ConfigError, InputError
from slt_llm.models.text_embed import TextEmbedder, llm_fingerprint

SENTS = ["the weather is nice today", "tomorrow it will rain", "the weather is nice today", "rain"]


def _reference(llm, text, pooling):
    tok = AutoTokenizer.from_pretrained(llm)
    model = AutoModel.from_pretrained(llm).eval()
    enc = tok(text, return_tensors="pt", return_special_tokens_mask=True)
    keep = ~enc.pop("special_tokens_mask")[0].bool()
    with torch.no_grad():
        h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[0]
    return h[keep].mean(0) if pooling == "mean" else h[keep][-1]


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_values_match_unbatched_reference(tiny_llama, pooling):
    e = TextEmbedder(tiny_llama, pooling=pooling, batch_size=3)  # padding inside batches
    out = e.embed(SENTS)
    assert out.shape[0] == 4 and out.dtype == torch.float32
    for i, s in enumerate(SENTS):
        torch.testing.assert_close(out[i], _reference(tiny_llama, s, pooling), atol=1e-5, rtol=1e-4)
    assert e.num_computed == 3  # the repeated sentence is computed once


def test_mean_and_last_differ(tiny_qwen2):
    m = TextEmbedder(tiny_qwen2, pooling="mean").embed(SENTS[:2])
    l = TextEmbedder(tiny_qwen2, pooling="last").embed(SENTS[:2])
    assert not torch.allclose(m, l)


def test_cache_hit_miss_and_identity(tmp_path, tiny_llama, tiny_qwen2):
    cache = tmp_path / "cache"
    a = TextEmbedder(tiny_llama, cache_dir=cache)
    first = a.embed(SENTS)
    assert a.num_computed == 3 and [p.name for p in cache.iterdir()] == [a.cache_path.name]

    b = TextEmbedder(tiny_llama, cache_dir=cache)  # full hit: the LLM is never loaded
    torch.testing.assert_close(b.embed(SENTS), first, rtol=0, atol=0)
    assert b.num_computed == 0 and b._model is None

    c = TextEmbedder(tiny_llama, cache_dir=cache)  # partial hit: only the new sentence is computed
    mixed = c.embed(["a new sentence", SENTS[1]])
    assert c.num_computed == 1
    torch.testing.assert_close(mixed[1], first[1], rtol=0, atol=0)
    assert TextEmbedder(tiny_llama, cache_dir=cache).embed(["a new sentence"]).shape[0] == 1

    # another pooling or LLM: a miss (own file), never the llama/mean rows
    for other in (TextEmbedder(tiny_llama, pooling="last", cache_dir=cache), TextEmbedder(tiny_qwen2, cache_dir=cache)):
        assert other.key != a.key
        out = other.embed(SENTS[:2])
        assert other.num_computed == 2 and not torch.allclose(out, first[:2])
    assert len(list(cache.iterdir())) == 3
    assert TextEmbedder(tiny_llama, cache_dir=cache).embed(SENTS[:2]).equal(first[:2])  # switching back: a hit


def test_other_dtype_or_library_version_misses(tmp_path, tiny_llama, monkeypatch):
    """The key holds the compute dtype and the torch/transformers versions:
    a bfloat16 embedder does not read float32 rows (its numbers differ), nor
    does one under another transformers version."""
    import transformers

    cache = tmp_path / "cache"
    f32 = TextEmbedder(tiny_llama, cache_dir=cache)
    ref = f32.embed(SENTS[:2])
    bf = TextEmbedder(tiny_llama, dtype="bfloat16", cache_dir=cache)
    assert bf.identity["dtype"] == "bfloat16" and bf.key != f32.key
    got = bf.embed(SENTS[:2])
    assert bf.num_computed == 2 and not torch.equal(got, ref)  # computed in bf16, not read back
    assert TextEmbedder(tiny_llama, dtype="bfloat16", cache_dir=cache).embed(SENTS[:2]).equal(got)
    monkeypatch.setattr(transformers, "__version__", "0.0.0-other")
    newer = TextEmbedder(tiny_llama, cache_dir=cache)
    assert newer.identity["transformers"] == "0.0.0-other" and newer.key != f32.key
    assert newer._emb is None  # nothing cached for this version
    # a file that does not hold the identity its name promises is refused
    f32.cache_path.rename(newer.cache_path)
    with pytest.raises(InputError, match="transformers: file has"):
        TextEmbedder(tiny_llama, cache_dir=cache)


def test_crash_before_rename_leaves_the_old_cache(tmp_path, tiny_llama, monkeypatch):
    """The cache is written to a unique temp file and renamed: a failure at the
    rename (a crash, simulated by os.replace raising) leaves the previous cache
    intact and readable and no temp file behind."""
    import slt_llm.models.text_embed as te

    cache = tmp_path / "cache"
    a = TextEmbedder(tiny_llama, cache_dir=cache)
    first = a.embed(SENTS[:2])
    before = a.cache_path.read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash between write and rename")

    monkeypatch.setattr(te.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        TextEmbedder(tiny_llama, cache_dir=cache).embed(["a sentence added when the machine died"])
    monkeypatch.undo()
    assert [p.name for p in cache.iterdir()] == [a.cache_path.name] and a.cache_path.read_bytes() == before
    b = TextEmbedder(tiny_llama, cache_dir=cache)
    assert b.embed(SENTS[:2]).equal(first) and b.num_computed == 0
    # a torn file (e.g. written in place by something else) is one line, not a traceback deep in safetensors
    a.cache_path.write_bytes(before[: len(before) // 2])
    with pytest.raises(InputError, match="unreadable"):
        TextEmbedder(tiny_llama, cache_dir=cache)


def test_changed_llm_directory_is_not_reused(tmp_path, tiny_llama):
    import shutil

    llm = tmp_path / "llm"
    shutil.copytree(tiny_llama, llm)
    cache = tmp_path / "cache"
    TextEmbedder(llm, cache_dir=cache).embed(SENTS[:1])
    before = llm_fingerprint(llm)
    w = next(p for p in llm.iterdir() if p.suffix == ".safetensors")
    st = w.stat()
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rebuilt weights
    assert llm_fingerprint(llm) != before
    assert TextEmbedder(llm, cache_dir=cache)._emb is None  # a miss: recomputed, not reused


def test_bad_arguments(tmp_path, tiny_llama):
    with pytest.raises(ConfigError, match="pooling"):
        TextEmbedder(tiny_llama, pooling="max")
    with pytest.raises(InputError, match="config.json"):
        TextEmbedder(tmp_path)


def test_token_states_cache_round_trip(tmp_path, tiny_llama):
    """Per-token states (vlp.similarity=fine): the sentence tokens' last hidden states as
    float16, in a cache of their own (never the pooled file), read back bit for bit, equal to
    a fresh computation and to the hand-computed reference."""
    from slt_llm.models.text_embed import TokenTextEmbedder

    cache = tmp_path / "cache"
    pooled = TextEmbedder(tiny_llama, cache_dir=cache)
    pooled_emb = pooled.embed(SENTS)
    a = TokenTextEmbedder(tiny_llama, cache_dir=cache, batch_size=3)
    st = a.embed(SENTS)
    assert a.key != pooled.key and a.cache_path.name.startswith("text_tok-")
    assert sorted(p.name for p in cache.iterdir()) == sorted([a.cache_path.name, pooled.cache_path.name])
    assert a.identity["pooling"] == "tokens" and a.identity["storage"] == "float16"
    assert st.data.dtype == torch.float16 and len(st) == 4 and a.num_computed == 3
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModel.from_pretrained(tiny_llama).eval()
    x, mask = st.padded()
    for i, s in enumerate(SENTS):
        enc = tok(s, return_tensors="pt", return_special_tokens_mask=True)
        keep = ~enc.pop("special_tokens_mask")[0].bool()
        with torch.no_grad():
            h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[0][keep]
        assert int(mask[i].sum()) == h.shape[0] == int(st.lengths[i])
        torch.testing.assert_close(x[i, :h.shape[0]], h, atol=2e-3, rtol=2e-3)  # float16 storage
        assert not x[i, h.shape[0]:].any()
        # their mean is the pooled (mean) embedding
        torch.testing.assert_close(x[i, :h.shape[0]].mean(0), pooled_emb[i], atol=2e-3, rtol=2e-3)
    b = TokenTextEmbedder(tiny_llama, cache_dir=cache)  # a hit: the LLM is never loaded
    again = b.embed(SENTS)
    assert b.num_computed == 0 and b._model is None
    assert again.data.equal(st.data) and again.offsets.equal(st.offsets)
    fresh = TokenTextEmbedder(tiny_llama, batch_size=3).embed(SENTS)  # no cache: recomputed
    assert fresh.data.equal(st.data) and fresh.offsets.equal(st.offsets)
    sub = b.embed([SENTS[1], "rain"])  # order and selection
    assert sub.padded()[0][0, :int(st.lengths[1])].equal(x[1, :int(st.lengths[1])])
    # the pooled cache was not touched
    p2 = TextEmbedder(tiny_llama, cache_dir=cache)
    assert p2.embed(SENTS).equal(pooled_emb) and p2.num_computed == 0
    # a file whose identity differs from its name is refused
    bf = TokenTextEmbedder(tiny_llama, dtype="bfloat16")  # no cache: only its key / file name
    a.cache_path.rename(cache / f"text_tok-{bf.key}.safetensors")
    with pytest.raises(InputError, match="token-state cache file does not hold"):
        TokenTextEmbedder(tiny_llama, dtype="bfloat16", cache_dir=cache)
