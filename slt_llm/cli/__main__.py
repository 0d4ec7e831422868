"""``python -m slt_llm.cli COMMAND ...`` (also under ``accelerate launch -m slt_llm.cli``)."""

import sys

from slt_llm.cli import main

if __name__ == "__main__":
    sys.exit(main())
