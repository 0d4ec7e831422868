"""Retrieval R@k on constructed cases (known ranks), against a brute-force reference; analyze outputs."""


import pytest
import torch

from slt_llm.contrastive.retrieval import retrieval_metrics, unique_sentences


def _constructed():
    t = torch.eye(4)  # 4 unique sentences
    s = 1 / (0.1**2 + 0.9**2) ** 0.5
    v = torch.tensor([
        [1.0, 0, 0, 0],          # sentence 0, rank 1
        [0.1 * s, 0.9 * s, 0, 0],  # sentence 0, sentence 1 scores higher: rank 2
        [0, 1.0, 0, 0],          # sentence 1, rank 1
        [0, 0, 0.6, 0.8],        # sentence 2, sentence 3 higher: rank 2
        [0, 0, 0, -1.0],         # sentence 3, every other sentence higher: rank 4
    ])
    return v, t, torch.tensor([0, 0, 1, 2, 3])


@pytest.mark.parametrize("block", [1, 2, 1024])
def test_known_ranks(block):
    v, t, vt = _constructed()
    r = retrieval_metrics(v, t, vt, ks=(1, 2, 3, 5), block=block)
    assert r["num_videos"] == 5 and r["num_sentences"] == 4
    assert r["v2t"] == pytest.approx({"r1": 40.0, "r2": 80.0, "r3": 80.0, "r5": 100.0})
    # t2v: sentences 0,1,2 find one of their videos first; sentence 3's only video is last of 5
    assert r["t2v"] == pytest.approx({"r1": 75.0, "r2": 75.0, "r3": 75.0, "r5": 100.0})


def test_ties_count_against_the_model():
    v = torch.ones(6, 3) / 3**0.5  # a collapsed model: every score ties
    t = torch.ones(3, 3) / 3**0.5
    r = retrieval_metrics(v, t, torch.tensor([0, 0, 1, 1, 2, 2]), ks=(1, 3))
    assert r["v2t"]["r1"] == 0.0 and r["v2t"]["r3"] == 100.0
    assert r["t2v"]["r1"] == 0.0


def test_random_case_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    texts = [f"s{int(i)}" for i in torch.randint(0, 12, (40,), generator=g)]
    uniq, vt = unique_sentences(texts)
    assert [uniq[i] for i in vt.tolist()] == texts
    v = torch.nn.functional.normalize(torch.randn(40, 8, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(len(uniq), 8, generator=g), dim=-1)
    r = retrieval_metrics(v, t, vt, ks=(1, 5), block=7)
    sim = v @ t.T
    v2t = [1 + sum(float(sim[i, j]) >= float(sim[i, vt[i]]) for j in range(len(uniq)) if j != vt[i])
           for i in range(40)]
    t2v = []
    for u in range(len(uniq)):
        own = max(float(sim[i, u]) for i in range(40) if vt[i] == u)
        t2v.append(1 + sum(float(sim[i, u]) >= own for i in range(40) if vt[i] != u))
    for k in (1, 5):
        assert r["v2t"][f"r{k}"] == pytest.approx(100 * sum(x <= k for x in v2t) / 40)
        assert r["t2v"][f"r{k}"] == pytest.approx(100 * sum(x <= k for x in t2v) / len(uniq))


def test_embed_and_score_is_the_one_evaluation():
    """embed_and_score (used by stage-1 dev evaluation and evaluate_retrieval): the readable videos'
    unique sentences, in first-seen order, embedded through the model; None when nothing is readable."""
    from slt_llm.contrastive.retrieval import embed_and_score

    v = torch.nn.functional.normalize(torch.randn(4, 6, generator=torch.Generator().manual_seed(0)), dim=-1)

    class Stub:
        def __init__(self, index):
            self.index = torch.tensor(index, dtype=torch.long)

        def embed_videos(self, loader, device="cpu"):
            return v[self.index], self.index

        def embed_texts(self, states):
            return states * 2.0  # any map of the LLM states

    texts = ["a", "b", "a", "c", "d"]
    asked = []

    def states(uniq):
        asked.append(list(uniq))
        return torch.stack([v[{"a": 0, "c": 3, "b": 1}[t]] for t in uniq])

    got = embed_and_score(Stub([0, 2, 3]), None, texts, states, fine=False)  # sample 1 ("b") and 4 unreadable
    assert asked == [["a", "c"]]
    want = retrieval_metrics(v[[0, 2, 3]], 2.0 * v[[0, 3]], torch.tensor([0, 0, 1]))
    assert got == want and got["num_videos"] == 3
    assert embed_and_score(Stub([]), None, texts, states, fine=False) is None


def test_retrieval_metrics_in_float32_under_autocast():
    """Stage-1 dev evaluation scores inside the run's autocast context (bf16 under DeepSpeed):
    the metrics are computed in float32 all the same."""
    g = torch.Generator().manual_seed(1)
    v = torch.nn.functional.normalize(torch.randn(9, 5, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(4, 5, generator=g), dim=-1)
    vt = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    want = retrieval_metrics(v, t, vt, block=4)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert retrieval_metrics(v, t, vt, block=4) == want
