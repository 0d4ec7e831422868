"""Library notices a user cannot act on are off by default and back with ``--verbose``
(slt_llm.cli.noise): bitsandbytes' missing-kernels line and library FutureWarnings; real
warnings (other categories, other records of the same logger, FutureWarnings of our own code)
always show."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest

from slt_llm.cli import noise

# what the command line does, then what a command does later: import bitsandbytes (peft does),
# and warnings / log records from library modules and from ours
DRIVER = r"""
import logging, sys, warnings
from slt_llm.cli import main
main([*sys.argv[1:], "recipes"])
import bitsandbytes
try:
    import kernels  # noqa: F401
    kernels_missing = False
except ImportError:
    kernels_missing = True
from bitsandbytes.functional import has_avx512bf16
print("BNB_PRINTS_IT=%d" % (kernels_missing and bool(has_avx512bf16())))
warnings.warn_explicit("`is_gradient_checkpointing` is deprecated", FutureWarning, "modeling_utils.py", 1,
                       module="transformers.modeling_utils")
warnings.warn_explicit("`all_gather_into_tensor` is deprecated", FutureWarning, "c10d_logger.py", 83,
                       module="torch.distributed.c10d_logger")
warnings.warn_explicit("OURS: a FutureWarning of our own code", FutureWarning, "stage2.py", 1,
                       module="slt_llm.training.stage2")
warnings.warn_explicit("REAL: a library UserWarning", UserWarning, "modeling_utils.py", 2,
                       module="transformers.modeling_utils")
logging.getLogger("bitsandbytes.backends.cpu.ops").warning("REAL: another bitsandbytes record")
from accelerate.logging import get_logger
from accelerate.state import PartialState
PartialState()
acc = get_logger("accelerate.utils.other")
acc.warning("Removed shared tensor {'llm.lm_head.weight'} while saving. This should be OK, but check ...")
acc.warning("REAL: another accelerate record")
"""


def _run(*flags: str, env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", noise.VERBOSE_ENV)}
    env.update(env_extra or {})
    r = subprocess.run([sys.executable, "-c", DRIVER, *flags], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("mode", ["default", "--verbose", "env"])
def test_noise_off_by_default_and_back_with_verbose(mode):
    r = _run(*(["--verbose"] if mode == "--verbose" else []),
             env_extra={noise.VERBOSE_ENV: "1"} if mode == "env" else None)
    err = r.stderr
    # real warnings show in every mode
    assert "OURS: a FutureWarning of our own code" in err
    assert "REAL: a library UserWarning" in err
    assert "REAL: another bitsandbytes record" in err
    assert "REAL: another accelerate record" in err
    tied = "Removed shared tensor" in err
    library_future = ("`is_gradient_checkpointing` is deprecated" in err,
                      "`all_gather_into_tensor` is deprecated" in err)
    bnb_line = noise.BNB_KERNELS_MESSAGE in err
    if mode == "default":
        assert library_future == (False, False) and not bnb_line and not tied, err
    else:
        assert library_future == (True, True) and tied, err
        if "BNB_PRINTS_IT=1" in r.stdout:  # this CPU (AVX512-BF16) without `kernels`: bitsandbytes says it
            assert bnb_line, err


def test_user_warning_options_win_and_filters_are_idempotent(monkeypatch):
    logger = logging.getLogger(noise.BNB_LOGGER)
    before = list(logger.filters)
    with warnings.catch_warnings():
        monkeypatch.setattr(sys, "warnoptions", ["default"])  # -W default / PYTHONWARNINGS given
        n = len(warnings.filters)
        noise.quiet_library_noise(False)
        assert len(warnings.filters) == n  # the user's setting is left alone
        monkeypatch.setattr(sys, "warnoptions", [])
        noise.quiet_library_noise(False)
        noise.quiet_library_noise(False)
        assert len(warnings.filters) == n + 1
        assert sum(noise._ours(f) for f in logger.filters) == 1
        noise.quiet_library_noise(True)  # --verbose in a later main() of the same process
        assert len(warnings.filters) == n and not any(noise._ours(f) for f in logger.filters)
        assert os.environ[noise.VERBOSE_ENV] == "1"
    monkeypatch.delenv(noise.VERBOSE_ENV)
    logger.filters[:] = before
