"""The inference commands: ``translate`` and ``eval`` (argument parsing and what each prints;
the work is in ``slt_llm.inference.translate`` and ``slt_llm.metrics``)."""

from __future__ import annotations

from slt_llm.cli.options import Parser


def translate_parser() -> Parser:
    ap = Parser(prog="slt-llm translate",
                description="Translate a folder of sign videos (or a manifest) into a JSONL/CSV file; resumable.")
    ap.add_argument("--model", required=True, help="model folder (SLTModel.save_pretrained, e.g. runs/demo/model)")
    ap.add_argument("--input", required=True, help="folder of videos / frame folders (recursive) or a .jsonl manifest")
    ap.option("--out", old=["--output"], required=True,
              help="output .jsonl (or .csv); existing rows are kept and skipped")
    ap.add_argument("--batch-size", type=int, default=8, help="clips per generate call (default 8)")
    ap.add_argument("--num-beams", type=int, default=1, help="1 = greedy")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="longest translation in tokens (default 48)")
    ap.add_argument("--pose-dir", default=None, help="folder of <video stem>.pose files (else sidecars next to the videos)")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--num-workers", type=int, default=None, help="DataLoader decode workers (default: min(4, cores-1))")
    ap.add_argument("--extractor-model", default=None, help="keypoint extractor model file (MediaPipe holistic_landmarker.task), used for videos without .pose")
    ap.add_argument("--extractor-backend", default=None, help="registered extractor backend (default mediapipe when --extractor-model is given)")
    ap.option("--llm", old=["--llm-path"], default=None,
              help="the base LLM folder or hub id, if it moved since training")
    ap.add_argument("--clip", action="append", default=[], metavar="KEY=VALUE", help="override a clip option, e.g. --clip max_frames=128")
    ap.add_argument("--retry-errors", action="store_true",
                    help="translate again the inputs whose row in OUT is an error row (e.g. a transient out-of-memory); the new row replaces it")
    ap.add_argument("--allow-outside-root", action="store_true",
                    help="manifest input: paths may lie outside the manifest's folder (absolute, '..', symlinks)")
    ap.add_argument("--trust-remote-code", action="store_true",
                    help="allow the base LLM's own Python code (auto_map) to run; off by default, never taken "
                         "from the model folder: only for LLMs whose code you have read")
    ap.add_argument("--no-merge-lora", action="store_true",
                    help="keep the LoRA adapters separate from the base weights (default: merged once at load, "
                         "fewer operations per generated token; a 4-/8-bit base is never merged)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar / progress lines")
    return ap


def translate(argv: list[str]) -> int:
    from slt_llm.inference.translate import TranslateOptions, print_summary, translate

    a = translate_parser().parse_args(argv)
    options = TranslateOptions(batch_size=a.batch_size, num_beams=a.num_beams, max_new_tokens=a.max_new_tokens,
                               pose_dir=a.pose_dir, device=a.device, num_workers=a.num_workers,
                               extractor_model=a.extractor_model, extractor_backend=a.extractor_backend,
                               llm_path=a.llm, clip_overrides=a.clip, progress=not a.no_progress,
                               retry_errors=a.retry_errors, allow_outside_root=a.allow_outside_root,
                               trust_remote_code=a.trust_remote_code, merge_lora=not a.no_merge_lora)
    return print_summary(translate(a.model, a.input, a.out, options))


def eval_parser() -> Parser:
    from slt_llm.metrics import TOKENIZERS

    ap = Parser(prog="slt-llm eval",
                description="BLEU-1..4, ROUGE-L and chrF of translations against a manifest, matched by id.")
    ap.add_argument("--hyp", required=True, help="translate output (JSONL, or CSV by extension)")
    ap.add_argument("--ref", required=True, help="JSONL manifest with id and text")
    ap.add_argument("--tokenize", default=None, choices=TOKENIZERS,
                    help="sacrebleu tokenizer: 13a, zh (Chinese, character-level), char, intl, none; default: zh when "
                         "most references are Chinese/Japanese/Korean, else 13a")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the scores as JSON here")
    ap.add_argument("--model", default=None,
                    help="the model folder that made --hyp: record the scores in its meta.json and model card")
    return ap


def eval_(argv: list[str]) -> int:
    from slt_llm.metrics import evaluate_and_report

    a = eval_parser().parse_args(argv)
    if a.model:
        from slt_llm.models.model_card import evaluation_target

        evaluation_target(a.model)  # a wrong --model fails before scoring
    scores = evaluate_and_report(a.hyp, a.ref, tokenize=a.tokenize, json_out=a.json_out)
    if a.model:
        from slt_llm.models.model_card import record_evaluation

        print(f"eval: scores recorded in {record_evaluation(a.model, scores, hyp=a.hyp, ref=a.ref)}")
    return 0


PARSERS = {"translate": translate_parser, "eval": eval_parser}
RUN = {"translate": translate, "eval": eval_}
