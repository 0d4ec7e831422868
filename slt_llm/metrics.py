"""Translation metrics as SLT papers report them, and the ``slt-llm eval`` command.

* BLEU-1..4: sacrebleu's corpus BLEU with ``max_ngram_order=n``, i.e. the
  cumulative n-gram BLEU with uniform weights 1/n (the "BLEU-n" columns of
  SLT tables). BLEU-4 is exactly ``sacrebleu.corpus_bleu`` (same tokenizer,
  exp smoothing, one reference). Signatures are returned and printed.
* ROUGE-L: the sentence-level average of the LCS-based F-measure with
  beta = 1.2, x100, as in the coco-caption ``Rouge`` scorer that SignJoey and
  GFSLT-VLP use (``P = LCS/|hyp|``, ``R = LCS/|ref|``,
  ``F = (1+b^2) P R / (R + b^2 P)``, 0 when the LCS is empty). Tokens are
  whitespace-separated words, or characters for ``tokenize="zh"``.
* chrF: sacrebleu's chrF (character 6-grams, beta 2).

Costs: BLEU/chrF are linear in the corpus size; ROUGE-L is an O(|hyp| * |ref|)
dynamic programme per sentence (O(min) memory).

``slt-llm eval --hyp FILE --ref MANIFEST [--tokenize 13a|zh|char|intl|none] [--json OUT]``
(without ``--tokenize``: zh when most references are CJK, else 13a; 13a asked on CJK
references is kept with a warning)
matches hypotheses (the JSONL/CSV written by ``slt-llm translate``) to the
manifest's references by ``id`` and refuses to score when the ids do not line
up (rows with an ``error`` count as missing).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

TOKENIZERS = ("13a", "zh", "intl", "none", "char")
ROUGE_BETA = 1.2


# ------------------------------------------------------------------- ROUGE-L
def lcs_length(a: list, b: list) -> int:
    """Length of the longest common subsequence of two token lists.

    O(len(a) * len(b)) time, O(min(len(a), len(b))) memory.
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            cur[j] = prev[j - 1] + 1 if x == y else (prev[j] if prev[j] >= cur[j - 1] else cur[j - 1])
        prev = cur
    return prev[-1]


def rouge_tokens(text: str, tokenize: str = "13a") -> list[str]:
    """Tokens ROUGE-L is computed over: characters (spaces dropped) for
    ``zh``/``char``, else whitespace-separated words of the text as given."""
    if tokenize in ("zh", "char"):
        return [c for c in text if not c.isspace()]
    return text.split()


def rouge_l_sentence(hyp: str, refs: list[str] | str, tokenize: str = "13a", beta: float = ROUGE_BETA) -> float:
    """LCS-based F-measure in [0, 1] of one hypothesis against its references
    (coco-caption: max precision and max recall over the references)."""
    if isinstance(refs, str):
        refs = [refs]
    h = rouge_tokens(hyp, tokenize)
    prec, rec = [], []
    for ref in refs:
        r = rouge_tokens(ref, tokenize)
        lcs = lcs_length(h, r)
        prec.append(lcs / len(h) if h else 0.0)
        rec.append(lcs / len(r) if r else 0.0)
    p, r = max(prec), max(rec)
    if p == 0.0 or r == 0.0:
        return 0.0
    return ((1 + beta**2) * p * r) / (r + beta**2 * p)


def rouge_l(hyps: list[str], refs: list[str], tokenize: str = "13a") -> float:
    """Corpus ROUGE-L as SLT papers report it: mean sentence F (beta 1.2) x100."""
    if not hyps:
        return 0.0
    return 100.0 * sum(rouge_l_sentence(h, r, tokenize) for h, r in zip(hyps, refs)) / len(hyps)


# ------------------------------------------------------------------- all metrics
def _sacrebleu_tokenize(tokenize: str) -> str:
    return "char" if tokenize == "char" else tokenize


