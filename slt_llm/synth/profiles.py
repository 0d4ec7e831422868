"""Corpus profiles: what ``slt-llm synth --profile NAME`` makes.

``toy``: the small grammar of :mod:`slt_llm.synth.toy` (83 word types, 3-7 signs a sentence, 4
signers); fast, for unit tests and the pair-selection unit checks.

``phoenix``: English weather forecasts (:mod:`slt_llm.synth.weather`) at RWTH-PHOENIX-Weather
2014T's split sizes (7,096 / 519 / 642), with its 9 signers and their very unequal train shares,
its clip durations, and its vocabulary, sentence-length, near-neighbour and paraphrase statistics
(:mod:`slt_llm.synth.stats` prints them beside the published figures). Frozen: the generator and
:data:`PHOENIX_SEED` do not change once an experiment has used them; :data:`PHOENIX_TEXT_HASH` is
the hash ``synth`` prints for that seed, and a test checks it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

PROFILES = ("toy", "phoenix")

PHOENIX_SPLITS = {"train": 7096, "dev": 519, "test": 642}
# train sentences per signer, PHOENIX-2014T (computed from the annotation files)
PHOENIX_TRAIN_SIGNERS = [1862, 1629, 1056, 848, 768, 582, 233, 83, 35]
PHOENIX_SEED = 2014
PHOENIX_TEXT_HASH = "1615d7719f41e48b2fc823f07994ceded63d9876bb7d6ca055c631e2b81d7e67"  # frozen 2026-12-04 (docs/synth.md)
P_PARAPHRASE_TRAIN = 0.03  # a train sentence re-says an earlier train meaning in other words
P_PARAPHRASE_EVAL = 0.02  # a dev/test sentence re-says a train meaning
P_SAME_SIGNS = 0.6  # a paraphrase is signed with the same sign-level choices
# dev/test sentences are shorter in PHOENIX-2014T (13.14 and 12.17 words against 13.96): extra
# clauses per sentence (Poisson mean) per split, set to give those lengths
CLAUSES_MEAN = {"train": 0.7, "dev": 0.62, "test": 0.5}


def signer_counts(n: int, split: str) -> list:
    """Sentences per signer (signer0..8) for a split of ``n``: PHOENIX's train counts exactly
    when ``split == "train"`` and ``n == 7096``, else PHOENIX's train shares scaled to ``n``
    (largest remainder, at least one each when n >= 9)."""
    if split == "train" and n == sum(PHOENIX_TRAIN_SIGNERS):
        return list(PHOENIX_TRAIN_SIGNERS)
    shares = np.array(PHOENIX_TRAIN_SIGNERS, float) / sum(PHOENIX_TRAIN_SIGNERS)
    k = len(shares)
    base = np.full(k, 1 if n >= k else 0)
    rest = n - int(base.sum())
    raw = shares * rest
    cnt = np.floor(raw).astype(int)
    order = np.argsort(-(raw - cnt), kind="stable")
    cnt[order[: rest - int(cnt.sum())]] += 1
    return [int(x) for x in base + cnt]


def phoenix_sentences(seed: int, counts: dict | None = None) -> dict:
    """{split: [record]} with record = {"text", "gloss", "signer", "group", "formulaic"}.

    ``counts`` defaults to PHOENIX's split sizes. Sentences are drawn split by split from one
    stream; a share of them re-say an earlier train meaning in other words (the paraphrase
    groups; ``group`` is the meaning's hash, the oracle). Signers are assigned by a seeded
    shuffle of :func:`signer_counts`."""
    from slt_llm.synth.weather import WeatherLanguage

    counts = dict(PHOENIX_SPLITS if counts is None else counts)
    lang = WeatherLanguage()
    rng = np.random.default_rng([seed, 16])
    out, train_meanings = {}, []
    for split in ("train", "dev", "test"):
        n = int(counts.get(split, 0))
        recs = []
        p_para = P_PARAPHRASE_TRAIN if split == "train" else P_PARAPHRASE_EVAL
        for _ in range(n):
            mseed, sseed, gseed = (int(x) for x in rng.integers(0, 2**62, size=3))
            redo = rng.random() < p_para and train_meanings
            if redo:
                mseed, g0 = train_meanings[int(rng.integers(len(train_meanings)))]
                if rng.random() < P_SAME_SIGNS:
                    gseed = g0
            sent = lang.realize(mseed, sseed, gseed, None if redo else CLAUSES_MEAN[split])
            if split == "train" and not sent.formulaic:
                train_meanings.append((mseed, gseed))
            recs.append({"text": sent.text, "gloss": " ".join(sent.gloss), "group": sent.group,
                         "formulaic": sent.formulaic})
        per = signer_counts(n, split)
        labels = np.repeat(np.arange(len(per)), per)
        labels = labels[rng.permutation(len(labels))]
        for r, lab in zip(recs, labels):
            r["signer"] = f"signer{int(lab)}"
        out[split] = recs
    return out


def text_hash(splits: dict) -> str:
    """sha256 over the splits' (text, gloss, signer) fields in order: the profile's fingerprint,
    the same with and without rendering."""
    h = hashlib.sha256()
    for split in ("train", "dev", "test"):
        for r in splits.get(split, []):
            h.update(json.dumps([split, r["text"], r["gloss"], r["signer"]]).encode())
            h.update(b"\n")
    return h.hexdigest()


def extra_sentences(corpus_dir, n: int, seed: int) -> list:
    """``n`` distinct sentences of a synthetic corpus's language, never equal to one of its dev/test
    sentences (``corpus.json``'s ``eval_sentences``): for pre-training the stand-in LLM on the
    target language. toy: :func:`slt_llm.synth.toy.extra_sentences`; phoenix: fresh draws of
    the weather language from a stream of its own (train-length sentences)."""
    from pathlib import Path

    from slt_llm.errors import InputError

    path = Path(corpus_dir) / "corpus.json"
    if not path.is_file():
        raise InputError(path, "corpus.json not found (generate the corpus with `slt-llm synth`)")
    try:
        corpus = json.loads(path.read_text())
        profile = corpus.get("profile", "toy")
        banned = set(corpus["eval_sentences"])
    except (json.JSONDecodeError, KeyError, AttributeError) as e:
        raise InputError(path, f"not a synth corpus description ({e})") from None
    if profile == "toy":
        from slt_llm.synth.toy import extra_sentences as toy_extra

        return toy_extra(corpus_dir, n, seed)
    from slt_llm.synth.weather import WeatherLanguage

    lang = WeatherLanguage()
    rng = np.random.default_rng([seed, 77])
    out, seen = [], set()
    tries = 0
    while len(out) < n and tries < 20 * n + 1000:
        tries += 1
        mseed, sseed, gseed = (int(x) for x in rng.integers(0, 2**62, size=3))
        text = lang.realize(mseed, sseed, gseed, CLAUSES_MEAN["train"]).text
        if text in banned or text in seen:
            continue
        seen.add(text)
        out.append(text)
    return out
