"""Stage-1 settings checked and derived before any work: the arms and protocols of
``selection``, :func:`validate_config` (every config error that must surface before a long
run), and the reference run of the ``separate`` protocol (:func:`reference_run_config`).
``slt_llm.training.stage1`` re-exports these names.
"""

from __future__ import annotations

import dataclasses

from slt_llm import run_layout as layout
from slt_llm.config import Stage1Config
from slt_llm.errors import ConfigError
from slt_llm.models.vlp import SIMILARITIES

ARMS = ("ps", "random", "random_fn")
PROTOCOLS = ("separate", "continuation")


def num_reference_checkpoints(cfg: Stage1Config) -> int:
    return cfg.selection.ref_epochs // max(1, cfg.selection.ref_interval)


def validate_config(cfg: Stage1Config) -> None:
    """Config errors that must surface before any long work."""
    sel = cfg.selection
    if sel.selection not in ARMS:
        raise ConfigError(f"selection.selection must be one of {', '.join(ARMS)} (got {sel.selection!r})")
    if not cfg.llm.path:
        raise ConfigError("llm.path is not set: stage 1 aligns to a frozen LLM's text space")
    if cfg.vlp.similarity not in SIMILARITIES:
        raise ConfigError(f"vlp.similarity must be one of {', '.join(SIMILARITIES)} (got {cfg.vlp.similarity!r})")
    if cfg.vlp.translation_weight < 0:
        raise ConfigError(f"vlp.translation_weight must be >= 0 (got {cfg.vlp.translation_weight})")
    if not cfg.data.train_manifest:
        raise ConfigError("data.train_manifest is not set")
    if cfg.train.grad_accum != 1:
        raise ConfigError("stage 1 needs train.grad_accum=1: contrastive negatives come from the batch; "
                          "raise train.batch_size or the number of processes instead")
    if sel.ref_interval < 1:
        raise ConfigError(f"selection.ref_interval must be >= 1 (got {sel.ref_interval})")
    if sel.protocol not in PROTOCOLS:
        raise ConfigError(f"selection.protocol must be one of {', '.join(PROTOCOLS)} (got {sel.protocol!r})")
    if sel.selection == "ps" and not (sel.protocol == "separate" and sel.reference_run):
        k = num_reference_checkpoints(cfg)
        if k < 2:
            raise ConfigError(f"pair selection needs K >= 2 reference checkpoints; selection.ref_epochs="
                              f"{sel.ref_epochs} with ref_interval={sel.ref_interval} gives K={k}")
    if sel.selection == "ps" and sel.protocol == "separate" and sel.reference_run:
        k = len(layout.reference_dirs(sel.reference_run))
        if k < 2:
            raise ConfigError(f"selection.reference_run={sel.reference_run} has {k} reference checkpoint(s) "
                              f"under {layout.REFERENCE_DIR}/; pair selection needs K >= 2")
    if sel.candidates not in ("top_m", "all"):
        raise ConfigError(f"selection.candidates must be top_m or all (got {sel.candidates!r})")
    from slt_llm.contrastive.dense import SCORES

    if sel.score not in SCORES:
        raise ConfigError(f"selection.score must be one of {', '.join(SCORES)} (got {sel.score!r})")
    if sel.score != "delta" and sel.candidates != "all":
        raise ConfigError(f"selection.score={sel.score} is a control of the dense selector: it needs "
                          f"selection.candidates=all")
    if sel.selection == "ps" and sel.protocol == "continuation":
        if cfg.train.max_steps is None and sel.ref_epochs >= cfg.train.epochs:
            raise ConfigError(f"selection.ref_epochs={sel.ref_epochs} leaves no pair-selection epoch "
                              f"(train.epochs={cfg.train.epochs})")


def uses_separate_reference(cfg: Stage1Config) -> bool:
    return cfg.selection.selection == "ps" and cfg.selection.protocol == "separate"


def reference_run_config(cfg: Stage1Config) -> Stage1Config:
    """The reference run of ``cfg`` (protocol ``separate``): the ``random`` arm with the same
    data, model, optimizer and seed, ``selection.ref_epochs`` epochs, a reference checkpoint
    every ``ref_interval`` epochs, no dev evaluation (its checkpoints, not its best model, are
    what pair selection uses), in ``RUN_DIR/reference_run``."""
    sel = dataclasses.replace(cfg.selection, selection="random", protocol="continuation", reference_run=None)
    train = dataclasses.replace(cfg.train, epochs=cfg.selection.ref_epochs, max_steps=None,
                                run_dir=str(layout.reference_run_dir(cfg.train.run_dir)), eval_every=0)
    data = dataclasses.replace(cfg.data, dev_manifest=None)
    vlp = cfg.vlp if cfg.vlp.text_cache_dir else dataclasses.replace(cfg.vlp, text_cache_dir=layout.text_cache_dir(cfg))
    return dataclasses.replace(cfg, selection=sel, train=train, data=data, vlp=vlp)
