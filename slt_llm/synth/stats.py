"""Corpus statistics of a sign-language translation corpus, beside PHOENIX-2014T's.

``corpus_stats({split: [record]})`` (records with ``text``, ``gloss``, ``signer``) measures
what the ``phoenix`` profile must match (docs/synth.md): split sizes and signers, spoken word
types, singletons, words a sentence, top-100 coverage, out-of-vocabulary types of dev/test,
gloss types and glosses a sentence, near neighbours (word-set Jaccard >= 0.5, and containment:
overlap coefficient |a & b| / min(|a|, |b|) >= 0.5, against any other train sentence), the
paraphrase share (train sentences whose gloss sequence another train sentence carries with a
different text), verbatim repeats and dev/test sentences found verbatim in train. Words are
whitespace tokens of the lower-cased text, as the published figures were computed.

``PUBLISHED`` holds the figures of ``phoenix2014t_stats.md`` (computed from the public
annotation files), ``TOLERANCE`` the relative tolerances the profile is held to.

Cost: the neighbour search is one (N x V) @ (V x N) product on word-set indicator matrices in
row blocks (float32, 7,096 x 2,900: well under a second), never an N x N Python loop.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

PUBLISHED = {
    "sentences_train": 7096, "sentences_dev": 519, "sentences_test": 642,
    "signers_train": 9, "signers_dev": 9, "signers_test": 9,
    "word_types_train": 2887, "singletons_train": 1077,
    "words_per_sentence_train": 13.96, "words_per_sentence_dev": 13.14, "words_per_sentence_test": 12.17,
    "max_words": 52, "top100_coverage": 0.635,
    "oov_types_dev": 57, "oov_types_test": 59,
    "gloss_types_train": 1085, "glosses_per_sentence_train": 7.79,
    "jaccard_neighbour_share": 0.361, "containment_neighbour_share": 0.845,
    "paraphrase_share": 0.023, "verbatim_repeat_share": 0.040,
    "dev_in_train_share": 25 / 519, "test_in_train_share": 32 / 642,
}
# (relative tolerance) or (low, high) absolute bounds: issue 16's "done when"
TOLERANCE = {
    "word_types_train": 0.15, "words_per_sentence_train": 0.15, "words_per_sentence_dev": 0.15,
    "words_per_sentence_test": 0.15, "top100_coverage": 0.15, "singletons_train": 0.25,
    "gloss_types_train": 0.20, "oov_types_dev": 0.50, "oov_types_test": 0.50,
    "jaccard_neighbour_share": 0.35, "paraphrase_share": (0.01, 0.30),
    "sentences_train": 0.0, "sentences_dev": 0.0, "sentences_test": 0.0,
    "signers_train": 0.0, "signers_dev": 0.0, "signers_test": 0.0,
}


def _words(text: str) -> list:
    return text.lower().split()


def neighbour_shares(texts: list, *, threshold: float = 0.5, block: int = 1024) -> tuple[float, float]:
    """(share with a Jaccard >= threshold neighbour, share with a containment >= threshold
    neighbour) among ``texts``, on word sets; a sentence is not its own neighbour, an equal
    sentence is."""
    sets = [set(_words(t)) for t in texts]
    vocab = {w: i for i, w in enumerate(sorted(set().union(*sets)))} if sets else {}
    n = len(sets)
    if n < 2:
        return 0.0, 0.0
    x = np.zeros((n, len(vocab)), np.float32)
    for i, s in enumerate(sets):
        x[i, [vocab[w] for w in s]] = 1.0
    size = x.sum(1)
    jac = np.zeros(n, bool)
    con = np.zeros(n, bool)
    for a in range(0, n, block):
        inter = x[a:a + block] @ x.T  # (b, N) intersection sizes
        sa = size[a:a + block, None]
        union = sa + size[None, :] - inter
        j = inter / np.maximum(union, 1)
        c = inter / np.maximum(np.minimum(sa, size[None, :]), 1)
        idx = np.arange(a, min(a + block, n))
        j[np.arange(len(idx)), idx] = 0
        c[np.arange(len(idx)), idx] = 0
        jac[idx] = (j >= threshold).any(1)
        con[idx] = (c >= threshold).any(1)
    return float(jac.mean()), float(con.mean())


def corpus_stats(splits: dict) -> dict:
    """The figures of :data:`PUBLISHED` for ``{split: [record]}`` (module docstring)."""
    out: dict = {}
    vocab = {}
    for split in ("train", "dev", "test"):
        recs = splits.get(split, [])
        out[f"sentences_{split}"] = len(recs)
        out[f"signers_{split}"] = len({r.get("signer") for r in recs if r.get("signer") is not None})
        toks = [_words(r["text"]) for r in recs]
        out[f"words_per_sentence_{split}"] = float(np.mean([len(t) for t in toks])) if toks else 0.0
        vocab[split] = Counter(w for t in toks for w in t)
    train = splits.get("train", [])
    tv = vocab["train"]
    out["word_types_train"] = len(tv)
    out["singletons_train"] = sum(1 for c in tv.values() if c == 1)
    out["max_words"] = max((len(_words(r["text"])) for sp in splits.values() for r in sp), default=0)
    total = sum(tv.values())
    out["top100_coverage"] = sum(c for _, c in tv.most_common(100)) / max(total, 1)
    for split in ("dev", "test"):
        out[f"oov_types_{split}"] = sum(1 for w in vocab[split] if w not in tv)
    gloss = [r["gloss"].split() for r in train]
    gv = Counter(g for q in gloss for g in q)
    out["gloss_types_train"] = len(gv)
    out["gloss_singletons_train"] = sum(1 for c in gv.values() if c == 1)
    out["glosses_per_sentence_train"] = float(np.mean([len(q) for q in gloss])) if gloss else 0.0
    for split in ("dev", "test"):
        out[f"gloss_oov_tokens_{split}"] = sum(1 for r in splits.get(split, []) for g in r["gloss"].split()
                                               if g not in gv)
    texts = [r["text"] for r in train]
    out["jaccard_neighbour_share"], out["containment_neighbour_share"] = neighbour_shares(texts)
    by_gloss: dict = {}
    for r in train:
        by_gloss.setdefault(r["gloss"], set()).add(r["text"])
    multi = {g for g, ts in by_gloss.items() if len(ts) > 1}
    out["paraphrase_share"] = sum(1 for r in train if r["gloss"] in multi) / max(len(train), 1)
    tc = Counter(texts)
    out["verbatim_repeat_share"] = sum(c for c in tc.values() if c > 1) / max(len(train), 1)
    for split in ("dev", "test"):
        recs = splits.get(split, [])
        out[f"{split}_in_train_share"] = sum(1 for r in recs if r["text"] in tc) / max(len(recs), 1)
    groups = Counter(r["group"] for r in train if "group" in r)
    if groups:
        out["oracle_group_share"] = sum(c for c in groups.values() if c > 1) / len(train)
    return out


def within(name: str, value: float) -> bool | None:
    """Whether ``value`` meets the profile's tolerance for ``name`` (None: no tolerance set)."""
    tol = TOLERANCE.get(name)
    if tol is None:
        return None
    if isinstance(tol, tuple):
        return tol[0] <= value <= tol[1]
    ref = PUBLISHED[name]
    return abs(value - ref) <= tol * abs(ref) + 1e-9


def format_table(stats: dict) -> str:
    """A plain-text table: figure, this corpus, PHOENIX-2014T, tolerance, ok."""
    rows = [("figure", "here", "PHOENIX-2014T", "held to", "ok")]
    for k, v in stats.items():
        ref = PUBLISHED.get(k)
        tol = TOLERANCE.get(k)
        fmt = (lambda x: f"{x:.3f}" if isinstance(x, float) and x < 1 else (f"{x:.2f}" if isinstance(x, float) else str(x)))
        tol_s = "" if tol is None else (f"[{tol[0]}, {tol[1]}]" if isinstance(tol, tuple) else f"+/-{tol:.0%}")
        ok = within(k, v)
        rows.append((k, fmt(v), "" if ref is None else fmt(ref), tol_s, "" if ok is None else ("yes" if ok else "NO")))
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows)
