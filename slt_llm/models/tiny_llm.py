"""``slt-llm make-tiny-llm``: a tiny stand-in LLM that already models the target language.

1. A byte-level BPE tokenizer (``tokenizers``) trained on the text, special
   tokens ``<pad> <s> </s> <unk>``, saved as ``PreTrainedTokenizerFast`` so
   ``AutoTokenizer.from_pretrained(out)`` works offline. Llama/Gemma prepend
   ``<s>``; Qwen2 (like the real one) does not.
2. A tiny causal LM config of the family (llama | qwen2 | gemma; default
   hidden 128, 2 layers, 4 heads, 2 KV heads), random init from ``seed``.
3. Pre-training for ``steps`` AdamW steps on the spoken-language side only:
   the training manifest's sentences plus more sentences from the same
   language (``slt_llm.synth.profiles.extra_sentences``; it never returns dev/test
   sentences). Dev/test manifests are never read. 10% of the EXTRA sentences
   (never training sentences) are held out to report held-out perplexity.
4. ``save_pretrained`` (safetensors) + ``tiny_llm.json`` (family, steps,
   train/held-out perplexity).

Cost (measured on the synthetic corpus, 24 train + 4000 extra sentences,
llama, default hidden 128 / 2 layers: 515 k params, vocab 472): the default
600 steps take ~35 s wall on the shared 2-core machine; train ppl 4.24,
held-out ppl 4.38 (an untrained model is ~vocab size). 1500 steps overfit
slightly (held-out 4.55), so 600 is the default.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Optional

import torch

from slt_llm.errors import ConfigError, InputError

SPECIALS = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>"}

# Used for the tokenizer when no text is given (test fixtures: fast, deterministic).
DEFAULT_TEXTS = [
    "the man buys bread in the morning", "a woman reads the book at home", "my friend drives to the city today",
    "the weather is cold and rainy tomorrow", "we eat fish and rice in the evening", "the child plays with a red ball",
    "you drink coffee every day", "they visit the doctor next week", "the teacher writes a letter",
    "i see the big dog in the park", "the sun is warm in the south", "it will snow in the north tonight",
    "he likes green apples", "she goes to school by train", "our family cooks soup on sunday",
    "the cat sleeps near the window", "strong wind from the west", "rain in the east on monday",
    "good morning how are you", "thank you very much", "where is the station", "please open the door",
    "one two three four five six seven eight nine ten", "yes no maybe later now again",
]


def train_tokenizer(texts: list, vocab_size: int = 600, *, add_bos: bool = True):
    """Byte-level BPE -> ``PreTrainedTokenizerFast`` with pad/bos/eos/unk."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIALS["unk"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=1, show_progress=False,
        special_tokens=[SPECIALS["pad"], SPECIALS["bos"], SPECIALS["eos"], SPECIALS["unk"]],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([t for t in texts if t], trainer=trainer)
    if add_bos:
        bos = SPECIALS["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIALS["bos"], eos_token=SPECIALS["eos"],
        pad_token=SPECIALS["pad"], unk_token=SPECIALS["unk"], clean_up_tokenization_spaces=False,
    )


def tiny_config(family: str, tokenizer, *, hidden: int = 128, layers: int = 2, heads: int = 4,
                kv_heads: int = 2, intermediate: Optional[int] = None, max_positions: int = 1024,
                init_std: float = 0.1):
    """A tiny HF config of the family; ids of the special tokens from ``tokenizer``.

    ``init_std`` 0.1 (not HF's 0.02): with hidden 128 and a frozen random
    lm_head, std 0.02 caps every logit at ~hidden * 0.02^2 * sqrt(hidden)... ~2.6, so a
    perfectly steered residual could not push the loss of an UNTRAINED tiny
    model (the fast test fixtures) much below ~3; 0.1 (about 1/sqrt(hidden))
    lets LoRA + projector overfit a few clips."""
    import transformers

    common = dict(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, intermediate_size=intermediate or -(-int(hidden * 8 / 3) // 64) * 64,  # multiple of 64: bnb CPU 4-bit kernels need N % 32 == 0
        max_position_embeddings=max_positions, initializer_range=init_std, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if family == "llama":
        cfg = transformers.LlamaConfig(tie_word_embeddings=False, **common)
        cfg.architectures = ["LlamaForCausalLM"]
    elif family == "qwen2":
        cfg = transformers.Qwen2Config(tie_word_embeddings=True, **common)
        cfg.architectures = ["Qwen2ForCausalLM"]
    elif family == "gemma":
        cfg = transformers.GemmaConfig(head_dim=hidden // heads, tie_word_embeddings=True, **common)
        cfg.architectures = ["GemmaForCausalLM"]
    else:
        raise ConfigError(f"make-tiny-llm: unknown family {family!r} (choose llama, qwen2 or gemma)")
    return cfg


def _encode(tokenizer, texts: list) -> list:
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return [bos + x + [tokenizer.eos_token_id] for x in ids]


def _batch(seqs: list, pad_id: int):
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), L, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


@torch.no_grad()
def perplexity(model, seqs: list, pad_id: int, batch_size: int = 64) -> float:
    """exp(mean token NLL) over ``seqs`` (lists of ids incl. bos/eos)."""
    model.eval()
    nll, n = 0.0, 0
    for i in range(0, len(seqs), batch_size):
        ids, mask, labels = _batch(seqs[i : i + batch_size], pad_id)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        tgt = labels[:, 1:]
        nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                 ignore_index=-100, reduction="sum").item()
        n += int((tgt != -100).sum())
    return math.exp(nll / max(n, 1))


def pretrain(model, tokenizer, texts: list, heldout: list, *, steps: int, seed: int = 0, batch_size: int = 32,
             lr: float = 3e-3, progress: bool = True) -> dict:
    """AdamW + linear warmup/cosine for ``steps`` steps on ``texts`` (causal LM loss)."""

    seqs = _encode(tokenizer, texts)
    held = _encode(tokenizer, heldout) if heldout else []
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))) * 0.9 + 0.1)
    )
    model.train()
    # tiny matmuls: one intra-op thread is as fast on an idle machine and
    # ~10x faster on a busy one (thread oversubscription); restored below
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pretrain_loop(model, tokenizer, seqs, held, opt, sched, rng, steps, batch_size, progress)
    finally:
        torch.set_num_threads(threads)


