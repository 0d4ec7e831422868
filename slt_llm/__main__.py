"""``python -m slt_llm COMMAND ...``: the same as the ``slt-llm`` command."""

import sys

from slt_llm.cli import main

if __name__ == "__main__":
    sys.exit(main())
