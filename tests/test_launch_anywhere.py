"""Launch files work from any folder (issue 19, item 2): a relative DeepSpeed JSON
(``train.deepspeed=ds_configs/zero2.json``, or the ``deepspeed_config_file`` an ``accelerate
launch`` config names) is found in the working folder, else beside the config file that named
it, else among the copies shipped in the package (``slt_llm/ds_configs``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slt_llm.config import (Stage1Config, TrainConfig, ds_configs_dir, load_config, resolve_deepspeed_path,
                            save_config)

sys.path.insert(0, str(Path(__file__).parent))
from test_stage1 import _cfg, _losses  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_ds_configs_are_package_data():
    shipped = ds_configs_dir()
    assert shipped.is_relative_to(ROOT / "slt_llm")
    names = {p.name for p in shipped.iterdir()}
    assert {"zero0.json", "zero2.json", "zero3.json", "zero3_offload.json", "accelerate_zero3.yaml"} <= names
    assert (ROOT / "ds_configs" / "zero3.json").read_text() == (shipped / "zero3.json").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for glob in ("configs/*.yaml", "ds_configs/*.json", "ds_configs/*.yaml"):
        assert f'"{glob}"' in pyproject
    # every accelerate config names a JSON that resolves outside the repo too
    for yml in shipped.glob("accelerate_*.yaml"):
        text = yml.read_text()
        if "deepspeed_config_file:" in text:
            named = text.split("deepspeed_config_file:")[1].split()[0]
            assert Path(resolve_deepspeed_path(named)).is_file(), (yml.name, named)


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = ds_configs_dir()
    # 1. not in the working folder, no config folder: the shipped copy (with or without ds_configs/)
    assert resolve_deepspeed_path("ds_configs/zero2.json") == str((shipped / "zero2.json").resolve())
    assert resolve_deepspeed_path("zero3.json") == str((shipped / "zero3.json").resolve())
    # 2. beside the config file that names it
    cfg_dir = tmp_path / "cfgs"
    (cfg_dir / "ds_configs").mkdir(parents=True)
    (cfg_dir / "ds_configs" / "zero2.json").write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    assert resolve_deepspeed_path("ds_configs/zero2.json", cfg_dir) == str((cfg_dir / "ds_configs/zero2.json").resolve())
    yml = cfg_dir / "run.yaml"
    yml.write_text("train:\n  deepspeed: ds_configs/zero2.json\n")
    assert load_config(Stage1Config, str(yml)).train.deepspeed == str((cfg_dir / "ds_configs/zero2.json").resolve())
    # 3. the working folder wins, kept as written
    (tmp_path / "ds_configs").mkdir()
    (tmp_path / "ds_configs" / "zero2.json").write_text(json.dumps({"zero_optimization": {"stage": 0}}))
    assert resolve_deepspeed_path("ds_configs/zero2.json", cfg_dir) == "ds_configs/zero2.json"
    assert load_config(Stage1Config, str(yml)).train.deepspeed == "ds_configs/zero2.json"
    # nowhere: as written (the check names it), absolute paths kept
    assert resolve_deepspeed_path("ds_configs/nope.json") == "ds_configs/nope.json"
    assert resolve_deepspeed_path("/no/such/zero2.json") == "/no/such/zero2.json"


def test_accelerate_launch_config_json_resolves_from_another_folder(tmp_path, monkeypatch):
    """The path ``accelerate launch`` passes on (ACCELERATE_DEEPSPEED_CONFIG_FILE, relative as the
    launch config wrote it) is read from the shipped copy, and the environment says so too."""
    from slt_llm.training.accelerator import _deepspeed_config_path, check_deepspeed_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", "ds_configs/zero3.json")
    found = _deepspeed_config_path(TrainConfig())
    assert found == str((ds_configs_dir() / "zero3.json").resolve()) == os.environ["ACCELERATE_DEEPSPEED_CONFIG_FILE"]
    assert check_deepspeed_config(found)["zero_optimization"]["stage"] == 3
    assert _deepspeed_config_path(TrainConfig(deepspeed="ds_configs/zero2.json")).endswith("slt_llm/ds_configs/zero2.json")


@pytest.mark.slow
def test_stage1_from_another_working_folder(tiny_corpus, tiny_llama, tmp_path):
    """``python -m slt_llm vlp --config run.yaml train.deepspeed=ds_configs/zero2.json`` started
    in an empty folder (no ds_configs/ there): DeepSpeed ZeRO-2 from the shipped JSON, the run trains."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = tmp_path / "run"
    cfg = _cfg(tiny_corpus, tiny_llama, run, "selection.selection=random", "train.epochs=1", "train.max_steps=2",
               "data.dev_manifest=null")
    save_config(cfg, tmp_path / "run.yaml")
    env = dict(os.environ, DS_ACCELERATOR="cpu", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED",
              "ACCELERATE_DEEPSPEED_CONFIG_FILE"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-m", "slt_llm", "vlp", "--config", str(tmp_path / "run.yaml"),
                        "train.deepspeed=ds_configs/zero2.json"], cwd=work, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert not (work / "ds_configs").exists()
    assert [x["step"] for x in _losses(run)] == [1, 2]
    assert (run / "model").is_dir()
    assert "zero_optimization" in r.stdout + r.stderr or "DeepSpeed" in r.stdout + r.stderr
