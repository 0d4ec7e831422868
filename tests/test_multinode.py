"""Across machines with accelerate's own multi-node launch: two "machines" on
the loopback address (``accelerate launch --num_machines 2 --machine_rank 0|1
--main_process_ip 127.0.0.1 --main_process_port P``, one gloo process each)
train with the same losses step by step as one process with the same global
batch: stage 2 under ZeRO-3 (the shipped CPU launch config as documented),
stage 1 under ZeRO-2. A run that asked for several machines and finds itself
alone fails with one line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slt_llm.config import SLTConfig, load_config, save_config
from slt_llm.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from test_stage1 import _cfg as stage1_cfg  # noqa: E402  (the tiny stage-1 config)
from test_stage1 import _losses as stage1_losses  # noqa: E402
from test_stage2 import make_corpus, make_run, train_losses  # noqa: E402  (the tiny stage-2 run)

REPO = Path(__file__).resolve().parents[1]
ACCELERATE = str(Path(sys.executable).parent / "accelerate")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_machines(launch_cfg: str, script: str, run_cfg: Path, *extra: str, timeout: int = 400) -> list:
    """Start machine 0 and machine 1 (each its own ``accelerate launch``, one
    process each) exactly as on two hosts, wait for both; returns their
    CompletedProcess-like (returncode, output) pairs."""
    env = dict(os.environ, DS_ACCELERATOR="cpu", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_DEEPSPEED"):
        env.pop(k, None)
    port = str(_port())
    procs = []
    for rank in (0, 1):
        cmd = [ACCELERATE, "launch", "--config_file", launch_cfg, "--num_machines", "2", "--num_processes", "2",
               "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", port,
               script, "--config", str(run_cfg), *extra]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    out = []
    try:
        for p in procs:
            out.append((p.wait(timeout=timeout), p.stdout.read()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for rank, (rc, text) in enumerate(out):
        if rc != 0:
            pytest.fail(f"machine {rank} failed ({rc}):\n" + "\n".join(text.splitlines()[-40:]))
    assert not (REPO / ".deepspeed_env").exists() or "pdsh" not in out[0][1]  # the pdsh path was not taken
    return out


@pytest.mark.slow
def test_stage2_two_machines_zero3_match_one_process(tmp_path_factory, tiny_corpus, tiny_llama):
    from slt_llm.training.stage2 import train_slt

    root = tmp_path_factory.mktemp("multinode2")
    corpus = make_corpus(tiny_corpus, root / "corpus")
    common = dict(max_steps=3, save_every=0, eval_every=0)
    ref_cfg = make_run(corpus, tiny_llama, root / "ref", root / "cache", batch_size=4, **common)
    no_dev = ["data.dev_manifest=null"]
    ref = train_slt(load_config(SLTConfig, str(ref_cfg), no_dev))  # one plain process, batch 4
    assert ref["world_size"] == 1
    two_cfg = make_run(corpus, tiny_llama, root / "two", root / "cache", batch_size=2, **common)
    out = launch_two_machines("ds_configs/accelerate_cpu_2proc_zero3.yaml", "scripts/train_slt.py", two_cfg,
                              "train.num_machines=2", *no_dev)
    summary = json.loads([x for x in out[0][1].splitlines() if x.startswith("{")][-1])
    assert summary["world_size"] == 2 and summary["steps"] == 3 and "ZeRO 3" in out[0][1]
    one, two = train_losses(root / "ref"), train_losses(root / "two")
    assert sorted(two) == [1, 2, 3]
    for step in (1, 2, 3):
        assert two[step] == pytest.approx(one[step], rel=2e-4, abs=1e-5), (step, one, two)
    assert len({round(v, 6) for v in one.values()}) == 3  # it trained: the losses moved


@pytest.mark.slow
def test_stage1_two_machines_zero2_match_one_process(tiny_corpus, tiny_llama, tmp_path):
    from slt_llm.training.stage1 import train_vlp

    common = ["selection.selection=random_fn", "train.max_steps=3", "data.dev_manifest=null",
              "optim.max_grad_norm=0", "optim.warmup_steps=0", "optim.schedule=constant"]
    train_vlp(stage1_cfg(tiny_corpus, tiny_llama, tmp_path / "one", *common, "train.deepspeed=ds_configs/zero2.json"))
    save_config(stage1_cfg(tiny_corpus, tiny_llama, tmp_path / "two", *common, "train.batch_size=4",
                           "train.num_machines=2"), tmp_path / "two.yaml")
    out = launch_two_machines("ds_configs/accelerate_zero2.yaml", "scripts/train_vlp.py", tmp_path / "two.yaml")
    one, two = stage1_losses(tmp_path / "one"), stage1_losses(tmp_path / "two")
    assert [x["step"] for x in two] == [1, 2, 3]  # one run of global batch 8 (two lone runs would log 6 rows)
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
    assert one[-1]["loss"] != one[0]["loss"]


def test_run_that_expected_machines_refuses_to_train_alone(tmp_path, tiny_corpus, tiny_llama, capsys, monkeypatch):
    """train.num_machines=2 in a process that is alone (what every machine was
    under the pdsh fallback): one line, before any model is built; a launcher
    world that the process group does not match is refused too."""
    from slt_llm import distributed as dist_
    from slt_llm.cli import main

    corpus = make_corpus(tiny_corpus, tmp_path / "corpus")
    cfg = make_run(corpus, tiny_llama, tmp_path / "run", tmp_path / "cache")
    code = main(["train", "--config", str(cfg), "train.num_machines=2"])
    err = capsys.readouterr().err
    assert code == 2 and "train.num_machines=2 but this run found 1 machine(s)" in err and err.count("\n") == 1
    assert "deepspeed_multinode_launcher: standard" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
    monkeypatch.setenv("WORLD_SIZE", "2")  # launched as 2, but no process group joined
    with pytest.raises(ConfigError, match="WORLD_SIZE=2.*process group has 1"):
        dist_.check_world(None)
    monkeypatch.delenv("WORLD_SIZE")
    dist_.check_world(1)  # alone and asked for one machine: fine


def test_shipped_deepspeed_launch_configs_use_the_standard_multinode_launcher():
    """Every accelerate config with DeepSpeed names the launcher that works
    without pdsh/ssh and a hostfile (accelerate's default is pdsh)."""
    found = 0
    for p in sorted((REPO / "ds_configs").glob("accelerate_*.yaml")):
        cfg = yaml.safe_load(p.read_text())
        if cfg.get("distributed_type") == "DEEPSPEED":
            found += 1
            assert cfg["deepspeed_config"].get("deepspeed_multinode_launcher") == "standard", p.name
            assert cfg.get("same_network") is True and cfg.get("rdzv_backend") == "static", p.name
    assert found >= 4
