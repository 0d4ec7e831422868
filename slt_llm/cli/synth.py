"""The synthetic-corpus commands: ``synth``, ``corpus-stats`` (argument parsing and what each
prints; the work is in ``slt_llm.synth``)."""

from __future__ import annotations

from slt_llm.cli.options import Parser


def synth_parser() -> Parser:
    from slt_llm.synth.profiles import PHOENIX_SEED, PROFILES

    ap = Parser(prog="slt-llm synth", description="Generate a synthetic sign corpus.")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--profile", default="toy", choices=PROFILES,
                    help="toy: the small grammar (unit tests); phoenix: PHOENIX-2014T's statistics (docs/synth.md)")
    ap.add_argument("--n-train", type=int, default=None,
                    help="training sentences (toy: default 600; phoenix: keep the first N of 7,096)")
    ap.add_argument("--n-dev", type=int, default=None, help="dev sentences (toy: 100; phoenix: first N of 519)")
    ap.add_argument("--n-test", type=int, default=None, help="test sentences (toy: 100; phoenix: first N of 642)")
    ap.add_argument("--seed", type=int, default=None,
                    help=f"random seed (toy: 0; phoenix: the frozen profile seed {PHOENIX_SEED})")
    ap.add_argument("--dup-rate", type=float, default=0.3, help="toy: share of repeated/near-repeated training sentences")
    ap.add_argument("--size", type=int, default=128, help="frame width and height in pixels (even, >= 32)")
    ap.add_argument("--vocab", type=int, default=None, help="toy: keep about this many content words")
    ap.add_argument("--fps", type=int, default=12, help="frame rate; sign durations in seconds are kept")
    ap.add_argument("--workers", type=int, default=1, help="processes rendering samples (same output)")
    ap.add_argument("--text-only", action="store_true",
                    help="write the manifests' text, gloss and signer fields only (no videos)")
    return ap


def synth(argv: list[str]) -> int:
    from slt_llm.synth.corpus import generate

    a = synth_parser().parse_args(argv)
    s = generate(a.out, profile=a.profile, n_train=a.n_train, n_dev=a.n_dev, n_test=a.n_test, seed=a.seed,
                 dup_rate=a.dup_rate, size=a.size, vocab=a.vocab, fps=a.fps, workers=a.workers,
                 text_only=a.text_only)
    msg = f"wrote {a.out} (profile {s['profile']}, seed {s['seed']}): " + ", ".join(f"{k} {v}" for k, v in s["counts"].items())
    if "duplicates" in s:
        msg += f"; duplicates exact {s['duplicates']['exact']} near {s['duplicates']['near']}; vocabulary {s['vocab_size']} signs"
    if not a.text_only:
        msg += f"; {s['frames']} frames"
    print(msg)
    print(f"text_hash={s['text_hash']}")
    return 0


def corpus_stats_parser() -> Parser:
    ap = Parser(prog="slt-llm corpus-stats",
                description="Statistics of a corpus folder (train/dev/test.jsonl) beside PHOENIX-2014T's.")
    ap.add_argument("corpus", help="corpus folder (slt-llm synth output, or any folder of manifests)")
    ap.add_argument("--json", default=None, help="also write the figures as JSON here")
    return ap


def corpus_stats(argv: list[str]) -> int:
    import json
    from pathlib import Path

    from slt_llm.synth.corpus import read_records
    from slt_llm.synth.stats import corpus_stats, format_table, within

    a = corpus_stats_parser().parse_args(argv)
    st = corpus_stats(read_records(a.corpus))
    print(format_table(st))
    if a.json:
        Path(a.json).write_text(json.dumps(st, indent=1))
    missed = [k for k, v in st.items() if within(k, v) is False]
    print("all figures within their tolerance" if not missed else f"outside tolerance: {', '.join(missed)}")
    return 0


PARSERS = {"synth": synth_parser, "corpus-stats": corpus_stats_parser}
RUN = {"synth": synth, "corpus-stats": corpus_stats}
