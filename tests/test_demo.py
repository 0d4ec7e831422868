"""End-to-end smoke test of `slt-llm demo` at toy size: every step runs for
real (synth, tiny LLM, stage 1 with pair selection, stage 2 with LoRA from the
stage-1 encoder, folder translation, evaluation), outputs land where the
README says, and a second run reuses the finished steps."""

import json

import pytest

from slt_llm.demo import run_demo

pytestmark = pytest.mark.slow

SMALL_ENCODER = [
    "encoder.dim=32", "encoder.hand_channels=[8, 16]", "encoder.full_channels=[8, 16]",
    "encoder.keypoint_hidden=32", "encoder.num_layers=1", "encoder.num_heads=2",
    "data.clip.max_frames=24",
]


def test_demo_end_to_end_and_rerun(tmp_path, capsys):
    out = tmp_path / "demo"
    kw = dict(
        n_train=16, n_dev=4, n_test=4, size=64, llm_steps=5,
        stage1_overrides=SMALL_ENCODER + ["train.epochs=3", "selection.ref_epochs=2", "selection.top_m=4",
                                          "train.batch_size=8", "vlp.embed_dim=32"],
        stage2_overrides=SMALL_ENCODER + ["train.epochs=1", "train.batch_size=8", "train.eval_every=2",
                                          "train.max_new_tokens=6"],
    )
    result = run_demo(str(out), **kw)
    # the default corpus is the head of the frozen phoenix profile
    from slt_llm.synth import profiles

    corpus = json.loads((out / "corpus" / "corpus.json").read_text())
    assert corpus["profile"] == "phoenix" and corpus["seed"] == profiles.PHOENIX_SEED
    frozen = profiles.phoenix_sentences(profiles.PHOENIX_SEED)
    texts = [json.loads(x)["text"] for x in (out / "corpus" / "test.jsonl").read_text().splitlines()]
    assert texts == [r["text"] for r in frozen["test"][:4]]
    assert result["profile"] == "phoenix"
    for key in ("bleu1", "bleu4", "rouge_l", "chrf"):
        assert 0.0 <= result[key] <= 100.0
    assert json.loads((out / "metrics.json").read_text())["bleu4"] == result["bleu4"]
    assert 0.0 <= result["retrieval"]["v2t"]["r1"] <= 100.0
    rows = [json.loads(x) for x in (out / "translations.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r.get("translation") is not None and not r.get("error") for r in rows)
    assert (out / "model" / "slt_config.yaml").is_file() and (out / "stage1" / "model" / "encoder.safetensors").is_file()
    # stage 1 really ran pair selection after its reference epochs
    phases = {json.loads(x).get("phase") for x in (out / "stage1" / "metrics.jsonl").read_text().splitlines()}
    assert "ps" in phases
    capsys.readouterr()

    again = run_demo(str(out), **kw)
    printed = capsys.readouterr().out
    for step in ("corpus", "LLM", "stage 1", "stage 2"):
        assert f"reusing {'the ' if step in ('corpus', 'LLM') else ''}{step}" in printed
    assert again["bleu4"] == result["bleu4"]
    assert again["timings_s"]["stage2_s"] == result["timings_s"]["stage2_s"]

    # a demo folder never mixes profiles
    from slt_llm.errors import ConfigError

    with pytest.raises(ConfigError, match="holds a demo on the 'phoenix' profile"):
        run_demo(str(out), profile="toy", **kw)
