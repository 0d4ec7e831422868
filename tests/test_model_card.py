"""Model cards (slt_llm.models.model_card): every model folder (stage 1, stage 2, merged export)
carries a README.md written with huggingface_hub.ModelCard that states the base LLM (absolute path
+ identity), the training data (manifests, sizes, corpus profile and text hash), the config, the
metrics with their sacrebleu signatures; its Python snippet runs as written; `slt-llm eval --model`
adds test scores; PEFT's blank template never survives; a copied folder loads from anywhere;
files are readable as ordinary files (0666 minus the umask)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
import torch

from slt_llm.cli import main
from slt_llm.config import SLTConfig, load_config
from test_stage2 import make_run

BLANK = "[More Information Needed]"


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def all_modes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*") if p.is_file()}


def no_blank_cards(folder: Path) -> None:
    for p in folder.rglob("*.md"):
        assert BLANK not in p.read_text(), p


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_corpus, tiny_llama):
    """A tiny stage-2 run (2 steps, dev at step 2) under umask 022: its exported model folder."""
    from slt_llm.training.stage2 import train_slt

    root = tmp_path_factory.mktemp("card")
    old = os.umask(0o022)
    try:
        cfg = load_config(SLTConfig, str(make_run(tiny_corpus, tiny_llama, root / "run", root / "cache", max_steps=2,
                                                   save_every=0, eval_every=2, dev_limit=3)))
        summary = train_slt(cfg)
    finally:
        os.umask(old)
    return root, Path(summary["model_dir"]), summary


def test_stage2_card_states_what_the_folder_is(run, tiny_corpus, tiny_llama):
    from huggingface_hub import ModelCard

    root, model, summary = run
    card = ModelCard.load(model / "README.md")
    meta = json.loads((model / "meta.json").read_text())
    text = card.text
    # card data
    assert card.data.base_model == str(tiny_llama.resolve()) and card.data.library_name == "peft"
    assert card.data.license == "mit"  # the tiny stand-in LLM is this project's
    assert "sign-language-translation" in card.data.tags and "lora" in card.data.tags
    assert {"bleu", "chrf"} <= set(card.data.metrics)
    assert card.data.eval_results[0].metric_value == round(summary["best_dev_bleu"], 2)
    # base LLM: absolute path + identity hash as recorded in meta.json
    assert meta["base_llm"]["identity"] in text and str(tiny_llama.resolve()) in text
    # training data: manifest paths, sizes, corpus profile and text hash (corpus.json beside them)
    corpus = json.loads((tiny_corpus / "corpus.json").read_text())
    for split in ("train", "dev"):
        manifest = (tiny_corpus / f"{split}.jsonl").resolve()
        rows = sum(1 for x in manifest.read_text().splitlines() if x.strip())
        assert f"| {split} | `{manifest}` | {rows} |" in text
    assert corpus["text_hash"] in text and f"profile `{corpus['profile']}`" in text
    # config: where the run's resolved config is
    assert str((root / "run" / "config.yaml").resolve()) in text and (root / "run" / "config.yaml").is_file()
    # dev BLEU with the sacrebleu signature of metrics.jsonl
    dev = [json.loads(x) for x in (root / "run" / "metrics.jsonl").read_text().splitlines() if "dev_bleu4" in x][-1]
    assert dev["bleu_signature"] in text and f"| {dev['dev_bleu4']:.2f} |" in text
    # how to use it
    assert f"slt-llm translate --model {model.resolve()}" in text and "hf upload" in text
    no_blank_cards(model)
    assert (model / "adapter" / "README.md").is_file()  # PEFT's template replaced, not just deleted


def test_card_python_snippets_run_as_written(run, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from slt_llm.models.slt_model import SLTModel

    _, model, _ = run
    monkeypatch.chdir(tmp_path)  # nothing relative to the working folder
    text = (model / "README.md").read_text()
    plain, whole = code_blocks(text, "python")
    ns: dict = {}
    exec(compile(plain, "card-snippet", "exec"), ns)  # noqa: S102  (the card's own code)
    from peft import PeftModel

    assert isinstance(ns["llm"], PeftModel)
    ref = SLTModel.from_pretrained(model)
    theirs = {n: p for n, p in ns["llm"].named_parameters() if "lora_" in n}
    ours = {n: p for n, p in ref.llm.named_parameters() if "lora_" in n}
    assert theirs.keys() == ours.keys() and theirs
    for n in ours:
        torch.testing.assert_close(theirs[n], ours[n])
    for part in ("encoder", "projector"):
        sd = getattr(ref, part).state_dict()
        assert ns[part].keys() == sd.keys()
        for k in sd:
            torch.testing.assert_close(ns[part][k], sd[k])
    assert ns["tokenizer"].encode("the weather") == ref.tokenizer.encode("the weather")
    assert load_file(str(model / "adapter" / "adapter_model.safetensors"))
    ns2: dict = {}
    exec(compile(whole, "card-snippet-2", "exec"), ns2)  # noqa: S102
    assert isinstance(ns2["model"], SLTModel)
    # the adapter's own card: AutoPeftModelForCausalLM finds the base LLM by itself
    ns3: dict = {}
    exec(compile(code_blocks((model / "adapter" / "README.md").read_text(), "python")[0], "adapter", "exec"), ns3)  # noqa: S102
    assert isinstance(ns3["llm"], PeftModel)


def test_files_are_readable_and_follow_the_umask(run, tiny_llama, tmp_path):
    from slt_llm.models.slt_model import SLTModel

    root, model, _ = run
    modes = all_modes(model)
    assert "encoder.safetensors" in modes and "adapter/adapter_model.safetensors" in modes
    assert set(modes.values()) == {0o644}, modes  # written under umask 022 (safetensors alone gives 0600)
    ckpt = all_modes(root / "run" / "checkpoints")  # the last checkpoint (model.safetensors, optimizer, state)
    assert any(k.endswith(".safetensors") for k in ckpt) and set(ckpt.values()) == {0o644}, ckpt
    m = SLTModel.from_pretrained(model)
    old = os.umask(0o027)
    try:
        m.save_pretrained(tmp_path / "strict")
        from slt_llm.models.tiny_llm import build_tiny_llm

        build_tiny_llm(tmp_path / "llm", family="llama", texts=None, steps=0, seed=0)
    finally:
        os.umask(old)
    assert set(all_modes(tmp_path / "strict").values()) == {0o640}
    assert set(all_modes(tmp_path / "llm").values()) == {0o640}


def test_copied_folder_loads_from_anywhere(run, tmp_path, monkeypatch):
    from peft import AutoPeftModelForCausalLM

    from slt_llm.models.slt_model import SLTModel

    _, model, _ = run
    copy = tmp_path / "elsewhere" / "my_model"
    shutil.copytree(model, copy)
    monkeypatch.chdir(tmp_path / "elsewhere")
    a, b = SLTModel.from_pretrained("my_model"), SLTModel.from_pretrained(model)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q)
    assert AutoPeftModelForCausalLM.from_pretrained("my_model/adapter") is not None


def test_eval_with_model_adds_test_scores_to_the_card(run, tiny_corpus, tmp_path, capsys):
    from huggingface_hub import ModelCard

    _, model, _ = run
    out = tmp_path / "test_out.jsonl"
    assert main(["translate", "--model", str(model), "--input", str(tiny_corpus / "test.jsonl"), "--out", str(out),
                 "--max-new-tokens", "4", "--no-progress"]) == 0
    # a folder that is not a model is refused before any scoring
    assert main(["eval", "--hyp", str(out), "--ref", str(tiny_corpus / "test.jsonl"), "--model", str(tmp_path)]) == 2
    assert "not a stage-2 model folder" in capsys.readouterr().err
    scores = tmp_path / "scores.json"
    for _ in range(2):  # a re-run replaces the entry of the same reference file
        assert main(["eval", "--hyp", str(out), "--ref", str(tiny_corpus / "test.jsonl"), "--model", str(model),
                     "--json", str(scores)]) == 0
    s = json.loads(scores.read_text())
    meta = json.loads((model / "meta.json").read_text())
    assert len(meta["evaluations"]) == 1 and meta["evaluations"][0]["bleu4"] == s["bleu4"]
    card = ModelCard.load(model / "README.md")
    assert s["signature"]["bleu"] in card.text and str((tiny_corpus / "test.jsonl").resolve()) in card.text
    assert any(r.dataset_split == "test" and r.metric_value == round(s["bleu4"], 2) for r in card.data.eval_results)


def test_merged_export_card(run, tiny_llama, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    _, model, _ = run
    out = tmp_path / "merged"
    assert main(["export", "--model", str(model), "--out", str(out)]) == 0
    card = ModelCard.load(out / "README.md")
    meta = json.loads((model / "meta.json").read_text())
    assert card.data.base_model == str(tiny_llama.resolve()) and card.data.library_name == "transformers"
    assert meta["base_llm"]["identity"] in card.text and str(out) in card.text and ".export-" not in card.text
    assert "merged" in card.data.tags and "needs no base LLM" in card.text
    assert meta["dev"]["signature"] in card.text  # the training facts travel with the export
    no_blank_cards(out)
    assert set(all_modes(out).values()) == {0o666 & ~_umask()}
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code_blocks(card.text, "python")[0], "merged-snippet", "exec"), ns)  # noqa: S102
    from slt_llm.models.slt_model import SLTModel

    ref = SLTModel.from_pretrained(out)
    for (n, p), (_, q) in zip(ns["llm"].named_parameters(), ref.llm.named_parameters()):
        torch.testing.assert_close(p, q)


def _umask() -> int:
    from slt_llm.models.model_card import current_umask

    return current_umask()


def test_stage1_card(tiny_corpus, tiny_llama, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    from slt_llm.models.llm import llm_identity
    from slt_llm.training.stage1 import train_vlp
    from test_stage1 import _cfg

    run = tmp_path / "vlp"
    res = train_vlp(_cfg(tiny_corpus, tiny_llama, run, "selection.selection=random", "train.epochs=1",
                         "train.eval_every=3"))
    model = run / "model"
    card = ModelCard.load(model / "README.md")
    assert card.data.base_model == str(tiny_llama.resolve()) and "stage 1" in card.text
    assert llm_identity(tiny_llama)["identity"] in card.text
    assert str((tiny_corpus / "train.jsonl").resolve()) in card.text and str(run.resolve() / "config.yaml") in card.text
    assert f"| dev | " in card.text and f"{res['best_dev_r1']:.2f}" in card.text
    assert f"train.init_encoder={model.resolve()}" in card.text
    assert set(all_modes(model).values()) == {0o666 & ~_umask()}
    no_blank_cards(model)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for block in code_blocks(card.text, "python"):
        exec(compile(block, "stage1-snippet", "exec"), ns)  # noqa: S102
    from safetensors.torch import load_file

    assert ns["encoder"].keys() == load_file(str(model / "encoder.safetensors")).keys()
    assert type(ns["model"]).__name__ == "VLPModel"
