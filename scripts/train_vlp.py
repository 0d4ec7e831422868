"""Stage 1 (selective contrastive alignment), runnable alone or under accelerate launch:

    accelerate launch --config_file ds_configs/accelerate_zero2.yaml scripts/train_vlp.py \
        --config slt_llm/configs/demo_stage1.yaml train.run_dir=runs/vlp [--resume]

A checkout convenience, not in the installed package: installed, the same is
`slt-llm vlp ...` or `accelerate launch --config_file ACCEL.yaml -m slt_llm.cli vlp ...`.
"""

import sys

from slt_llm.cli import main

if __name__ == "__main__":
    sys.exit(main(["vlp", *sys.argv[1:]]))