def _pretrain_loop(model, tokenizer, seqs, held, opt, sched, rng, steps, batch_size, progress) -> dict:
    from slt_llm.progress import progress_bar

    order: list = []
    loss_ema = None
    bar = progress_bar(range(steps), desc="make-tiny-llm", enabled=progress)
    for _ in bar:
        if len(order) < batch_size:
            more = list(range(len(seqs)))
            rng.shuffle(more)
            order += more
        idx, order = order[:batch_size], order[batch_size:]
        ids, mask, labels = _batch([seqs[i] for i in idx], tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        bar.set_postfix(loss=f"{loss_ema:.3f}")
    out = {"final_loss": loss_ema, "train_ppl": perplexity(model, seqs[:512], tokenizer.pad_token_id)}
    if held:
        out["heldout_ppl"] = perplexity(model, held, tokenizer.pad_token_id)
    model.eval()
    return out


def build_tiny_llm(out, *, family: str = "llama", texts: Optional[list] = None, steps: int = 0, seed: int = 0,
                   hidden: int = 128, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                   intermediate: Optional[int] = None, vocab_size: int = 600, heldout: Optional[list] = None,
                   batch_size: int = 32, lr: float = 3e-3, progress: bool = True) -> dict:
    """Build (and optionally pre-train) a tiny causal LM + tokenizer in ``out``.

    ``texts=None`` uses a small fixed English list for the tokenizer (fast,
    for tests). ``steps=0`` leaves the random init. Returns the stats written
    to ``out/tiny_llm.json``."""
    from transformers import AutoModelForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    texts = list(texts) if texts else list(DEFAULT_TEXTS)
    tokenizer = train_tokenizer(texts + list(heldout or []), vocab_size=vocab_size, add_bos=family != "qwen2")
    cfg = tiny_config(family, tokenizer, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                      intermediate=intermediate)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    stats = {"family": family, "steps": steps, "seed": seed, "vocab_size": len(tokenizer),
             "params": sum(p.numel() for p in model.parameters()), "train_sentences": len(texts),
             "heldout_sentences": len(heldout or [])}
    if steps > 0:
        stats.update(pretrain(model, tokenizer, texts, list(heldout or []), steps=steps, seed=seed,
                              batch_size=batch_size, lr=lr, progress=progress))
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / "tiny_llm.json").write_text(json.dumps(stats, indent=2))
    from slt_llm.models.model_card import follow_umask

    follow_umask(out)  # safetensors writes 0600 through a temp file; the folder reads like any other
    return stats


def read_texts(manifest) -> list:
    """The ``text`` field of every line of a JSONL manifest (InputError on a bad line)."""
    from slt_llm.data.manifest import jsonl_objects

    texts = []
    for i, rec in jsonl_objects(manifest, "manifest not found"):
        if not isinstance(rec.get("text"), str):
            raise InputError(manifest, f"line {i}: no 'text' string")
        texts.append(rec["text"])
    return texts


def corpus_texts(corpus, *, extra: int = 4000, seed: int = 0) -> tuple[list, list]:
    """(training texts, held-out texts) from a corpus dir: ``train.jsonl``
    sentences + extra grammar sentences (synthetic corpora only); 10% of the
    extra sentences are held out. Dev/test manifests are never read."""
    corpus = Path(corpus)
    train = read_texts(corpus / "train.jsonl")
    more: list = []
    if extra > 0 and (corpus / "corpus.json").is_file():  # synthetic corpora only
        try:
            from slt_llm.synth.profiles import extra_sentences
        except ImportError:
            extra_sentences = None
        if extra_sentences is not None:
            more = list(extra_sentences(corpus, extra, seed))
    n_held = len(more) // 10
    return train + more[n_held:], more[:n_held]


def make_tiny_llm(corpus, out, *, family: str = "llama", steps: int = 600, extra: int = 4000, hidden: int = 128,
                  layers: int = 2, seed: int = 0) -> str:
    """``slt-llm make-tiny-llm``: the stand-in LLM of a corpus folder (its ``train.jsonl``
    sentences + ``extra`` grammar sentences, :func:`corpus_texts`) built and pre-trained into
    ``out`` (:func:`build_tiny_llm`). Returns the one-line summary the command prints."""
    texts, held = corpus_texts(corpus, extra=extra, seed=seed)
    stats = build_tiny_llm(out, family=family, texts=texts, heldout=held, steps=steps,
                           seed=seed, hidden=hidden, layers=layers)
    msg = f"make-tiny-llm: {family} {stats['params']:,} params, vocab {stats['vocab_size']}, {len(texts)} sentences"
    if "final_loss" in stats:
        msg += f"; final LM loss {stats['final_loss']:.3f}, train ppl {stats['train_ppl']:.2f}"
        if "heldout_ppl" in stats:
            msg += f", held-out ppl {stats['heldout_ppl']:.2f}"
    return msg + f" -> {out}"
