"""The synthetic corpus: determinism, duplicates, sign order, unseen combinations,
video/keypoint agreement, extra sentences, CLI."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from slt_llm.cli import main as cli_main
from slt_llm.synth import corpus, render as synth, toy as grammar
from slt_llm.data.manifest import read_manifest
from slt_llm.data.pose import read_pose
from slt_llm.data.layout import LEFT_HAND, RIGHT_HAND


def _decode(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _edit_distance(a: list, b: list) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def test_same_seed_same_corpus_other_seed_differs(tmp_path):
    kw = dict(n_train=4, n_dev=1, n_test=1, dup_rate=0.25, size=64)
    corpus.generate(tmp_path / "a", seed=3, **kw)
    corpus.generate(tmp_path / "b", seed=3, workers=2, **kw)  # processes do not change the output
    corpus.generate(tmp_path / "c", seed=4, **kw)
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "corpus.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for sid in ("train_00000", "train_00003", "test_00000"):
        ka, kb = (read_pose(tmp_path / d / "videos" / f"{sid}.pose") for d in ("a", "b"))
        np.testing.assert_array_equal(ka.xy, kb.xy)
        np.testing.assert_array_equal(ka.conf, kb.conf)
        np.testing.assert_array_equal(_decode(tmp_path / "a" / "videos" / f"{sid}.mp4"),
                                      _decode(tmp_path / "b" / "videos" / f"{sid}.mp4"))
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (tmp_path / "c" / "train.jsonl").read_bytes()


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5])
def test_dup_rate_is_the_share_of_repeated_or_near_repeated_sentences(rate):
    g = grammar.build_grammar()
    n = 600
    train = grammar.make_sentences(g, n, 0, 0, seed=1, dup_rate=rate)["train"]
    seqs = [grammar.glosses(s) for s, _ in train]
    sets = [set(q) for q in seqs]
    # components of the "same or one sign changed" graph: n - components = duplicates
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i):
            # one edit changes the sign sets by at most two elements (cheap pre-filter)
            if len(sets[i] ^ sets[j]) <= 2 and _edit_distance(seqs[i], seqs[j]) <= 1:
                parent[find(i)] = find(j)
    measured = (n - len({find(i) for i in range(n)})) / n
    assert abs(measured - rate) <= 0.02, (measured, rate)
    if rate > 0:
        kinds = [k for _, k in train]
        assert kinds.count("exact") > 0 and kinds.count("near") > 0


def test_sign_order_differs_from_text_order(tiny_corpus):
    g = json.loads((tiny_corpus / "corpus.json").read_text())["grammar"]
    verbs = g["verbs"]
    objects = {o for v in g["object_classes"].values() for o in v}
    for split in ("train", "dev", "test"):
        for s in read_manifest(tiny_corpus / f"{split}.jsonl"):
            signs = s.extra["gloss"].lower().split()
            words = s.text.split()
            assert 3 <= len(signs) <= 7
            assert not {"the", "a", "an", "in", "at", "will"} & set(signs)  # function words dropped
            verb, obj = signs[-1], signs[-2] if signs[-2] in objects else signs[-3]
            assert verb in verbs and obj in objects
            # text: subject-verb-object; signs: object before the verb (verb last)
            forms = {verb, *verbs[verb], "will"}
            v_pos = min(i for i, w in enumerate(words) if w in forms)
            assert words.index(obj) > v_pos and signs.index(obj) < signs.index(verb)
            assert signs != [w for w in words if w in signs]


def test_test_split_has_unseen_combinations_of_seen_words(tiny_corpus):
    corpus = json.loads((tiny_corpus / "corpus.json").read_text())
    held = {tuple(t) for t in corpus["heldout_triples"]}
    g = corpus["grammar"]

    def triple(s):
        signs = s.extra["gloss"].lower().split()
        subj = next(w for w in signs if w in g["subjects"])
        objs = {o for v in g["object_classes"].values() for o in v}
        return subj, signs[-1], next(w for w in signs if w in objs)

    train = [triple(s) for s in read_manifest(tiny_corpus / "train.jsonl")]
    test = [triple(s) for s in read_manifest(tiny_corpus / "test.jsonl")]
    assert not held & set(train)
    unseen = [t for t in test if t not in set(train)]
    assert len([t for t in test if t in held]) == 2  # a third of 6
    assert unseen
    # at the scale of the demo every word of a held-out triple is used in training
    sents = grammar.make_sentences(grammar.build_grammar(), 600, 100, 100, seed=0, dup_rate=0.3)
    tr = [(s["subj"], s["verb"], s["obj"]) for s, _ in sents["train"]]
    te = [(s["subj"], s["verb"], s["obj"]) for s, k in sents["test"] if k == "unseen"]
    assert len(te) == 33 and not set(te) & set(tr)
    for pos in range(3):
        assert {t[pos] for t in te} <= {t[pos] for t in tr}


def test_video_and_keypoints_agree(tiny_corpus):
    corpus = json.loads((tiny_corpus / "corpus.json").read_text())
    signers = {s["name"]: s for s in corpus["signers"]}
    for s in read_manifest(tiny_corpus / "train.jsonl")[:4]:
        frames = _decode(s.video)
        kp = read_pose(s.pose)
        assert kp.layout == "mediapipe_holistic" and (kp.width, kp.height) == (96, 96) and kp.fps == 12.0
        assert frames.shape == (kp.num_frames, 96, 96, 3)
        hands = np.concatenate([kp.xy[:, LEFT_HAND], kp.xy[:, RIGHT_HAND]], 1)  # (T,42,2)
        assert (kp.conf[:, LEFT_HAND] == 1).all() and (kp.conf[:, RIGHT_HAND] == 1).all()
        assert (hands >= 0).all() and (hands <= 95).all()
        # the figure is drawn from these keypoints: the palm centre is hand-coloured
        skin = np.array(signers[s.signer]["skin"], float)
        hand_cols = np.stack([skin, skin * 0.6])
        hits = 0
        for side in (LEFT_HAND, RIGHT_HAND):
            palm = kp.xy[:, side][:, [0, 5, 9, 13, 17]].mean(1)  # (T,2)
            for t in range(len(frames)):
                x, y = np.round(palm[t]).astype(int)
                px = frames[t, y, x].astype(float)
                hits += np.abs(hand_cols - px).max(1).min() < 40
        assert hits >= 0.9 * 2 * len(frames)


def test_extra_sentences_never_return_dev_or_test(tiny_corpus):
    held_out = {s.text for split in ("dev", "test") for s in read_manifest(tiny_corpus / f"{split}.jsonl")}
    extra = grammar.extra_sentences(tiny_corpus, 3000, seed=5)
    assert len(extra) == 3000 == len(set(extra))
    assert not held_out & set(extra)
    assert extra == grammar.extra_sentences(tiny_corpus, 3000, seed=5)
    assert extra != grammar.extra_sentences(tiny_corpus, 3000, seed=6)
    # the generator can produce the dev/test sentences: the exclusion is real
    g = json.loads((tiny_corpus / "corpus.json").read_text())["grammar"]
    rng = np.random.default_rng(0)
    triples = grammar.svo_triples(g)
    pool = {grammar.realize(g, grammar.sample_slots(g, rng, triples)) for _ in range(5000)}
    assert len(pool) > 4000


def test_lexicon_signs_are_distinguishable():
    words = grammar.content_words(grammar.build_grammar())
    assert 40 <= len(words) <= 60
    lex = synth.build_lexicon(words)
    assert list(lex) == [w.upper() for w in words]
    combos = [tuple(v.values()) for v in lex.values()]
    for i in range(len(combos)):
        for j in range(i):
            assert sum(a != b for a, b in zip(combos[i], combos[j])) >= 2
    shapes = {k: synth.hand_template(k) for k in synth.HANDSHAPES}
    for a in shapes:
        for b in shapes:
            if a < b:
                assert np.abs(shapes[a] - shapes[b]).max() > 0.1, (a, b)


def test_vocab_option_shrinks_the_language():
    g = grammar.build_grammar(24)
    words = grammar.content_words(g)
    assert 20 <= len(words) <= 28
    for v in g["verbs"]:
        assert grammar._objects_of(g, v)
    s = grammar.make_sentences(g, 50, 5, 5, seed=0, dup_rate=0.2)
    assert all(set(w.lower() for w in grammar.glosses(sl)) <= set(words) for sl, _ in s["train"])


def test_cli_writes_corpus_and_rejects_bad_rate(tmp_path, capsys):
    out = tmp_path / "c"
    assert cli_main(["synth", "--out", str(out), "--n-train", "2", "--n-dev", "1", "--n-test", "1",
                     "--seed", "0", "--dup-rate", "0", "--size", "48"]) == 0
    assert [len(read_manifest(out / f"{s}.jsonl")) for s in ("train", "dev", "test")] == [2, 1, 1]
    assert "wrote" in capsys.readouterr().out
    assert cli_main(["synth", "--out", str(out), "--dup-rate", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "slt-llm synth: error: --dup-rate: must be in [0, 1), got 1.5"