def compute_metrics(hyps: list[str], refs: list[str], tokenize: str = "13a") -> dict:
    """BLEU-1..4, ROUGE-L and chrF of ``hyps`` against one reference each.

    Returns ``{"bleu1".."bleu4", "rouge_l", "chrf", "n", "signature":
    {"bleu": ..., "chrf": ...}, "bleu4_detail": str}``; scores are 0..100.
    ``tokenize``: sacrebleu tokenizer (``13a`` default, ``zh`` for Chinese:
    character-level BLEU, ``intl``); ROUGE-L follows it (characters for zh).
    """
    from sacrebleu.metrics import BLEU, CHRF

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    if tokenize not in TOKENIZERS:
        raise ValueError(f"unknown tokenize {tokenize!r} (choose from {', '.join(TOKENIZERS)})")
    hyps = [h if isinstance(h, str) else "" for h in hyps]
    out: dict = {"n": len(hyps)}
    tok = _sacrebleu_tokenize(tokenize)
    for n in range(1, 5):
        bleu = BLEU(tokenize=tok, max_ngram_order=n)
        score = bleu.corpus_score(hyps, [refs])
        out[f"bleu{n}"] = float(score.score)
        if n == 4:
            out["bleu4_detail"] = str(score)
            bleu_sig = str(bleu.get_signature())
    chrf = CHRF()
    out["chrf"] = float(chrf.corpus_score(hyps, [refs]).score)
    out["rouge_l"] = rouge_l(hyps, refs, tokenize)
    out["signature"] = {"bleu": bleu_sig, "chrf": str(chrf.get_signature()), "rouge_l": f"lcs-f|beta:{ROUGE_BETA}|sentence-avg|tok:{'char' if tokenize in ('zh', 'char') else 'space'}"}
    return out


def format_table(m: dict) -> str:
    """A small text table of the scores + the signatures."""
    cols = [("BLEU-1", "bleu1"), ("BLEU-2", "bleu2"), ("BLEU-3", "bleu3"), ("BLEU-4", "bleu4"), ("ROUGE-L", "rouge_l"), ("chrF", "chrf")]
    head = " ".join(f"{c:>8}" for c, _ in cols)
    vals = " ".join(f"{m[k]:>8.2f}" for _, k in cols)
    sig = m["signature"]
    return (
        f"{head}\n{vals}\n"
        f"n = {m['n']}\n"
        f"BLEU signature: {sig['bleu']}\n"
        f"chrF signature: {sig['chrf']}\n"
        f"ROUGE-L: {sig['rouge_l']}"
    )


# ------------------------------------------------------------------- files
def read_hypotheses(path: str | Path) -> tuple[dict, list[str]]:
    """Read ``slt-llm translate`` output: JSONL (default) or CSV (``.csv``).

    Returns ``({id: translation}, [ids of rows with an error])``. A truncated
    last JSONL line (a killed run) is ignored; any other unparsable line, a
    row without ``id`` or a duplicated id is an InputError.
    """
    from slt_llm.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "hypothesis file not found")
    rows: list[dict] = []
    if p.suffix.lower() == ".csv":
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "id" not in reader.fieldnames:
                raise InputError(p, "CSV has no 'id' column (expected id,path,translation,error)")
            rows = [dict(r) for r in reader]
    else:
        lines = p.read_text(encoding="utf-8").split("\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # partial last line of an interrupted run
                    continue
                raise InputError(p, f"line {i + 1} is not valid JSON") from None
            if not isinstance(row, dict):
                raise InputError(p, f"line {i + 1} is not a JSON object")
            rows.append(row)
    hyps: dict = {}
    errors: list[str] = []
    for i, row in enumerate(rows):
        rid = row.get("id")
        if rid is None or rid == "":
            raise InputError(p, f"row {i + 1} has no 'id'")
        rid = str(rid)
        if rid in hyps or rid in errors:
            raise InputError(p, f"id {rid!r} appears more than once")
        if row.get("error"):
            errors.append(rid)
            continue
        t = row.get("translation")
        hyps[rid] = "" if t is None else str(t)
    return hyps, errors


def read_references(path: str | Path) -> dict:
    """``{id: text}`` from a JSONL manifest (only ``id`` and ``text`` are read,
    so the videos need not be present)."""
    from slt_llm.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "reference manifest not found")
    refs: dict = {}
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(p, f"line {i + 1} is not valid JSON") from None
        if not isinstance(row, dict) or "id" not in row or "text" not in row:
            raise InputError(p, f"line {i + 1} needs 'id' and 'text'")
        rid = str(row["id"])
        if rid in refs:
            raise InputError(p, f"id {rid!r} appears more than once")
        refs[rid] = str(row["text"])
    if not refs:
        raise InputError(p, "manifest has no rows")
    return refs


