"""build_tiny_llm / make-tiny-llm: offline HF folders, three families, pre-training learns the grammar, no dev/test leak."""

from __future__ import annotations

import json

import pytest
import torch

from slt_llm.cli import main
from slt_llm.models.tiny_llm import DEFAULT_TEXTS, _encode, build_tiny_llm, corpus_texts, perplexity


def text_corpus(tmp_path, n_train=60, n_dev=10, n_test=10):
    """The synthetic corpus' text side only (manifests + corpus.json), no videos: fast."""
    from slt_llm.synth.toy import build_grammar, make_sentences, realize

    g = build_grammar()
    sents = make_sentences(g, n_train, n_dev, n_test, 0, 0.3)
    d = tmp_path / "corpus"
    d.mkdir()
    texts = {}
    for split in ("train", "dev", "test"):
        texts[split] = [realize(g, slots) for slots, _ in sents[split]]
        (d / f"{split}.jsonl").write_text("".join(
            json.dumps({"id": f"{split}_{i}", "video": f"videos/{split}_{i}.mp4", "text": t}) + "\n"
            for i, t in enumerate(texts[split])))
    (d / "corpus.json").write_text(json.dumps({"grammar": g, "eval_sentences": texts["dev"] + texts["test"]}))
    return d, texts


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen2"])
def test_fixture_folders_load_offline(fixture, request):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = request.getfixturevalue(fixture)
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == fixture.split("_")[1]
    assert (tok.eos_token, tok.pad_token, tok.unk_token) == ("</s>", "<pad>", "<unk>")
    assert model.config.eos_token_id == tok.eos_token_id and len(tok) == model.config.vocab_size
    for s in DEFAULT_TEXTS[:5] + ["zebras juggle quietly, 42 times!"]:  # byte-level: any text round-trips
        ids = tok(s, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == s
    with_special = tok("hello")["input_ids"]
    assert (with_special[0] == tok.bos_token_id) == (fixture == "tiny_llama")  # Qwen2 adds no bos
    assert model(input_ids=torch.tensor([with_special])).logits.shape[-1] == len(tok)


def test_make_tiny_llm_learns_grammar_without_dev_test(tmp_path):
    corpus, texts = text_corpus(tmp_path)
    train, held = corpus_texts(corpus, extra=300, seed=0)
    evals = set(texts["dev"] + texts["test"])
    assert not evals & set(train) and not evals & set(held)
    assert set(texts["train"]) <= set(train) and len(train) > len(texts["train"]) and held
    out = tmp_path / "llm"
    assert main(["make-tiny-llm", "--corpus", str(corpus), "--out", str(out), "--family", "qwen2",
                 "--steps", "60", "--extra", "300", "--hidden", "64"]) == 0
    stats = json.loads((out / "tiny_llm.json").read_text())
    assert stats["steps"] == 60 and stats["heldout_sentences"] == len(held)
    # untrained ppl ~ vocab size; the grammar is learned: held-out ppl far below
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    ppl = perplexity(model, _encode(tok, held), tok.pad_token_id)  # <s> sentence </s>
    assert ppl == pytest.approx(stats["heldout_ppl"], rel=1e-3)
    assert ppl < 0.1 * stats["vocab_size"]
    # dev sentences are words of the grammar, so the model assigns them a low ppl too
    assert perplexity(model, _encode(tok, texts["dev"]), tok.pad_token_id) < 0.1 * stats["vocab_size"]


def test_bad_corpus_and_family(tmp_path):
    from slt_llm.errors import ConfigError

    assert main(["make-tiny-llm", "--corpus", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.jsonl").write_text('{"id": "a", "video": "a.mp4"}\n')
    assert main(["make-tiny-llm", "--corpus", str(tmp_path / "c"), "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(ConfigError, match="unknown family"):
        build_tiny_llm(tmp_path / "o", family="gpt2")
