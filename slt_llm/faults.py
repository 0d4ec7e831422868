"""Deterministic crash points, for tests that kill a real training process.

``SLT_TEST_KILL_AT=NAME:N`` makes the process SIGKILL itself the N-th time it
reaches ``point(NAME)`` (N defaults to 1), so a test can interrupt a run at an
exact place (mid-epoch, inside a checkpoint write, during the trajectory
computation, between the renames of an export) instead of guessing with
timers. Points in the code: ``step`` (after an optimizer step, before its
logging/checkpoint), ``ckpt_write`` (checkpoint state written, completion
marker not yet), ``trajectory`` (one reference checkpoint embedded),
``export_swap`` (old model folder moved aside, new one not yet in place).
Unset (always, outside tests): one environment lookup per call.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "SLT_TEST_KILL_AT"
_seen: dict = {}


def point(name: str) -> None:
    """A place where a test may kill this process (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(count or 1):
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