def is_cjk_char(c: str) -> bool:
    """A Chinese/Japanese/Korean character (the ranges sacrebleu's zh tokenizer splits, roughly)."""
    o = ord(c)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2A6DF or 0xF900 <= o <= 0xFAFF
            or 0x3040 <= o <= 0x30FF or 0xAC00 <= o <= 0xD7AF or 0x3000 <= o <= 0x303F or 0xFF00 <= o <= 0xFFEF)


def cjk_share(texts: list[str]) -> float:
    """Share of the texts whose non-space characters are mostly CJK."""
    def mostly(t):
        chars = [c for c in t if not c.isspace()]
        return bool(chars) and sum(map(is_cjk_char, chars)) > len(chars) / 2
    return sum(map(mostly, texts)) / max(len(texts), 1)


def choose_tokenize(refs: list[str], asked: str | None) -> tuple[str, str | None]:
    """(tokenizer, note for the user). Nothing asked: zh when most references are CJK (13a
    would see one token per sentence and score about 0), else 13a. 13a asked on CJK
    references: kept, with a warning."""
    cjk = cjk_share(refs) > 0.5
    if asked is None:
        return ("zh", "most references are Chinese/Japanese/Korean: scored with --tokenize zh "
                      "(characters); pass --tokenize to choose") if cjk else ("13a", None)
    if cjk and asked in ("13a", "intl", "none"):
        return asked, (f"warning: most references are Chinese/Japanese/Korean and --tokenize {asked} splits "
                       f"on spaces only: BLEU will be near 0; use --tokenize zh")
    return asked, None


def evaluate_files(hyp_path: str | Path, ref_path: str | Path, tokenize: str | None = "13a") -> dict:
    """Match by id and score. Raises InputError (naming the hypothesis file)
    when ids do not line up: how many are missing (incl. error rows) / extra.
    ``tokenize=None`` chooses from the references (:func:`choose_tokenize`); the choice and
    any warning are in the result (``tokenize``, ``tokenize_note``)."""
    from slt_llm.errors import InputError

    hyps, errors = read_hypotheses(hyp_path)
    refs = read_references(ref_path)
    missing = [r for r in refs if r not in hyps]
    extra = [h for h in list(hyps) + errors if h not in refs]
    if missing or extra:
        parts = []
        if missing:
            n_err = sum(1 for m in missing if m in errors)
            parts.append(
                f"{len(missing)} of {len(refs)} reference ids missing"
                + (f" ({n_err} of them are error rows)" if n_err else "")
                + f", e.g. {missing[0]!r}"
            )
        if extra:
            parts.append(f"{len(extra)} ids not in {Path(ref_path).name}, e.g. {extra[0]!r}")
        raise InputError(hyp_path, "; ".join(parts) + "; refusing to score a partial set")
    ids = list(refs)
    tokenize, note = choose_tokenize([refs[i] for i in ids], tokenize)
    m = compute_metrics([hyps[i] for i in ids], [refs[i] for i in ids], tokenize)
    m["tokenize"] = tokenize
    if note:
        m["tokenize_note"] = note
    return m


def evaluate_and_report(hyp_path: str | Path, ref_path: str | Path, *, tokenize: str | None = None,
                        json_out: str | Path | None = None) -> dict:
    """``slt-llm eval``: :func:`evaluate_files`, the tokenizer note on stderr, the table
    (:func:`format_table`) on stdout, and with ``json_out`` the scores as JSON (refused before
    any work when it is a folder). Returns the scores."""
    if json_out and Path(json_out).is_dir():
        from slt_llm.errors import InputError

        raise InputError(json_out, "--json is a folder; give a file name such as metrics.json")
    m = evaluate_files(hyp_path, ref_path, tokenize)
    if m.get("tokenize_note"):
        print(m["tokenize_note"], file=sys.stderr)
    print(format_table(m))
    if json_out:
        out = Path(json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n")
    return m
