"""A run whose loss stops being finite ends at once, with one line, and exports nothing.

Both stages call :func:`stop_if_not_finite` right after each optimizer step, before any
logging, evaluation, export or checkpoint of that step, with the step's global loss (the
same on every rank, so every rank stops together) and, in stage 1, each objective term. The
error names the step, the terms that are not finite and the learning rates the step ran with;
``slt-llm`` prints it as one line and exits with status 2. The weights of that step are never
written: the last checkpoint and the exported best model are from earlier, finite steps
(``TrainerState.update_best`` also ignores a non-finite score).
"""

from __future__ import annotations

import math
from typing import Mapping

from slt_llm.errors import SLTError


class TrainingDiverged(SLTError):
    """The loss became NaN or infinite."""


def stop_if_not_finite(stage: str, step: int, losses: Mapping[str, float], lrs: Mapping[str, float]) -> None:
    """Raise :class:`TrainingDiverged` when any value of ``losses`` is not finite.

    ``losses``: name -> global value (``loss``, and per-term ``loss_align`` ... when known);
    ``lrs``: parameter-group name -> learning rate of the step."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(float(v))}
    if not bad:
        return
    terms = ", ".join(f"{k}={float(v)}" for k, v in losses.items())
    rates = ", ".join(f"{k}={float(v):.3g}" for k, v in lrs.items())
    raise TrainingDiverged(
        f"{stage}: the loss is not finite at step {step} ({terms}); learning rates {rates}. Stopped: nothing "
        f"from this step was saved or exported; lower the learning rates (optim.lr_*) or check the inputs")
