"""Every shipped recipe (slt_llm/configs/*.yaml) starts and trains for a step on tiny data,
under the launcher and precision its header comment names, with sizes overridden to tiny:

- in one process, the single-machine command of the header (``slt-llm vlp`` / ``slt-llm
  train`` with the header's own overrides, e.g. QLoRA + 8-bit AdamW), at the recipe's
  ``train.mixed_precision``;
- under ``accelerate launch`` with the launch config the header names (DeepSpeed ZeRO-3,
  bf16) as two gloo processes: tests/test_recipes_launch.py (one dataset recipe per
  stage; the others name the same launcher, precision and model shape, checked here).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "slt_llm" / "configs"
RECIPES = sorted(p.name for p in CONFIGS.glob("*.yaml"))

# sizes only: precision, optimizer, LoRA/QLoRA choices stay the recipe's
TINY_COMMON = [
    "data.clip.max_frames=8", "data.clip.full_size=32", "data.clip.hand_size=16", "data.clip.fps=4",
    "data.num_workers=0", "data.pose_dir=null", "encoder.dim=32", "encoder.keypoint_hidden=16",
    "encoder.num_layers=1", "encoder.num_heads=2", "encoder.temporal_stride=2", "encoder.dropout=0.0",
    "encoder.hand_channels=[8,8]", "encoder.full_channels=[8,8]",
    # resnet18 -> the small cnn: bf16 convolutions on CPUs without AVX-512 run ~50x slower than fp32,
    # a resnet18 step took minutes; the BatchNorm policy of resnet18 is tested in test_encoder.py
    "encoder.hand_backbone=cnn", "encoder.full_backbone=cnn",
    "train.max_steps=1", "train.log_every=1", "train.save_every=0", "train.eval_every=0", "train.progress=false",
    "train.batch_size=4", "optim.warmup_steps=0",
]
TINY_STAGE = {
    "stage1": ["vlp.embed_dim=16", "selection.top_m=4"],
    "stage2": ["train.init_encoder=null", "train.max_new_tokens=3", "train.dev_limit=2", "llm.lora_r=2",
               "llm.lora_alpha=4"],
}


def _stage(recipe: str) -> str:
    return "stage1" if recipe.endswith("_stage1.yaml") else "stage2"


def header_commands(recipe: str) -> list[list[str]]:
    """The launch commands in a recipe's header comment (continuation lines joined), as argv lists."""
    lines = []
    for line in (CONFIGS / recipe).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = "\n".join(lines).replace("\\\n", " ")
    cmds = []
    for line in text.splitlines():
        m = re.search(r"(slt-llm (?:vlp|train) .*|accelerate launch .*)", line)
        if m:
            cmds.append(shlex.split(m.group(1).split(" (")[0]))
    return cmds


def _after_config(argv: list[str]) -> list[str]:
    """The overrides a header command passes after ``--config FILE``."""
    i = argv.index("--config")
    return argv[i + 2:]


def _tiny(recipe: str, corpus: Path, llm: Path, run: Path, text_cache: Path) -> list[str]:
    data = [f"data.train_manifest={corpus / 'train.jsonl'}", f"data.dev_manifest={corpus / 'dev.jsonl'}",
            f"data.cache_dir={corpus / 'recipe_clip_cache'}", f"llm.path={llm}", f"train.run_dir={run}"]
    if _stage(recipe) == "stage1":
        data.append(f"vlp.text_cache_dir={text_cache}")
    return data + TINY_COMMON + TINY_STAGE[_stage(recipe)]


def _first_loss(run: Path) -> float:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(x == x for x in losses), rows  # finite (not NaN)
    return losses[0]


def test_every_recipe_names_its_commands():
    for recipe in RECIPES:
        cmds = header_commands(recipe)
        assert any(c[0] == "slt-llm" for c in cmds), recipe
        if not recipe.startswith("demo_"):
            assert any(c[:2] == ["accelerate", "launch"] for c in cmds), recipe


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_starts_in_one_process(recipe, tiny_corpus, tiny_llama, tmp_path):
    """The header's single-machine command, in process, one optimizer step (+ dev evaluation)."""
    from slt_llm.cli import main

    cmd = next(c for c in header_commands(recipe) if c[0] == "slt-llm")
    run = tmp_path / "run"
    # the demo recipes by name (--config recipe:NAME), the others by path
    config = f"recipe:{Path(recipe).stem}" if recipe.startswith("demo_") else str(CONFIGS / recipe)
    argv = [cmd[1], "--config", config, *_after_config(cmd),
            *_tiny(recipe, tiny_corpus, tiny_llama, run, tmp_path / "text_cache")]
    assert main(argv) == 0
    assert _first_loss(run) > 0
    assert (run / "model").is_dir()


def test_recipes_are_listed_and_load_by_name(capsys):
    from slt_llm.cli import main
    from slt_llm.config import SLTConfig, Stage1Config, load_config
    from slt_llm.errors import ConfigError

    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for recipe in RECIPES:
        name = Path(recipe).stem
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert ("slt-llm vlp" if _stage(recipe) == "stage1" else "slt-llm train") in line, line
        first = (CONFIGS / recipe).read_text().splitlines()[0].lstrip("#").strip()
        assert line.endswith(first), line
        cls = Stage1Config if _stage(recipe) == "stage1" else SLTConfig
        by_name = load_config(cls, f"recipe:{name}", ["train.epochs=3"])
        assert by_name == load_config(cls, str(CONFIGS / recipe), ["train.epochs=3"]), recipe
    assert main(["recipes", "demo_stage2"]) == 0
    assert capsys.readouterr().out.endswith((CONFIGS / "demo_stage2.yaml").read_text())
    with pytest.raises(ConfigError, match="recipe:nope: no such recipe .*demo_stage1"):
        load_config(Stage1Config, "recipe:nope")
    with pytest.raises(ConfigError, match="no such recipe"):
        load_config(Stage1Config, "recipe:../configs/demo_stage1")
    assert main(["vlp", "--config", "recipe:nope"]) == 2
    assert "slt-llm vlp: error: recipe:nope: no such recipe" in capsys.readouterr().err


# one dataset recipe per stage under its multi-process launcher; the others share it
LAUNCHED = {"stage1": "phoenix2014t_stage1.yaml", "stage2": "phoenix2014t_stage2.yaml"}


def _shape(recipe: str) -> tuple:
    raw = yaml.safe_load((CONFIGS / recipe).read_text())
    launch = next(c for c in header_commands(recipe) if c[:2] == ["accelerate", "launch"])
    return (launch[launch.index("--config_file") + 1], raw["train"]["mixed_precision"],
            raw["encoder"]["hand_backbone"], raw["encoder"]["full_backbone"], raw["encoder"].get("batchnorm"))


def test_dataset_recipes_of_a_stage_share_launcher_and_precision():
    for stage, launched in LAUNCHED.items():
        others = [r for r in RECIPES if _stage(r) == stage and not r.startswith("demo_")]
        assert len(others) == 3 and {_shape(r) for r in others} == {_shape(launched)}, others
