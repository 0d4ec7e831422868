"""Frozen-LLM sentence embeddings: values vs a hand-computed reference, cache hit/miss, rejection."""

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


def test_cache_hit_miss_and_reject(tmp_path, tiny_llama, tiny_qwen2):
    cache = tmp_path / "cache"
    a = TextEmbedder(tiny_llama, cache_dir=cache)
    first = a.embed(SENTS)
    assert a.num_computed == 3 and (cache / "index.json").is_file()

    b = TextEmbedder(tiny_llama, cache_dir=cache)  # full hit: the LLM is never loaded
    torch.testing.assert_close(b.embed(SENTS), first, rtol=0, atol=0)
    assert b.num_computed == 0 and b._model is None

    c = TextEmbedder(tiny_llama, cache_dir=cache)  # partial hit: only the new sentence is computed
    mixed = c.embed(["a new sentence", SENTS[1]])
    assert c.num_computed == 1
    torch.testing.assert_close(mixed[1], first[1], rtol=0, atol=0)
    assert TextEmbedder(tiny_llama, cache_dir=cache).embed(["a new sentence"]).shape[0] == 1

    with pytest.raises(InputError, match="pooling"):
        TextEmbedder(tiny_llama, pooling="last", cache_dir=cache)
    with pytest.raises(InputError, match="another LLM"):
        TextEmbedder(tiny_qwen2, cache_dir=cache)


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
    with pytest.raises(InputError, match="llm_hash"):
        TextEmbedder(llm, cache_dir=cache)


def test_bad_arguments(tmp_path, tiny_llama):
    with pytest.raises(ConfigError, match="pooling"):
        TextEmbedder(tiny_llama, pooling="max")
    with pytest.raises(InputError, match="config.json"):
        TextEmbedder(tmp_path)
