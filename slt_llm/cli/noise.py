"""Library output a user of ``slt-llm`` cannot act on stays out of the log unless asked for
(``slt-llm --verbose COMMAND ...``, or ``SLT_LLM_VERBOSE=1`` in the environment, which also
reaches every process of an ``accelerate launch``).

Silenced by default, each at its source and nothing more:

* bitsandbytes' ``Failed to load CPU gemm_4bit_forward from kernels-community: ...``: a WARNING
  record of the logger ``bitsandbytes.backends.cpu.ops``, logged when bitsandbytes is imported
  (peft imports it, so every command that loads an LLM printed it) on CPUs with AVX512-BF16
  when the optional ``kernels`` package is absent; 4-bit layers on CPU work without it. A
  ``logging.Filter`` on that logger drops records starting with that text; its other records pass.
* accelerate's ``Removed shared tensor {...lm_head.weight} while saving. This should be OK, ...``:
  a WARNING of ``accelerate.utils.other`` at every checkpoint of a model with tied input/output
  embeddings (SmolLM2, Qwen2.5 small, Llama-3.2): safetensors cannot hold a tensor twice, and
  the tie is restored on load (the resume tests check the losses). Same kind of filter.
* ``FutureWarning`` attributed to a module of the libraries in ``LIBRARIES`` (e.g. torch's
  "``all_gather_into_tensor`` is deprecated" raised inside DeepSpeed's ZeRO, transformers'
  "``is_gradient_checkpointing`` is deprecated" raised inside peft/DeepSpeed): deprecations
  between those libraries, fixed by upgrading them, not by the user. One
  ``warnings.filterwarnings("ignore", category=FutureWarning, module=...)``; a FutureWarning
  attributed to slt_llm or the user's code, and every other category, still shows.

The user's own warning settings win: with ``-W`` / ``PYTHONWARNINGS`` given, no warning filter
is added. Cost: a filter on one logger and one entry in ``warnings.filters``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["VERBOSE_ENV", "LIBRARIES", "BNB_LOGGER", "BNB_KERNELS_MESSAGE", "NOISE_RECORDS", "verbose_from_env",
           "quiet_library_noise"]

VERBOSE_ENV = "SLT_LLM_VERBOSE"
LIBRARIES = ("torch", "transformers", "deepspeed", "accelerate", "peft", "bitsandbytes", "huggingface_hub",
             "tokenizers", "safetensors")
BNB_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_KERNELS_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"
# (logger, start of the message) of each log record silenced by default
NOISE_RECORDS = ((BNB_LOGGER, BNB_KERNELS_MESSAGE),
                 ("accelerate.utils.other", "Removed shared tensor"))
_LIBRARY_MODULES = r"(?:%s)(?:\..*)?\Z" % "|".join(LIBRARIES)


class _DropPrefix(logging.Filter):
    """Drops the records of one logger whose message (format string) starts with ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg.startswith("[RANK "):  # accelerate's multi-process logger prefixes the rank
            msg = msg.split("] ", 1)[-1]
        return not msg.startswith(self.prefix)


def verbose_from_env() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _ours(f) -> bool:
    return isinstance(f, _DropPrefix) and f.prefix in {prefix for _, prefix in NOISE_RECORDS}


def _our_warning_filter(entry) -> bool:
    action, message, category, module, lineno = entry
    return (action == "ignore" and category is FutureWarning and module is not None
            and getattr(module, "pattern", None) == _LIBRARY_MODULES)


def quiet_library_noise(verbose: bool) -> None:
    """Install the filters above (``verbose`` False) or take them away again and set
    ``SLT_LLM_VERBOSE=1`` for child processes (``verbose`` True). Idempotent."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        for name, _ in NOISE_RECORDS:
            logger = logging.getLogger(name)
            for f in [f for f in logger.filters if _ours(f)]:
                logger.removeFilter(f)
        for e in [e for e in warnings.filters if _our_warning_filter(e)]:  # an earlier main() in this process
            warnings.filters.remove(e)
            getattr(warnings, "_filters_mutated", lambda: None)()  # what filterwarnings() itself calls
        return
    for name, prefix in NOISE_RECORDS:
        logger = logging.getLogger(name)
        if not any(_ours(f) for f in logger.filters):
            logger.addFilter(_DropPrefix(prefix))
    if not sys.warnoptions and not any(_our_warning_filter(e) for e in warnings.filters):
        warnings.filterwarnings("ignore", category=FutureWarning, module=_LIBRARY_MODULES)
