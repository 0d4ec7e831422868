"""Score translations against a manifest: ``python eval/evaluate.py --hyp out.jsonl --ref test.jsonl``.

Thin wrapper of ``slt-llm eval`` (see slt_llm/metrics.py).
"""

import sys

from slt_llm.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
