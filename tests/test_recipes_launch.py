"""Dataset recipes under the multi-process launcher their header names: ``accelerate launch
--config_file ds_configs/accelerate_zero3.yaml`` (DeepSpeed ZeRO-3, bf16) as two gloo processes,
one recipe per stage (tests/test_recipes.py checks the other dataset recipes of a stage name the
same launcher, precision and model shape). The stage-1 launch starts from an EMPTY text-embedding
cache under a subprocess timeout (it used to hang: rank 0 alone built the frozen LLM under
zero.Init while the others waited), and bf16 under DeepSpeed used to fail at stage 1's first step
(inputs outside the autocast context). Sizes are tiny (see test_recipes.TINY_COMMON)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_recipes import CONFIGS, LAUNCHED, ROOT, _first_loss, _tiny, header_commands  # noqa: E402

ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(LAUNCHED))
def test_recipe_starts_under_its_launcher_two_processes(stage, tiny_corpus, tiny_llama, tmp_path):
    """``accelerate launch --config_file <the header's> --num_processes 2`` (gloo, DeepSpeed ZeRO-3,
    bf16) with an empty text cache: one step and the dev evaluation finish, within a timeout."""
    recipe = LAUNCHED[stage]
    cmd = next(c for c in header_commands(recipe) if c[:2] == ["accelerate", "launch"])
    launch_cfg = cmd[cmd.index("--config_file") + 1]
    script = next(a for a in cmd if a.startswith("scripts/"))
    run = tmp_path / "run"
    cache = tmp_path / "empty_text_cache"
    assert not cache.exists()
    env = dict(os.environ, DS_ACCELERATOR="cpu", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED"):
        env.pop(k, None)
    argv = [ACCELERATE, "launch", "--config_file", launch_cfg, "--num_processes", "2",
            "--main_process_port", str(_port()), script, "--config", str(CONFIGS / recipe),
            *_tiny(recipe, tiny_corpus, tiny_llama, run, cache), "train.batch_size=2"]
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"{recipe} under {launch_cfg} did not finish in 240 s (hang?):\n{out[-2000:]}")
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).splitlines()
        errors = [x for x in lines if re.match(r"\s*(\[rank\d+\]: )?\w*(Error|Exception)\b", x)]
        pytest.fail(f"{recipe} under {launch_cfg} failed ({proc.returncode}): " + " | ".join(errors[:4]) + "\n"
                    + "\n".join(lines[-15:]))
    assert "ZeRO 3" in proc.stdout or stage == "stage1"
    assert _first_loss(run) > 0 and (run / "model").is_dir()
    if stage == "stage1":
        assert any(cache.iterdir())  # the cold cache was filled
        # the paper's protocol (the default) under the launcher: a reference run, then a fresh
        # model in the same processes (a second Accelerator with its own DeepSpeed plugin)
        result = json.loads((run / "result.json").read_text())
        assert result["protocol"] == "separate" and result["reference_s"] > 0
        refs = sorted(p.name for p in (run / "reference_run" / "reference").iterdir() if p.name.startswith("ref_"))
        assert len(refs) >= 2 and (run / "reference" / "trajectories.npz").is_file()
