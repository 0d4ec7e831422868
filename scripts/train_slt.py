#!/usr/bin/env python
"""Stage-2 training launcher (same as `slt-llm train`), for `accelerate launch`.

  accelerate launch --config_file ds_configs/accelerate_zero3.yaml scripts/train_slt.py --config RUN.yaml [--resume] [key=value ...]
  python scripts/train_slt.py --config RUN.yaml ...          # one process

A checkout convenience, not in the installed package: installed, the same is
`slt-llm train ...` or `accelerate launch --config_file ACCEL.yaml -m slt_llm.cli train ...`.
"""
import sys

from slt_llm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
