"""The layout of a run folder (``train.run_dir``), in one place for both stages and the analysis.

::

    RUN_DIR/
      run.json                    which run this is: run id, stage, config hash (training.run_folder)
      config.yaml                 the resolved config of the run
      metrics.jsonl               one JSON line per logged step (training.metrics_log)
      checkpoints/step_N/         Accelerate state (+ ZeRO shards) + trainer_state.json (training.checkpoint)
      model/                      the exported model (best on dev, or the final one without dev)
      result.json                 stage 1's summary
      train_texts.json            stage 1: the sentence of each training index (after unreadable samples)
      reference/ref_KK/           stage 1: reference checkpoints (stage-1 model folders)
      reference/trajectories.npz  stage 1: similarity trajectories over the reference checkpoints
      reference_run/              stage 1, pair selection with selection.protocol=separate: the
                                  reference run (a random-batch stage-1 run with its own reference/)
      text_cache/                 stage 1: frozen-LLM sentence embeddings (unless vlp.text_cache_dir)
      tb/                         TensorBoard logs when tensorboard is installed

Imports nothing above ``slt_llm.config``: every layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"
MODEL_DIR = "model"
RESULT_FILE = "result.json"
TEXTS_FILE = "train_texts.json"
REFERENCE_DIR = "reference"
TRAJ_FILE = "trajectories.npz"
REFERENCE_RUN_DIR = "reference_run"
TEXT_CACHE_DIR = "text_cache"
TENSORBOARD_DIR = "tb"
STAGE1_MODEL_CONFIG = "vlp_config.yaml"  # the file that makes a folder a stage-1 model folder


def _in_run(name: str, what: str):
    """The function ``run_dir -> Path(run_dir) / name`` (one entry of the layout above)."""

    def path(run_dir: str | os.PathLike) -> Path:
        return Path(run_dir) / name

    path.__doc__ = f"``RUN_DIR/{name}``: {what}."
    return path


config_path = _in_run(CONFIG_FILE, "the resolved config of the run")
metrics_path = _in_run(METRICS_FILE, "one JSON line per logged step")
checkpoints_root = _in_run(CHECKPOINT_DIR, "the training checkpoints step_N/")
model_dir = _in_run(MODEL_DIR, "the exported model")
result_path = _in_run(RESULT_FILE, "stage 1's summary")
texts_path = _in_run(TEXTS_FILE, "stage 1: the sentence of each training index")
reference_root = _in_run(REFERENCE_DIR, "stage 1: reference checkpoints and trajectories")
reference_run_dir = _in_run(REFERENCE_RUN_DIR, "where the separate reference run of a pair-selection run lives")
tensorboard_dir = _in_run(TENSORBOARD_DIR, "TensorBoard logs")


def checkpoint_dir(run_dir: str | os.PathLike, step: int) -> Path:
    return checkpoints_root(run_dir) / f"step_{step}"


def reference_dir(run_dir: str | os.PathLike, k: int) -> Path:
    """The k-th (0-based) reference checkpoint folder ``RUN_DIR/reference/ref_KK``."""
    return reference_root(run_dir) / f"ref_{k:02d}"


def reference_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """The complete reference checkpoints of a run (``RUN_DIR/reference/ref_KK``), in order."""
    root = reference_root(run_dir)
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("ref_") and "." not in d.name
                  and (d / STAGE1_MODEL_CONFIG).is_file())


def trajectories_path(run_dir: str | os.PathLike) -> Path:
    return reference_root(run_dir) / TRAJ_FILE


def text_cache_dir(cfg) -> str:
    """``vlp.text_cache_dir`` of a Stage1Config, or ``RUN_DIR/text_cache``."""
    return cfg.vlp.text_cache_dir or str(Path(cfg.train.run_dir) / TEXT_CACHE_DIR)

