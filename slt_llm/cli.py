"""The ``slt-llm`` command. Each subcommand lives in its own module as
``cli(argv: list[str]) -> int`` (it parses its own arguments); this file only
dispatches, and turns the project's errors into one line on stderr with a
non-zero exit status and no traceback.
"""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "synth": ("slt_llm.synth.corpus", "generate a synthetic sign corpus (--profile toy|phoenix)"),
    "corpus-stats": ("slt_llm.synth.stats", "statistics of a corpus beside PHOENIX-2014T's"),
    "prepare": ("slt_llm.data.prepare", "convert PHOENIX-2014T / CSL-Daily / How2Sign annotations to manifests"),
    "inspect": ("slt_llm.data.inspect", "contact sheet + hand boxes of one video"),
    "extract": ("slt_llm.data.extract", "extract keypoints from videos into .pose sidecars"),
    "describe": ("slt_llm.data.describe", "hand-motion descriptions (JSONL) from the keypoints"),
    "hand-teacher": ("slt_llm.data.hand_teacher", "built-in hand-teacher sidecars (<stem>.hands.npz) from the keypoints"),
    "make-tiny-llm": ("slt_llm.models.tiny_llm", "build + pre-train the tiny stand-in LLM"),
    "import-llm": ("slt_llm.models.gguf_import", "a GGUF checkpoint (or the packaged SmolLM2) -> HF model folder"),
    "vlp": ("slt_llm.training.stage1", "stage 1: selective contrastive alignment (one process)"),
    "analyze": ("slt_llm.contrastive.analyze", "similarity-trajectory analysis of a stage-1 run"),
    "retrieval": ("slt_llm.contrastive.retrieval", "video<->text retrieval R@1/5/10 of a stage-1 model"),
    "train": ("slt_llm.training.stage2", "stage 2: translation training (one process)"),
    "export": ("slt_llm.models.export", "merge LoRA into the LLM for deployment"),
    "translate": ("slt_llm.inference.translate", "translate a folder of videos or a manifest"),
    "eval": ("slt_llm.metrics", "BLEU-1..4 / ROUGE-L / chrF of hypotheses against a manifest"),
    "demo": ("slt_llm.demo", "the whole job on the built-in synthetic default"),
}


def _usage() -> str:
    lines = ["usage: slt-llm COMMAND [options]   (slt-llm COMMAND --help for more; slt-llm --version)", "",
             "commands:"]
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
    argv = list(sys.argv[1:] if argv is None else argv)
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
    from slt_llm.errors import SLTError

    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.cli(rest) or 0)
    except SLTError as e:
        print(f"slt-llm {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slt-llm {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
