"""load_llm: families, LoRA / QLoRA wiring, gradient checkpointing, bad LLM directories."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from slt_llm.config import LLMConfig
from slt_llm.errors import ConfigError
from slt_llm.models.llm import adapter_metadata, load_llm


def _lm_batch(tok, texts):
    enc = tok(texts, return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc["input_ids"], enc["attention_mask"], labels


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen2"])
def test_lora_only_adapters_trainable(fixture, request):
    path = request.getfixturevalue(fixture)
    model, tok = load_llm(LLMConfig(path=str(path), lora_targets=["q_proj", "v_proj"]))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "v_proj"}
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    ids, mask, labels = _lm_batch(tok, ["the cat sleeps near the window", "thank you"])
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_A" in n)
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


def test_gemma_family(tmp_path):
    from slt_llm.models.tiny_llm import build_tiny_llm

    build_tiny_llm(tmp_path / "g", family="gemma", steps=0, hidden=64, layers=1, progress=False)
    model, tok = load_llm(LLMConfig(path=str(tmp_path / "g")), for_training=False)
    assert type(model.base_model).__name__ == "GemmaForCausalLM" or "Gemma" in type(model).__name__
    ids, mask, _ = _lm_batch(tok, ["good morning"])
    assert model(input_ids=ids, attention_mask=mask).logits.shape[-1] == len(tok)


def test_qlora_cpu_linear4bit_grads_and_loss_goes_down(tiny_llama):
    import bitsandbytes as bnb

    cfg = LLMConfig(path=str(tiny_llama), load_in_4bit=True, bnb_4bit_compute_dtype="float32",
                    bnb_4bit_quant_storage="uint8", lora_targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"])
    model, tok = load_llm(cfg)
    base = model.base_model.model
    lin4 = [n for n, m in base.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    # every projection of every layer is 4-bit (7 per layer), lm_head is not
    assert len(lin4) == 7 * base.config.num_hidden_layers
    assert not isinstance(base.lm_head, bnb.nn.Linear4bit)
    assert base.model.layers[0].self_attn.q_proj.base_layer.weight.quant_state.quant_type == "nf4"
    assert base.model.layers[0].self_attn.q_proj.base_layer.weight.quant_state.nested  # double quantization
    # deliberate dtypes: norms fp32, frozen embeddings at the compute dtype, adapters fp32
    assert base.model.norm.weight.dtype == torch.float32
    assert base.model.embed_tokens.weight.dtype == torch.float32  # compute dtype here
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ids, mask, labels = _lm_batch(tok, ["the man buys bread in the morning", "we eat fish and rice"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert adapter_metadata(cfg)["adapter"] == "qlora"


def test_qlora_bf16_keeps_embeddings_bf16_norms_fp32(tiny_qwen2):
    model, tok = load_llm(LLMConfig(path=str(tiny_qwen2), load_in_4bit=True, gradient_checkpointing=True))
    base = model.base_model.model
    assert base.model.embed_tokens.weight.dtype == torch.bfloat16
    assert base.lm_head.weight.dtype == torch.bfloat16
    assert base.model.norm.weight.dtype == torch.float32
    assert base.is_gradient_checkpointing
    model.train()
    emb = base.model.embed_tokens(torch.tensor([[5, 6, 7, 8]])).detach().float().requires_grad_(True)  # like projector output
    out = model(inputs_embeds=emb.to(torch.bfloat16), labels=torch.tensor([[5, 6, 7, 8]]))
    out.loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_gradient_checkpointing_same_grads(tiny_llama):
    grads = []
    for gc in (False, True):
        torch.manual_seed(0)
        model, tok = load_llm(LLMConfig(path=str(tiny_llama), gradient_checkpointing=gc, lora_dropout=0.0))
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.1)
        model.train()
        ids, mask, labels = _lm_batch(tok, ["the sun is warm in the south"])
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert model.base_model.model.is_gradient_checkpointing
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-5, rtol=1e-4)


def test_bad_llm_dirs(tmp_path, tiny_llama):
    from transformers import BertConfig

    with pytest.raises(ConfigError, match="not set"):
        load_llm(LLMConfig(path=None))
    with pytest.raises(ConfigError, match="nope: LLM directory not found"):
        load_llm(LLMConfig(path=str(tmp_path / "nope")))
    bert = tmp_path / "bert"
    cfg = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    cfg.architectures = ["BertForMaskedLM"]
    cfg.save_pretrained(bert)
    with pytest.raises(ConfigError, match="bert: not a decoder-only causal LM"):
        load_llm(LLMConfig(path=str(bert)))
    # remote code needs an explicit opt-in
    remote = tmp_path / "remote"
    shutil.copytree(tiny_llama, remote)
    c = json.loads((remote / "config.json").read_text())
    c["auto_map"] = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    (remote / "config.json").write_text(json.dumps(c))
    with pytest.raises(ConfigError, match="trust_remote_code"):
        load_llm(LLMConfig(path=str(remote)))
    # a tokenizer without eos
    noeos = tmp_path / "noeos"
    shutil.copytree(tiny_llama, noeos)
    tc = json.loads((noeos / "tokenizer_config.json").read_text())
    tc["eos_token"] = None
    (noeos / "tokenizer_config.json").write_text(json.dumps(tc))
    with pytest.raises(ConfigError, match="noeos: the tokenizer has no eos token"):
        load_llm(LLMConfig(path=str(noeos)))
    with pytest.raises(ConfigError, match=r"lora_targets: \['query'\]"):
        load_llm(LLMConfig(path=str(tiny_llama), lora_targets=["query"]))


def test_pad_falls_back_to_eos(tmp_path, tiny_llama, capsys):
    nopad = tmp_path / "nopad"
    shutil.copytree(tiny_llama, nopad)
    tc = json.loads((nopad / "tokenizer_config.json").read_text())
    tc["pad_token"] = None
    (nopad / "tokenizer_config.json").write_text(json.dumps(tc))
    _, tok = load_llm(LLMConfig(path=str(nopad)), for_training=False)
    assert tok.pad_token_id == tok.eos_token_id
    assert "no pad token" in capsys.readouterr().out


def _fake_hub_cache(root, repo: str, src) -> Path:
    """A Hugging Face cache holding ``repo`` (as huggingface_hub lays it out after a download):
    models--org--name/refs/main -> a commit, snapshots/<commit>/ the files."""
    import shutil
    from pathlib import Path

    sha = "0123456789abcdef0123456789abcdef01234567"
    base = Path(root) / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(sha)
    snap = base / "snapshots" / sha
    shutil.copytree(src, snap)
    return snap


def test_hub_ids_resolve_through_the_users_cache_and_an_offline_miss_says_so(tmp_path, tiny_llama, monkeypatch):
    """llm.path may be a hub id: here served offline from a local Hugging Face cache (the same
    weights as the folder give the same logits); an id missing from the cache while the user's
    environment is offline is one line that says exactly that; offline is the user's setting."""
    import torch

    from slt_llm.cli import main
    from slt_llm.models.llm import resolve_llm_path
    from slt_llm.models.text_embed import TextEmbedder

    hub = tmp_path / "hub"
    snap = _fake_hub_cache(hub, "acme/tiny-llama", tiny_llama)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert resolve_llm_path("acme/tiny-llama") == snap
    m_hub, tok = load_llm(LLMConfig(path="acme/tiny-llama", use_lora=False), for_training=False)
    m_dir, _ = load_llm(LLMConfig(path=str(tiny_llama), use_lora=False), for_training=False)
    ids = tok("the weather tomorrow", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(m_hub(ids).logits, m_dir(ids).logits)
    e_hub = TextEmbedder("acme/tiny-llama").embed(["rain in the north"])
    assert torch.equal(e_hub, TextEmbedder(tiny_llama).embed(["rain in the north"]))
    with pytest.raises(ConfigError) as e:
        resolve_llm_path("acme/absent-model")
    msg = str(e.value)
    assert "acme/absent-model" in msg and "HF_HUB_OFFLINE=1" in msg and "not in the local cache" in msg
    assert "\n" not in msg
    # a path that is neither a folder nor a hub id
    with pytest.raises(ConfigError, match="LLM directory not found"):
        resolve_llm_path(str(tmp_path / "no" / "such" / "dir"))
    # the CLI never switches the hub off by itself
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert main(["eval", "--hyp", str(tmp_path / "h.jsonl"), "--ref", str(tmp_path / "r.jsonl")]) == 2
    import os

    assert "HF_HUB_OFFLINE" not in os.environ
