"""The synthetic corpus's language: its English grammar, vocabulary and sign order.

An English grammar: ``[TIME] the [ADJ] SUBJECT VERB [a|an] [ADJ] OBJECT
[PLACE]`` with the verb's tense set by the time word (yesterday -> past,
tomorrow/soon -> "will" + base, otherwise present), verb/object compatibility
(one eats food, drinks drinks, reads books and letters) and adjectives that fit
the object class. 58 content words by default (``vocab`` keeps a proportional
subset). The SIGN ORDER is time-topic-comment and drops function words:
``TIME PLACE SUBJECT [ADJ] OBJECT [ADJ] VERB`` (``glosses``). Sentence sets
with held-out (subject, verb, object) triples and a controlled duplicate rate
(``make_sentences``); more sentences of a generated corpus for pre-training the
stand-in LLM (``extra_sentences``). Text only: the video rendering is
``slt_llm.synth.render``; ``slt_llm.models.tiny_llm`` needs only this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from slt_llm.errors import InputError

# ----------------------------------------------------------------------------- grammar
SUBJECTS = ["man", "woman", "girl", "boy", "teacher", "doctor", "student", "farmer"]
SUBJECT_ADJS = ["old", "young", "tall", "happy"]
# verb: (3rd person present, past)
VERBS = {
    "buy": ("buys", "bought"),
    "want": ("wants", "wanted"),
    "like": ("likes", "liked"),
    "see": ("sees", "saw"),
    "eat": ("eats", "ate"),
    "drink": ("drinks", "drank"),
    "read": ("reads", "read"),
    "make": ("makes", "made"),
    "carry": ("carries", "carried"),
    "find": ("finds", "found"),
}
OBJECT_CLASSES = {
    "thing": ["car", "book", "ball", "hat", "bag", "letter", "cup"],
    "food": ["apple", "bread", "cake", "fish", "soup"],
    "drink": ["water", "coffee", "tea", "milk"],
}
MASS_NOUNS = ["bread", "soup", "water", "coffee", "tea", "milk"]  # no article
OBJECT_ADJS = {
    "thing": ["red", "blue", "green", "new", "big", "small"],
    "food": ["big", "small", "fresh"],
    "drink": ["hot", "cold"],
}
# verb -> object classes or explicit objects it takes
VERB_OBJECTS = {
    "buy": ["thing", "food", "drink"],
    "want": ["thing", "food", "drink"],
    "like": ["thing", "food", "drink"],
    "see": ["thing", "food"],
    "eat": ["food"],
    "drink": ["drink"],
    "read": ["book", "letter"],
    "make": ["cake", "bread", "soup", "coffee", "tea", "hat"],
    "carry": ["bag", "ball", "book", "cup", "letter", "hat", "fish"],
    "find": ["thing"],
}
TIMES = {"yesterday": "past", "today": "present", "now": "present", "tomorrow": "future", "soon": "future"}
PLACES = {
    "park": "in the park", "home": "at home", "school": "at school",
    "city": "in the city", "market": "at the market", "shop": "in the shop",
}
SLOTS = ("time", "place", "subj", "sadj", "obj", "oadj", "verb")  # also the sign order



def build_grammar(vocab: Optional[int] = None) -> dict:
    """The grammar as a JSON-able dict; ``vocab`` keeps about that many content words."""
    full = {
        "subjects": list(SUBJECTS),
        "subject_adjs": list(SUBJECT_ADJS),
        "verbs": {v: list(f) for v, f in VERBS.items()},
        "object_classes": {k: list(v) for k, v in OBJECT_CLASSES.items()},
        "object_adjs": {k: list(v) for k, v in OBJECT_ADJS.items()},
        "mass_nouns": list(MASS_NOUNS),
        "verb_objects": {k: list(v) for k, v in VERB_OBJECTS.items()},
        "times": dict(TIMES),
        "places": dict(PLACES),
    }
    total = len(content_words(full))
    if vocab is None or vocab >= total:
        return full
    if vocab < 12:
        raise InputError("--vocab", f"needs at least 12 content words, got {vocab}")
    frac = vocab / total

    def keep(xs, lo):
        return xs[: max(lo, int(round(len(xs) * frac)))]

    g = dict(full)
    g["subjects"] = keep(full["subjects"], 2)
    g["subject_adjs"] = keep(full["subject_adjs"], 1)
    g["object_classes"] = {k: keep(v, 1) for k, v in full["object_classes"].items()}
    g["object_adjs"] = {k: keep(v, 1) for k, v in full["object_adjs"].items()}
    g["times"] = dict(list(full["times"].items())[: max(2, int(round(5 * frac)))])
    g["places"] = dict(list(full["places"].items())[: max(1, int(round(6 * frac)))])
    objs = {o for v in g["object_classes"].values() for o in v}
    verbs = {}
    for v in keep(list(full["verbs"]), 3):
        if _objects_of(g, v, objs):
            verbs[v] = full["verbs"][v]
    g["verbs"] = verbs
    g["verb_objects"] = {v: full["verb_objects"][v] for v in verbs}
    g["mass_nouns"] = [m for m in full["mass_nouns"] if m in objs]
    return g


def _objects_of(g: dict, verb: str, objs=None) -> list:
    if objs is None:
        objs = {o for v in g["object_classes"].values() for o in v}
    out = []
    for item in g["verb_objects"][verb]:
        if item in g["object_classes"]:
            out += g["object_classes"][item]
        elif item in objs:
            out.append(item)
    return sorted(set(out) & set(objs), key=lambda o: _object_order(g).index(o))


def _object_order(g: dict) -> list:
    return [o for v in g["object_classes"].values() for o in v]


def _object_class(g: dict, obj: str) -> str:
    for k, v in g["object_classes"].items():
        if obj in v:
            return k
    raise KeyError(obj)


def content_words(g: dict) -> list:
    """All content words (one sign each), in a fixed order."""
    words = list(g["times"]) + list(g["places"]) + list(g["subjects"]) + list(g["subject_adjs"])
    words += _object_order(g)
    for adjs in g["object_adjs"].values():
        words += [a for a in adjs if a not in words]
    words += list(g["verbs"])
    seen, out = set(), []
    for w in words:
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def svo_triples(g: dict) -> list:
    return [(s, v, o) for s in g["subjects"] for v in g["verbs"] for o in _objects_of(g, v)]


def sample_slots(g: dict, rng: np.random.Generator, triples: list) -> dict:
    """Draw one sentence as its slots (None = slot absent)."""
    s, v, o = triples[rng.integers(len(triples))]
    times, places = list(g["times"]), list(g["places"])
    oadjs = g["object_adjs"][_object_class(g, o)]
    return {
        "time": times[rng.integers(len(times))] if rng.random() < 0.5 else None,
        "place": places[rng.integers(len(places))] if rng.random() < 0.35 else None,
        "subj": s,
        "sadj": g["subject_adjs"][rng.integers(len(g["subject_adjs"]))] if rng.random() < 0.4 else None,
        "obj": o,
        "oadj": oadjs[rng.integers(len(oadjs))] if rng.random() < 0.4 else None,
        "verb": v,
    }


def realize(g: dict, slots: dict) -> str:
    """Slots -> the English sentence (lower case, no punctuation)."""
    tense = g["times"][slots["time"]] if slots["time"] else "present"
    present, past = g["verbs"][slots["verb"]]
    verb = {"present": present, "past": past, "future": "will " + slots["verb"]}[tense]
    words = []
    if slots["time"]:
        words.append(slots["time"])
    words += ["the"] + ([slots["sadj"]] if slots["sadj"] else []) + [slots["subj"], verb]
    np_words = ([slots["oadj"]] if slots["oadj"] else []) + [slots["obj"]]
    if slots["obj"] not in g["mass_nouns"]:
        words.append("an" if np_words[0][0] in "aeiou" else "a")
    words += np_words
    if slots["place"]:
        words.append(g["places"][slots["place"]])
    return " ".join(words)


def glosses(slots: dict) -> list:
    """Slots -> sign order (time, place, subject, adj, object, adj, verb), upper case."""
    return [slots[k].upper() for k in SLOTS if slots[k]]


def _near_keys(slots: dict) -> list:
    t = tuple(slots[k] for k in SLOTS)
    return [t[:i] + ("*",) + t[i + 1:] for i in range(len(t))]


def _near_variant(g: dict, slots: dict, rng: np.random.Generator) -> Optional[dict]:
    """The same sentence with one slot changed (adjective, place, time within its tense)."""
    options = []
    oadjs = g["object_adjs"][_object_class(g, slots["obj"])]
    for key, pool in (("sadj", g["subject_adjs"]), ("oadj", oadjs), ("place", list(g["places"]))):
        for val in pool:
            if val != slots[key]:
                options.append((key, val))
    if slots["time"]:
        tense = g["times"][slots["time"]]
        for t, ts in g["times"].items():
            if ts == tense and t != slots["time"]:
                options.append(("time", t))
    if not options:
        return None
    key, val = options[rng.integers(len(options))]
    out = dict(slots)
    out[key] = val
    return out


def make_sentences(g: dict, n_train: int, n_dev: int, n_test: int, seed: int, dup_rate: float) -> dict:
    """Sentence slots per split, with held-out triples and training duplicates.

    Returns {"train": [(slots, kind)], "dev": ..., "test": ..., "heldout": [...]}
    where kind is "base", "exact" or "near" (train) or "seen"/"unseen" (dev/test).
    """
    rng = np.random.default_rng([seed, 1])
    triples = svo_triples(g)
    order = rng.permutation(len(triples))
    n_hold = max(1, int(round(0.12 * len(triples))))
    heldout = sorted(triples[i] for i in order[:n_hold])
    held = set(heldout)
    # every word must still be seen in training
    allowed = [t for t in triples if t not in held]
    for t in list(heldout):
        for pos in range(3):
            if not any(a[pos] == t[pos] for a in allowed):
                held.discard(t)
                allowed.append(t)
    heldout = sorted(held)
    allowed = sorted(allowed)

    n_dup = int(round(dup_rate * n_train))
    n_base = n_train - n_dup
    if n_train > 0 and n_base < 1:
        n_base, n_dup = 1, n_train - 1
    base, keys = [], set()
    tries = 0
    while len(base) < n_base:
        tries += 1
        s = sample_slots(g, rng, allowed)
        nk = _near_keys(s)
        if any(k in keys for k in nk) and tries < 200 * (n_base + 10):
            continue
        keys.update(nk)
        base.append(s)
    train = [(s, "base") for s in base]
    for i in range(n_dup):
        src = base[rng.integers(len(base))]
        if rng.random() < 0.5:
            train.append((dict(src), "exact"))
        else:
            v = _near_variant(g, src, rng)
            train.append((v, "near") if v is not None else (dict(src), "exact"))
    # copies land at random positions (a copy may come before its source)
    perm = rng.permutation(len(train))
    train = [train[i] for i in perm]

    def eval_split(n):
        # a third (at least one) of the sentences use held-out triples
        n_unseen = min(n, max(1, int(round(n / 3)))) if heldout and n > 0 else 0
        out = [(sample_slots(g, rng, heldout), "unseen") for _ in range(n_unseen)]
        out += [(sample_slots(g, rng, allowed), "seen") for _ in range(n - n_unseen)]
        return [out[i] for i in rng.permutation(len(out))]

    dev = eval_split(n_dev)
    test = eval_split(n_test)
    return {"train": train, "dev": dev, "test": test, "heldout": [list(t) for t in heldout]}


def extra_sentences(corpus_dir, n: int, seed: int) -> list:
    """``n`` distinct sentences from the corpus grammar (as far as it allows), never equal
    to any dev/test sentence; for pre-training the stand-in LLM on the target language.

    Held-out (subject, verb, object) triples may appear (a real LLM knows the
    whole language); exact dev/test sentences never do.
    """
    path = Path(corpus_dir) / "corpus.json"
    if not path.is_file():
        raise InputError(path, "corpus.json not found (generate the corpus with `slt-llm synth`)")
    try:
        corpus = json.loads(path.read_text())
        g = corpus["grammar"]
        banned = set(corpus["eval_sentences"])
    except (json.JSONDecodeError, KeyError) as e:
        raise InputError(path, f"not a synth corpus description ({e})") from None
    rng = np.random.default_rng([seed, 99])
    triples = svo_triples(g)
    out, seen = [], set()
    tries = 0
    while len(out) < n and tries < 50 * n + 1000:
        tries += 1
        s = realize(g, sample_slots(g, rng, triples))
        if s in banned or s in seen:
            continue
        seen.add(s)
        out.append(s)
    return out
