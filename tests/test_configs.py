"""Every shipped config loads: the run YAMLs under slt_llm/configs/, the DeepSpeed
JSONs and the accelerate launch configs under ds_configs/ (torchtune
tests/recipes/test_configs.py style)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from slt_llm.config import SLTConfig, Stage1Config, load_config
from slt_llm.training.accelerator import check_deepspeed_config

ROOT = Path(__file__).resolve().parents[1]
RUN_CONFIGS = sorted((ROOT / "slt_llm" / "configs").glob("*.yaml"))
DS_JSON = sorted((ROOT / "ds_configs").glob("*.json"))
ACCEL_YAML = sorted((ROOT / "ds_configs").glob("accelerate_*.yaml"))


def _config_class(path: Path):
    data = yaml.safe_load(path.read_text()) or {}
    if "stage1" in path.stem or {"vlp", "selection"} & set(data):
        return Stage1Config
    return SLTConfig


def test_configs_exist():
    assert len(RUN_CONFIGS) >= 2
    assert {p.name for p in DS_JSON} >= {"zero2.json", "zero3.json", "zero3_offload.json"}
    assert {p.name for p in ACCEL_YAML} >= {"accelerate_zero2.yaml", "accelerate_zero3.yaml",
                                              "accelerate_single_gpu_qlora.yaml"}


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_run_config_loads(path):
    cls = _config_class(path)
    cfg = load_config(cls, str(path))
    assert isinstance(cfg, cls)
    # no absolute paths in shipped configs
    text = path.read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"(^|[\s:\[,'\"])/(home|Users|root|data|mnt|work)/", body), f"absolute path in {path.name}"
    # overrides apply on top of the file
    cfg2 = load_config(cls, str(path), ["train.max_steps=3", "train.seed=7"])
    assert cfg2.train.max_steps == 3 and cfg2.train.seed == 7
    assert cfg.train.mixed_precision in ("no", "bf16", "fp16")
    if cfg.train.deepspeed:
        check_deepspeed_config(ROOT / cfg.train.deepspeed)


@pytest.mark.parametrize("path", DS_JSON, ids=lambda p: p.name)
def test_deepspeed_json(path):
    from accelerate.utils import DeepSpeedPlugin

    data = check_deepspeed_config(path)
    # values Accelerate fills from the run config stay "auto" (one source of truth)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert data[key] == "auto", f"{path.name}: {key} should be auto"
    assert data["bf16"]["enabled"] == "auto" and data["fp16"]["enabled"] == "auto"
    assert "optimizer" not in data and "scheduler" not in data  # ours come from training.optim
    zero = data["zero_optimization"]
    if path.stem.startswith("zero3"):
        assert zero["stage"] == 3
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    if path.stem == "zero2":
        assert zero["stage"] == 2
    if "offload" in path.stem:
        assert zero["offload_param"]["device"] == "cpu" and zero["offload_optimizer"]["device"] == "cpu"
    plugin = DeepSpeedPlugin(hf_ds_config=str(path), gradient_accumulation_steps=2, gradient_clipping=0.5)
    assert plugin.zero_stage == zero["stage"]
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == 2
    assert plugin.deepspeed_config["gradient_clipping"] == 0.5
    json.dumps(plugin.deepspeed_config)


@pytest.mark.parametrize("path", ACCEL_YAML, ids=lambda p: p.name)
def test_accelerate_launch_config(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    raw = yaml.safe_load(path.read_text())
    assert raw["use_cpu"] is False or "use_cpu" not in raw  # use_cpu would switch DeepSpeed off
    if str(cfg.distributed_type).endswith("DEEPSPEED"):
        ds_file = raw["deepspeed_config"]["deepspeed_config_file"]
        assert not Path(ds_file).is_absolute()
        check_deepspeed_config(ROOT / ds_file)
    header = path.read_text().splitlines()[:3]
    assert any("accelerate launch" in line for line in header), "header comment should give the launch command"
