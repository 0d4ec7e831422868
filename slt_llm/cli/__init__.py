"""The ``slt-llm`` command: the one command-line layer of the package.

Each command group has its module here (``data``, ``synth``, ``models``, ``train``, ``infer``,
``demo``, ``completion``) with, per command, a parser function and ``command(argv) -> int`` that parses the
arguments (``slt_llm.cli.options.Parser``) and calls the library with typed arguments; no
module outside ``slt_llm/cli/`` parses arguments. This file dispatches, answers
``--help`` / ``--version``, and turns the project's errors into one line on stderr with a
non-zero exit status and no traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

# command -> (module under slt_llm.cli, one line for the usage)
COMMANDS = {
    "synth": ("synth", "generate a synthetic sign corpus (--profile toy|phoenix)"),
    "corpus-stats": ("synth", "statistics of a corpus beside PHOENIX-2014T's"),
    "prepare": ("data", "convert PHOENIX-2014T / CSL-Daily / How2Sign annotations to manifests"),
    "inspect": ("data", "contact sheet + hand boxes of one video"),
    "extract": ("data", "extract keypoints from videos into .pose sidecars"),
    "import-pose": ("data", "COCO-WholeBody / OpenPose keypoint arrays or JSON -> a .pose file"),
    "describe": ("data", "hand-motion descriptions (JSONL) from the keypoints"),
    "hand-teacher": ("data", "built-in hand-teacher sidecars (<stem>.hands.npz) from the keypoints"),
    "make-tiny-llm": ("models", "build + pre-train the tiny stand-in LLM"),
    "import-llm": ("models", "a GGUF checkpoint (or the packaged SmolLM2) -> HF model folder"),
    "recipes": ("train", "the run configs shipped with the package (--config recipe:NAME)"),
    "vlp": ("train", "stage 1: selective contrastive alignment (one process)"),
    "analyze": ("train", "similarity-trajectory analysis of a stage-1 run"),
    "retrieval": ("train", "video<->text retrieval R@1/5/10 of a stage-1 model"),
    "train": ("train", "stage 2: translation training (one process)"),
    "export": ("models", "merge LoRA into the LLM for deployment"),
    "translate": ("infer", "translate a folder of videos or a manifest"),
    "eval": ("infer", "BLEU-1..4 / ROUGE-L / chrF of hypotheses against a manifest"),
    "demo": ("demo", "the whole job on the built-in synthetic default"),
    "completion": ("completion", "print a bash completion script (source <(slt-llm completion bash))"),
}


def _module(name: str):
    return importlib.import_module(f"slt_llm.cli.{COMMANDS[name][0]}")


def parser(name: str):
    """The argument parser of command ``name`` (for --help checks and documentation)."""
    return _module(name).PARSERS[name]()


def _usage() -> str:
    lines = ["usage: slt-llm [--verbose] COMMAND [options]   (slt-llm COMMAND --help for more; slt-llm --version)",
             "",
             "  --verbose      also show library notices a user cannot act on (bitsandbytes' missing-kernels",
             "                 line, FutureWarnings of torch/transformers/deepspeed/...); or SLT_LLM_VERBOSE=1",
             "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def _quiet_progress_bars_when_not_a_terminal() -> None:
    """Progress bars of transformers / huggingface_hub ("Loading weights", downloads) write
    carriage returns into logs; when stderr is not a terminal they are off (the user's own
    HF_HUB_DISABLE_PROGRESS_BARS wins). Our own progress lines (slt_llm.progress) stay."""
    if sys.stderr.isatty():
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"].lower() not in ("1", "true", "yes", "on"):
        return
    if "huggingface_hub" in sys.modules:  # already imported: its setting was read at import
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    if argv is None or sys._getframe(1).f_globals.get("__name__") == "__main__":
        # the process's entry point (slt-llm, python -m slt_llm[.cli], scripts/*.py), not a call
        # from a library or a test: once, before any work, re-executed with the allocator setting
        # that reuses freed memory instead of re-faulting it (slt_llm.allocator)
        from slt_llm.allocator import reexec_with_kept_memory

        reexec_with_kept_memory()
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = bool(argv) and argv[0] == "--verbose"
    if verbose:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from slt_llm import __version__

        print(f"slt-llm {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"slt-llm: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    _quiet_progress_bars_when_not_a_terminal()
    from slt_llm.cli.noise import quiet_library_noise, verbose_from_env

    quiet_library_noise(verbose or verbose_from_env())
    from slt_llm.errors import SLTError

    try:
        return int(_module(name).RUN[name](rest) or 0)
    except SLTError as e:
        print(f"slt-llm {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slt-llm {name}: interrupted", file=sys.stderr)
        return 130

