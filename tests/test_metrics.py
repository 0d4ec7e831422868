"""Metrics: BLEU equals sacrebleu (API and CLI), ROUGE-L against hand-computed
values, id matching in `slt-llm eval`, character-level zh."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

from slt_llm.cli import main
from slt_llm.errors import InputError
from slt_llm.metrics import (
    compute_metrics,
    evaluate_files,
    lcs_length,
    read_hypotheses,
    rouge_l,
    rouge_l_sentence,
)

REFS = [
    "am tag wechselhaft und im norden gewitter",
    "morgen scheint die sonne im süden",
    "in der nacht regnet es im westen stark",
    "am sonntag wird es wieder freundlicher und wärmer",
    "es weht ein frischer wind aus nordwest",
]
HYPS = [
    "am tag wechselhaft im norden gewitter",
    "morgen scheint im süden die sonne",
    "in der nacht regen im westen",
    "am sonntag wieder freundlicher",
    "ein frischer wind aus nord",
]


def _write(tmp: Path, hyps, refs, ids=None, hyp_name="hyp.jsonl"):
    ids = ids or [f"s{i}" for i in range(len(refs))]
    ref = tmp / "ref.jsonl"
    ref.write_text("".join(json.dumps({"id": i, "video": f"{i}.mp4", "text": r}, ensure_ascii=False) + "\n" for i, r in zip(ids, refs)))
    hyp = tmp / hyp_name
    hyp.write_text("".join(json.dumps({"id": i, "path": f"{i}.mp4", "translation": h}, ensure_ascii=False) + "\n" for i, h in zip(ids, hyps)))
    return hyp, ref


def test_bleu_matches_sacrebleu_api():
    m = compute_metrics(HYPS, REFS)
    ref = sacrebleu.corpus_bleu(HYPS, [REFS])
    assert f"{m['bleu4']:.2f}" == f"{ref.score:.2f}"
    assert m["bleu4"] == pytest.approx(ref.score, abs=1e-9)
    # BLEU-n: cumulative with uniform weights 1/n = geometric mean of the first n precisions x BP
    import math

    for n in range(1, 5):
        gm = math.exp(sum(math.log(p / 100) for p in ref.precisions[:n]) / n)
        assert m[f"bleu{n}"] == pytest.approx(100 * ref.bp * gm, rel=1e-9)
    assert m["bleu1"] > m["bleu2"] > m["bleu3"] > m["bleu4"] > 0
    assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert "tok:13a" in m["signature"]["bleu"] and "version:" in m["signature"]["bleu"]


def test_bleu4_equals_sacrebleu_cli(tmp_path):
    (tmp_path / "h.txt").write_text("\n".join(HYPS) + "\n")
    (tmp_path / "r.txt").write_text("\n".join(REFS) + "\n")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "sacrebleu"), str(tmp_path / "r.txt"), "-i", str(tmp_path / "h.txt"), "-b", "-w", "2"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    hyp, ref = _write(tmp_path, HYPS, REFS)
    m = evaluate_files(hyp, ref)
    assert f"{m['bleu4']:.2f}" == out


def test_lcs_and_rouge_hand_values():
    assert lcs_length("a b c d e".split(), "a c e".split()) == 3
    assert lcs_length("x y".split(), "a b".split()) == 0
    assert lcs_length([], ["a"]) == 0
    # hyp "the cat sat on mat" (5) vs ref "the cat is on the mat" (6): LCS = the cat on mat = 4
    p, r, b = 4 / 5, 4 / 6, 1.2
    expect = (1 + b * b) * p * r / (r + b * b * p)
    assert rouge_l_sentence("the cat sat on mat", "the cat is on the mat") == pytest.approx(expect)
    assert expect == pytest.approx(19.52 / 27.28)  # by hand: (2.44*8/15) / (10/15 + 17.28/15) = 0.71554
    assert rouge_l_sentence("a b c", "a b c") == pytest.approx(1.0)
    assert rouge_l_sentence("x y", "a b") == 0.0
    assert rouge_l_sentence("", "a b") == 0.0
    # multiple references: max precision and max recall over them
    assert rouge_l_sentence("a b", ["a b c d", "a x"]) == pytest.approx(
        (1 + b * b) * 1.0 * 0.5 / (0.5 + b * b * 1.0)
    )
    # corpus value = mean of sentence values x100
    assert rouge_l(["a b c", "x y"], ["a b c", "a b"]) == pytest.approx(50.0)


def test_zh_character_level():
    refs = ["我 今天 去 学校", "他 明天 不 来"]
    hyps = ["我今天去学校", "他明天来"]
    m = compute_metrics(hyps, refs, tokenize="zh")
    # zh tokenizer splits CJK into characters, so spacing does not matter
    assert m["bleu4"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score)
    assert "tok:zh" in m["signature"]["bleu"]
    same = compute_metrics(["我今天去学校"], ["我 今天 去 学校"], tokenize="zh")
    assert same["bleu4"] == pytest.approx(100.0) and same["rouge_l"] == pytest.approx(100.0)
    # ROUGE-L over characters: "他明天来" (4) vs "他明天不来" (5): LCS 4
    p, r, b = 1.0, 4 / 5, 1.2
    assert rouge_l_sentence("他明天来", "他 明天 不 来", tokenize="zh") == pytest.approx((1 + b * b) * p * r / (r + b * b * p))
    # with 13a the unspaced sentence is one token: no overlap at all
    assert compute_metrics(["我今天去学校"], ["我 今天 去 学校"], tokenize="13a")["rouge_l"] == 0.0


def test_eval_cli_table_json_and_csv(tmp_path, capsys):
    hyp, ref = _write(tmp_path, HYPS, REFS)
    out_json = tmp_path / "m.json"
    assert main(["eval", "--hyp", str(hyp), "--ref", str(ref), "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "BLEU-4" in printed and "nrefs:1|case:mixed|eff:no|tok:13a" in printed
    m = json.loads(out_json.read_text())
    assert set(["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "chrf"]) <= set(m)
    assert f"{m['bleu4']:.2f}" in printed
    # same hypotheses, shuffled order, CSV: identical scores (matched by id)
    csv_path = tmp_path / "hyp.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "path", "translation", "error"])
        w.writeheader()
        for i in [3, 0, 4, 2, 1]:
            w.writerow({"id": f"s{i}", "path": "", "translation": HYPS[i], "error": ""})
    m2 = evaluate_files(csv_path, ref)
    assert m2["bleu4"] == pytest.approx(m["bleu4"]) and m2["rouge_l"] == pytest.approx(m["rouge_l"])


def test_eval_refuses_mismatched_ids(tmp_path, capsys):
    hyp, ref = _write(tmp_path, HYPS, REFS)
    lines = hyp.read_text().splitlines()
    # drop one, mark one as error, add one unknown id
    err = json.loads(lines[1]); err["error"] = "decode failed"; err["translation"] = None
    extra = {"id": "zzz", "path": "zzz.mp4", "translation": "x"}
    hyp.write_text("\n".join([lines[0], json.dumps(err), *lines[2:4], json.dumps(extra)]) + "\n")
    with pytest.raises(InputError) as ei:
        evaluate_files(hyp, ref)
    msg = str(ei.value)
    assert msg.startswith(str(hyp))
    assert "2 of 5 reference ids missing" in msg and "1 of them are error rows" in msg
    assert "1 ids not in ref.jsonl" in msg
    assert main(["eval", "--hyp", str(hyp), "--ref", str(ref)]) == 2
    err_out = capsys.readouterr().err
    assert "missing" in err_out and len(err_out.strip().splitlines()) == 1


def test_hypothesis_reader_tolerates_partial_last_line_only(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text('{"id": "a", "translation": "x"}\n{"id": "b", "transl')
    hyps, errors = read_hypotheses(p)
    assert hyps == {"a": "x"} and errors == []
    p.write_text('{"id": "a", "transl\n{"id": "b", "translation": "y"}\n')
    with pytest.raises(InputError, match="line 1"):
        read_hypotheses(p)
    p.write_text('{"id": "a", "translation": "x"}\n{"id": "a", "translation": "y"}\n')
    with pytest.raises(InputError, match="more than once"):
        read_hypotheses(p)


RECIPES = {"phoenix2014t": "German", "csl_daily": "Chinese", "how2sign": "English"}


@pytest.mark.parametrize("dataset", sorted(RECIPES))
def test_dataset_recipes_parse_and_validate_on_dev(dataset):
    """The shipped recipes load as typed configs (unknown keys would fail), use
    relative paths only, validate on dev, and never name the test split."""
    from importlib import resources

    from slt_llm.config import SLTConfig, Stage1Config, load_config, to_dict

    root = resources.files("slt_llm") / "configs"
    for stage, cls in (("stage1", Stage1Config), ("stage2", SLTConfig)):
        path = root / f"{dataset}_{stage}.yaml"
        cfg = load_config(cls, str(path), ["llm.load_in_4bit=true"] if stage == "stage2" else [])
        assert cfg.data.train_manifest == f"data/{dataset}/train.jsonl"
        assert cfg.data.dev_manifest == f"data/{dataset}/dev.jsonl"
        assert not hasattr(cfg.data, "test_manifest")  # no test split in training configs: dev selects
        assert cfg.llm.target_language == RECIPES[dataset]

        def strings(d):
            for v in d.values():
                if isinstance(v, dict):
                    yield from strings(v)
                elif isinstance(v, str):
                    yield v

        for s in strings(to_dict(cfg)):
            assert not s.startswith("/") and "test.jsonl" not in s, (path, s)
        if stage == "stage2":
            assert cfg.train.init_encoder == f"runs/{dataset}/stage1/model"
            assert cfg.llm.use_lora and cfg.llm.load_in_4bit


# CSL-Daily-style daily-life Chinese, unsegmented, as CSL-Daily's references are written
ZH_REFS = ["今天天气很好我们去公园散步吧", "请问附近有没有医院", "他每天早上七点起床",
           "我的朋友下个月要结婚了", "这个周末你有时间吗", "我想买一张去北京的火车票"]
ZH_HYPS = ["今天天气很好我们去公园吧", "请问这里有医院吗", "他每天七点起床",
           "我朋友下个月结婚", "周末你有时间吗", "我要买去北京的火车票"]


def test_chinese_is_scored_by_characters_by_default_and_13a_warns(tmp_path, capsys):
    hyp, ref = _write(tmp_path, ZH_HYPS, ZH_REFS)
    want = sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="zh").score
    assert want > 20  # the hypotheses share most characters with the references
    assert main(["eval", "--hyp", str(hyp), "--ref", str(ref), "--json", str(tmp_path / "m.json")]) == 0
    cap = capsys.readouterr()
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["tokenize"] == "zh" and m["bleu4"] == pytest.approx(want) and "tok:zh" in cap.out
    assert "--tokenize zh" in cap.err and len(cap.err.strip().splitlines()) == 1
    # 13a forced on Chinese: kept as asked, with a one-line warning (it scores ~0)
    assert main(["eval", "--hyp", str(hyp), "--ref", str(ref), "--tokenize", "13a", "--json", str(tmp_path / "a.json")]) == 0
    cap = capsys.readouterr()
    m13 = json.loads((tmp_path / "a.json").read_text())
    assert m13["tokenize"] == "13a" and m13["bleu4"] < 1.0 and "warning" in cap.err and "tok:13a" in cap.out
    # English references: 13a by default, no note
    hyp, ref = _write(tmp_path, HYPS, REFS)
    assert main(["eval", "--hyp", str(hyp), "--ref", str(ref)]) == 0
    cap = capsys.readouterr()
    assert "tok:13a" in cap.out and cap.err == ""


def test_stage2_dev_bleu_uses_the_configured_tokenizer(tmp_path):
    from slt_llm.config import SLTConfig, load_config
    from slt_llm.errors import ConfigError
    from slt_llm.training.stage2 import _bleu4, train_slt

    bleu, sig = _bleu4(ZH_HYPS, ZH_REFS, "zh")
    assert bleu == pytest.approx(sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="zh").score) and "tok:zh" in sig
    assert _bleu4(ZH_HYPS, ZH_REFS)[0] < 1.0  # what stage 2 selected checkpoints by before
    recipe = Path(__file__).resolve().parents[1] / "slt_llm" / "configs" / "csl_daily_stage2.yaml"
    assert load_config(SLTConfig, str(recipe)).eval.tokenize == "zh"
    assert load_config(SLTConfig, None).eval.tokenize == "13a"
    bad = load_config(SLTConfig, None, ["data.train_manifest=x.jsonl", "llm.path=x", "eval.tokenize=jieba"])
    with pytest.raises(ConfigError, match="eval.tokenize must be one of"):
        train_slt(bad)
