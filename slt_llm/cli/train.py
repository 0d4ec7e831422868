"""The training commands: ``vlp`` (stage 1), ``train`` (stage 2), and the stage-1 read-outs
``analyze`` and ``retrieval`` (argument parsing and what each prints; the work is in
``slt_llm.training`` and ``slt_llm.contrastive``)."""

from __future__ import annotations

import json

from slt_llm.cli.options import Parser

RESUME_HELP = "continue from the last checkpoint in train.run_dir"
OVERWRITE_HELP = "replace the run already in train.run_dir"
STOP_HELP = "leave after optimizer step N (a checkpoint is saved; continue later with --resume, exactly)"


def vlp_parser() -> Parser:
    p = Parser(prog="slt-llm vlp", description="stage 1: selective contrastive alignment")
    p.add_argument("--config", default=None, help="YAML/JSON Stage1Config, or a shipped recipe: recipe:NAME "
                   "(slt-llm recipes lists them)")
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--stop-at-step", type=int, default=None, metavar="N", help=STOP_HELP)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=4")
    return p


def vlp(argv: list[str]) -> int:
    from slt_llm import distributed as dist_utils
    from slt_llm.config import Stage1Config, load_config
    from slt_llm.training.stage1 import train_vlp

    a = vlp_parser().parse_args(argv)
    cfg = load_config(Stage1Config, a.config, a.overrides)
    res = train_vlp(cfg, resume=a.resume, overwrite=a.overwrite, stop_at_step=a.stop_at_step)
    dist_utils.print0(json.dumps(res))
    return 0


def train_parser() -> Parser:
    p = Parser(prog="slt-llm train", description=(
        "Stage 2: translation training (LoRA/QLoRA). One process here; for several "
        "GPUs run scripts/train_slt.py under `accelerate launch --config_file ds_configs/accelerate_zero3.yaml`."))
    p.add_argument("--config", required=True, help="YAML/JSON run config (SLTConfig), or a shipped recipe: "
                   "recipe:NAME (slt-llm recipes lists them)")
    p.add_argument("--resume", action="store_true", help=RESUME_HELP)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--stop-at-step", type=int, default=None, metavar="N", help=STOP_HELP)
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.max_steps=50 llm.load_in_4bit=true")
    return p


def train(argv: list[str]) -> int:
    from slt_llm import distributed as dist_utils
    from slt_llm.config import SLTConfig, load_config
    from slt_llm.training.stage2 import train_slt

    a = train_parser().parse_args(argv)
    cfg = load_config(SLTConfig, a.config, a.overrides)
    summary = train_slt(cfg, resume=a.resume, stop_at_step=a.stop_at_step, overwrite=a.overwrite)
    if dist_utils.is_main():
        print(json.dumps(summary))
    return 0


def analyze_parser() -> Parser:
    p = Parser(prog="slt-llm analyze", description=(
        "The paper's preliminary analysis, for any dataset: how the similarity of NEGATIVE pairs "
        "(video i, sentence of sample j, i != j) moved across a stage-1 run's reference checkpoints."))
    p.add_argument("--run", required=True, help="stage-1 run directory (train.run_dir)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--json", default=None, help="statistics JSON to write")
    p.add_argument("--pairs", type=int, default=200, help="sampled pairs drawn in the trajectory panel")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled pairs (default 0)")
    p.add_argument("--high-z", type=float, default=None, help="override selection.high_z of the run")
    p.add_argument("--high-quantile", type=float, default=None,
                   help="group by per-checkpoint quantiles of the candidates instead (e.g. 0.5)")
    return p


def analyze(argv: list[str]) -> int:
    from slt_llm.contrastive.analyze import GROUPS, analyze_run

    a = analyze_parser().parse_args(argv)
    public = analyze_run(a.run, a.out, json_path=a.json, pairs=a.pairs, seed=a.seed, high_z=a.high_z,
                         high_quantile=a.high_quantile)
    print("groups: " + "  ".join(f"{g}={100 * public['shares'][g]:.1f}%" for g in GROUPS)
          + f"  ({public['num_pairs']} pairs, K={public['K']}, mean delta {public['delta']['mean']:+.3f})")
    return 0


def retrieval_parser() -> Parser:
    p = Parser(prog="slt-llm retrieval",
               description="Video<->text retrieval of a stage-1 model: R@1/R@5/R@10 over the UNIQUE sentences of a split.")
    p.add_argument("--model", required=True, help="stage-1 model folder (RUN_DIR/model)")
    p.add_argument("--manifest", required=True, help="JSONL manifest of the split to score")
    p.add_argument("--json", default=None, help="write the metrics here")
    p.add_argument("--batch-size", type=int, default=16, help="videos per encoder batch (default 16)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--llm", default=None, help="LLM folder for sentence embeddings (default: the one recorded)")
    p.add_argument("--text-cache", default=None, help="text-embedding cache folder (default: none)")
    p.add_argument("--pose-dir", default=None,
                   help="folder of <video stem>.pose files (else sidecars next to the videos)")
    p.add_argument("--clip-cache", default=None, help="decoded-clip cache folder")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="manifest paths may lie outside the manifest's folder (absolute, '..', symlinks)")
    return p


def retrieval(argv: list[str]) -> int:
    from slt_llm.contrastive.retrieval import format_result, score_model_folder

    a = retrieval_parser().parse_args(argv)
    res = score_model_folder(a.model, a.manifest, json_path=a.json, batch_size=a.batch_size, device=a.device,
                             llm=a.llm, text_cache=a.text_cache, pose_dir=a.pose_dir, clip_cache=a.clip_cache,
                             allow_outside_root=a.allow_outside_root)
    print(format_result(res))
    return 0


def recipes_parser() -> Parser:
    p = Parser(prog="slt-llm recipes", description="The run configs shipped with the package (slt_llm/configs): "
               "use one with --config recipe:NAME.")
    p.add_argument("name", nargs="?", default=None, help="print this recipe's file (its path, then its YAML)")
    return p


def recipes(argv: list[str]) -> int:
    from slt_llm.config import recipe_path, recipes

    a = recipes_parser().parse_args(argv)
    if a.name:
        path = recipe_path(a.name)
        print(f"# {path}")
        print(path.read_text(), end="")
        return 0
    found = recipes()
    width = max(map(len, found), default=0)
    for name, about in found.items():
        command = "slt-llm vlp" if name.endswith("_stage1") else "slt-llm train"
        print(f"{name:<{width}}  {command:<13}  {about}")
    print(f"\nuse: slt-llm vlp --config recipe:NAME [KEY=VALUE ...] (stage 1), slt-llm train --config recipe:NAME "
          f"(stage 2); slt-llm recipes NAME prints one")
    return 0


PARSERS = {"vlp": vlp_parser, "train": train_parser, "analyze": analyze_parser, "retrieval": retrieval_parser,
           "recipes": recipes_parser}
RUN = {"vlp": vlp, "train": train, "analyze": analyze, "retrieval": retrieval, "recipes": recipes}
