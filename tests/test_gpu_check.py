"""eval/gpu_check.py's CPU-side parts: the random-weight LLM that stands in for SmolLM2 on a
machine its GGUF cannot reach, and the 7B QLoRA check's shapes (--dry-run)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
import gpu_check  # noqa: E402


def test_random_llm_has_the_shape_and_tokenizer_of_its_model_and_new_weights(tmp_path, tiny_llama):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    like = tmp_path / "shape"  # what eval/gpu_prep.sh carries: everything but the weights
    shutil.copytree(tiny_llama, like, ignore=shutil.ignore_patterns("*.safetensors"))
    out = tmp_path / "random"
    assert gpu_check.main(["random-llm", "--like", str(like), "--out", str(out)]) == 0
    real = load_file(tiny_llama / "model.safetensors")
    rand = AutoModelForCausalLM.from_pretrained(str(out)).state_dict()
    assert {k: tuple(v.shape) for k, v in real.items()} == {k: tuple(rand[k].shape) for k in real}
    assert all(rand[k].dtype == v.dtype for k, v in real.items())
    weights = [k for k, v in real.items() if v.dim() == 2]  # the model's own init: normal(0, initializer_range)
    std = json.loads((like / "config.json").read_text())["initializer_range"]
    assert weights and all(abs(float(rand[k].float().std()) / std - 1) < 0.1 for k in weights)
    text = "am tag regen im norden"
    assert AutoTokenizer.from_pretrained(str(out))(text)["input_ids"] == \
        AutoTokenizer.from_pretrained(str(tiny_llama))(text)["input_ids"]
    n_real = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(tiny_llama)).parameters())
    assert json.loads((out / "random_weights.json").read_text())["params"] == n_real
    assert gpu_check.main(["random-llm", "--like", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2


def test_qlora7b_dry_run_builds_the_7b_shape_on_meta(capsys):
    assert gpu_check.main(["qlora7b", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "RESULT qlora_7b_params_b=7.62" in out
