"""Model folders as published: their ``README.md`` model card and their file modes.

Every model folder gets a card written with ``huggingface_hub.ModelCard`` (YAML card data:
license when the base LLM's own card declares one, ``base_model``, ``library_name``, tags,
metrics, and the recorded scores as ``model-index`` results), rendered from what the folder
itself records, so it can be re-rendered at any time (:func:`write_model_card`):

- a stage-2 folder (``SLTModel.save_pretrained``; a merged ``slt-llm export`` too): meta.json
  (adapter, ``base_llm`` path + identity, versions, and what the writer added: ``training``,
  ``dev``, ``evaluations``, ``merged_from``), slt_config.yaml, clip.yaml;
- a stage-1 folder (``VLPModel.save_pretrained``): vlp_config.yaml (its ``llm.path``, and the
  ``training`` / ``dev`` entries the trainer passes).

The card says: the base LLM (hub id or absolute path, and its identity hash:
:func:`slt_llm.models.llm.llm_identity`), the training data (manifest paths, row counts, and a
synthetic corpus's profile and text hash from the ``corpus.json`` beside the manifests), where
the config is, dev/test metrics with their sacrebleu signatures (dev from training,
test from ``slt-llm eval --model``: :func:`record_evaluation`), how to load it with plain
transformers + peft (a code block that runs as written: ``tests/test_model_card.py`` runs it)
and with ``slt-llm translate``, and the ``hf upload`` line to share it. A PEFT adapter folder's
template README (PEFT writes one full of "[More Information Needed]") is replaced by a short
card of its own. Nothing in a card is a blank placeholder.

File modes: safetensors >= 0.7 writes through a temporary file that is renamed into place, and
such files are created 0600, whatever the umask. :func:`follow_umask` gives every file of a
written folder the mode a plain ``open()`` would (0666 minus the umask: 0644 under the usual
022); :func:`write_model_card` applies it to the folder it writes the card into.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Optional

CARD_FILE = "README.md"
TAGS = ["sign-language-translation", "sign-language", "video-to-text", "slt_llm"]
UPLOAD_HINT = "hf upload YOUR_NAME/MODEL_NAME {folder} ."


# ------------------------------------------------------------------ file modes
def current_umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def follow_umask(path) -> None:
    """Give every regular file at/under ``path`` the mode ``open()`` gives a new file
    (0666 & ~umask): files written through a temporary file (safetensors) come out 0600."""
    mode = 0o666 & ~current_umask()
    p = Path(path)
    files = [p] if p.is_file() else [q for q in p.rglob("*") if q.is_file() and not q.is_symlink()]
    for f in files:
        if stat.S_IMODE(f.stat().st_mode) != mode:
            os.chmod(f, mode)


# ------------------------------------------------------------------ facts
def _count_rows(path: Path) -> Optional[int]:
    try:
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return None


def manifest_facts(path) -> Optional[dict]:
    """``{"manifest": absolute path, "samples": rows}`` (+ ``corpus``: profile, seed, text hash,
    language of a ``corpus.json`` beside it) of a JSONL manifest; None when unset."""
    if not path:
        return None
    p = Path(path).resolve()
    out: dict = {"manifest": str(p), "samples": _count_rows(p)}
    cj = p.parent / "corpus.json"
    if cj.is_file():
        try:
            c = json.loads(cj.read_text())
        except (OSError, json.JSONDecodeError):
            c = {}
        corpus = {k: c[k] for k in ("profile", "seed", "text_hash", "language") if k in c}
        if corpus:
            out["corpus"] = {**corpus, "file": str(cj)}
    return out


def training_facts(cfg, *, stage: int, dev: Optional[dict] = None) -> dict:
    """What a trainer records for the card of the model folder it exports: ``training`` (stage,
    run folder, its config file, train/dev manifests) and, when given, ``dev`` (the dev scores of
    the exported model: stage 2 ``bleu4``, ``signature``, ``n``, ``unreadable``, ``step``;
    stage 1 video-to-text ``r1``/``r5``/``r10``, ``n``, ``step``)."""
    run_dir = Path(cfg.train.run_dir).resolve()
    data = {k: f for k, f in (("train", manifest_facts(cfg.data.train_manifest)),
                                ("dev", manifest_facts(cfg.data.dev_manifest))) if f}
    out = {"training": {"stage": stage, "run_dir": str(run_dir), "config": str(run_dir / "config.yaml"),
                        "data": data}}
    tokenize = getattr(getattr(cfg, "eval", None), "tokenize", None)
    if tokenize:
        out["training"]["tokenize"] = tokenize
    if dev:
        out["dev"] = dev
    return out


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _base_license(base) -> Optional[str]:
    """The license the base LLM folder declares (its own README card data), else None; the
    project's tiny stand-in LLM (tiny_llm.json) is this project's (MIT)."""
    if not base:
        return None
    p = Path(str(base))
    if not p.is_dir():
        return None
    if (p / "tiny_llm.json").is_file():
        return "mit"
    if (p / CARD_FILE).is_file():
        from huggingface_hub import ModelCard

        try:
            lic = ModelCard.load(p / CARD_FILE).data.license
            return str(lic) if lic else None
        except Exception:  # noqa: BLE001  (a README without card data)
            return None
    return None


def _is_hub_id(s: str) -> bool:
    from slt_llm.models.llm import _HUB_ID

    return not Path(s).exists() and bool(_HUB_ID.match(s))


def _base_identity(path) -> Optional[dict]:
    from slt_llm.errors import ConfigError
    from slt_llm.models.llm import llm_identity

    try:
        return llm_identity(path)
    except (ConfigError, OSError):
        return None


def _folder_facts(folder: Path) -> dict:
    """What the folder records: kind (stage1 | lora | qlora | merged | none), base LLM, facts."""
    import yaml

    if (folder / "vlp_config.yaml").is_file():
        raw = yaml.safe_load((folder / "vlp_config.yaml").read_text()) or {}
        llm = raw.get("llm") or {}
        base = llm.get("path")
        if base and Path(str(base)).is_dir():
            base = str(Path(str(base)).resolve())
        ident = llm.get("identity") if isinstance(llm.get("identity"), dict) else None  # recorded at training
        ident = ident or (_base_identity(base) if base else None)  # older folders: hash what the path holds now
        return {"kind": "stage1", "base": base, "base_llm": ({"path": base, **ident} if ident else None),
                "training": raw.get("training"), "dev": raw.get("dev"), "evaluations": raw.get("evaluations") or [],
                "dtype": llm.get("dtype", "float32"), "pooling": llm.get("pooling"),
                "similarity": (raw.get("vlp") or {}).get("similarity"), "versions": {}}
    meta = _read_json(folder / "meta.json")
    raw = yaml.safe_load((folder / "slt_config.yaml").read_text()) if (folder / "slt_config.yaml").is_file() else {}
    llm = (raw or {}).get("llm") or {}
    kind = meta.get("adapter", "none")
    if kind == "merged":
        src = meta.get("merged_from") or {}
        base_llm = src.get("base_llm")
        base = (base_llm or {}).get("path") or src.get("base_model")
    else:
        base_llm = meta.get("base_llm")
        base = (base_llm or {}).get("path") or llm.get("path")
    return {"kind": kind, "base": base, "base_llm": base_llm, "training": meta.get("training"),
            "dev": meta.get("dev"), "evaluations": meta.get("evaluations") or [], "dtype": llm.get("dtype", "float32"),
            "meta": meta, "versions": meta.get("versions") or {}}


# ------------------------------------------------------------------ rendering
def _fmt(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _data_section(training: Optional[dict]) -> str:
    if not training or not training.get("data"):
        return ("This folder records no training run (it was saved outside `slt-llm vlp` / `slt-llm train`), "
                "so its training data is not known here.\n")
    rows = ["| split | manifest | samples | corpus |", "|---|---|---|---|"]
    for split, f in training["data"].items():
        c = f.get("corpus")
        corpus = (f"synthetic, profile `{c.get('profile')}` (seed {c.get('seed')}), text hash `{c.get('text_hash')}`"
                  if c and c.get("profile") else "no corpus.json beside the manifest")
        rows.append(f"| {split} | `{f['manifest']}` | {f.get('samples') if f.get('samples') is not None else 'unreadable now'}"
                    f" | {corpus} |")
    return "\n".join(rows) + "\n"


def _metrics_section(kind: str, dev: Optional[dict], evaluations: list, folder: Path) -> str:
    lines = []
    if kind == "stage1":
        if dev:
            lines += ["| split | clips | video-to-text R@1 | R@5 | R@10 | step |", "|---|---|---|---|---|---|",
                      f"| dev | {dev.get('n')} | {_fmt(dev.get('r1'))} | {_fmt(dev.get('r5'))} | {_fmt(dev.get('r10'))}"
                      f" | {dev.get('step')} |", ""]
        else:
            lines.append("No dev retrieval scores were recorded for this export (no dev manifest in the run).\n")
        return "\n".join(lines) + "\n"
    rows = []
    if dev:
        rows.append(("dev (selected the checkpoint)", dev.get("n"), dev.get("bleu4"), None, None,
                     dev.get("signature"), f"step {dev.get('step')}"
                     + (f", {dev['unreadable']} unreadable clips scored empty" if dev.get("unreadable") else "")))
    for e in evaluations:
        where = f"`{e.get('ref')}`"
        if e.get("model") and Path(e["model"]) != folder.resolve():
            where += f"; measured on `{e['model']}`"
        rows.append((e.get("split", "test"), e.get("n"), e.get("bleu4"), e.get("chrf"), e.get("rouge_l"),
                     (e.get("signature") or {}).get("bleu"), where))
    if not rows:
        return ("No scores are recorded yet. `slt-llm eval --hyp out.jsonl --ref test.jsonl --model "
                f"{folder}` scores a translation run and adds the scores here.\n")
    lines += ["Scores are 0-100; '-': not measured (dev selection computes BLEU-4 only).", "",
              "| split | n | BLEU-4 | chrF | ROUGE-L | notes |", "|---|---|---|---|---|---|"]
    for split, n, b, c, r, sig, note in rows:
        lines.append(f"| {split} | {n} | {_fmt(b)} | {'-' if c is None else _fmt(c)} | {'-' if r is None else _fmt(r)}"
                     f" | {note} |")
    lines += ["", "sacrebleu signatures (BLEU):", ""] + [f"- {row[0]}: `{row[5]}`" for row in rows]
    return "\n".join(lines) + "\n"


def python_snippet(folder: Path, facts: dict) -> str:
    """The plain transformers + peft (+ safetensors) code that loads this folder's parts."""
    kind, base, dtype = facts["kind"], facts["base"], facts.get("dtype") or "float32"
    head = [f'folder = Path("{folder}")  # this model folder (change it if you moved the folder)']
    if kind == "stage1":
        return "\n".join([
            "from pathlib import Path", "", "from safetensors.torch import load_file", "", *head,
            'encoder = load_file(str(folder / "encoder.safetensors"))  # HandCentricEncoder state dict',
            'heads = load_file(str(folder / "heads.safetensors"))      # video/text heads + logit_scale',
        ])
    lines = ["from pathlib import Path", "", "import torch"]
    if kind in ("lora", "qlora"):
        lines.append("from peft import PeftModel")
    lines += ["from safetensors.torch import load_file",
              "from transformers import AutoModelForCausalLM, AutoTokenizer", "", *head]
    if kind == "merged":
        lines += ['tokenizer = AutoTokenizer.from_pretrained(str(folder / "llm"))',
                  f'llm = AutoModelForCausalLM.from_pretrained(str(folder / "llm"), dtype=torch.{dtype})'
                  "  # LoRA merged in"]
    else:
        lines += [f'base = "{base}"  # the base LLM (hub id or folder)',
                  'tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))']
        if kind == "qlora":
            lines += ["from transformers import BitsAndBytesConfig",
                      "# trained on a 4-bit NF4 base; without bitsandbytes load it unquantized (dtype=torch.bfloat16)",
                      "quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\", "
                      "bnb_4bit_compute_dtype=torch.bfloat16)",
                      "llm = AutoModelForCausalLM.from_pretrained(base, quantization_config=quant)"]
        else:
            lines.append(f"llm = AutoModelForCausalLM.from_pretrained(base, dtype=torch.{dtype})")
        if kind in ("lora", "qlora"):
            lines.append('llm = PeftModel.from_pretrained(llm, str(folder / "adapter"))  # the LoRA adapter')
    lines += ['encoder = load_file(str(folder / "encoder.safetensors"))      # visual encoder (HandCentricEncoder)',
              'projector = load_file(str(folder / "projector.safetensors"))  # visual tokens -> LLM input embeddings']
    return "\n".join(lines)


def slt_snippet(folder: Path, kind: str) -> str:
    if kind == "stage1":
        return "\n".join(["from slt_llm.models.vlp import VLPModel", "",
                          f'model = VLPModel.from_pretrained("{folder}")  # encoder + heads, ready for retrieval'])
    return "\n".join(["from slt_llm.models.slt_model import SLTModel", "",
                      f'model = SLTModel.from_pretrained("{folder}")  # checks the base LLM identity; '
                      "model.generate(batch) translates"])


def _base_section(facts: dict, lic: Optional[str]) -> str:
    base, rec, kind = facts["base"], facts.get("base_llm") or {}, facts["kind"]
    if not base:
        return "No base LLM is recorded in this folder.\n"
    where = "a Hugging Face hub id" if _is_hub_id(str(base)) else "a local folder, recorded by its absolute path"
    lines = [f"- base LLM: `{base}` ({where})"]
    if rec.get("identity"):
        emb = rec.get("embedding") or {}
        e = (f", input embedding `{emb.get('tensor')}` {'x'.join(map(str, emb.get('shape') or []))} {emb.get('dtype')}"
             if emb else "")
        lines.append(f"- identity: `{rec['identity']}` (config hash `{rec.get('config')}`{e}); "
                     "`slt_llm` refuses another LLM given for it (`slt_llm.models.llm.llm_identity`)")
    else:
        lines.append("- identity: not recorded (the base LLM was not readable when this folder was written)")
    if kind == "merged":
        src = facts["meta"].get("merged_from") or {}
        lines.append(f"- the {src.get('adapter', 'LoRA')} adapter of `{src.get('model')}` is merged into `llm/`: "
                     "this folder needs no base LLM")
    elif kind in ("lora", "qlora"):
        m = facts["meta"]
        lines.append(f"- adapter: {kind}, r={m.get('lora_r')}, alpha={m.get('lora_alpha')}, "
                     f"targets {', '.join(m.get('lora_targets') or [])}"
                     + (", base loaded in 4-bit NF4" if kind == "qlora" else ""))
    lines.append(f"- license: {lic} (declared by the base LLM)" if lic else
                 "- license: the base LLM folder declares none; its own license and your data's apply")
    return "\n".join(lines) + "\n"


def render_model_card(folder, final=None) -> "ModelCard":  # noqa: F821
    """The ``huggingface_hub.ModelCard`` of a model folder (read from ``folder``, see module doc);
    ``final``: where the folder will live when it is written elsewhere first (the paths the card
    shows)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    facts = _folder_facts(Path(folder).resolve())
    folder = Path(final or folder).resolve()
    name = f"{folder.parent.name}/{folder.name}" if folder.name == "model" else folder.name  # RUN_DIR/model
    kind, base, training = facts["kind"], facts["base"], facts.get("training")
    lic = _base_license(base)
    what = {"stage1": "stage 1 (visual encoder aligned to a frozen LLM's sentence embeddings)",
            "lora": "stage 2 (encoder -> projector -> LLM with a LoRA adapter)",
            "qlora": "stage 2 (encoder -> projector -> 4-bit LLM with a QLoRA adapter)",
            "merged": "stage 2, LoRA merged into the LLM (`slt-llm export`)",
            "none": "stage 2 (encoder -> projector -> frozen LLM)"}[kind]
    results = []
    dev, evals = facts.get("dev"), facts.get("evaluations") or []
    ds = "sign-language videos"
    if training and (training.get("data") or {}).get("dev"):
        c = training["data"]["dev"].get("corpus") or {}
        ds = f"slt_llm synthetic, profile {c['profile']}" if c.get("profile") else Path(training["data"]["dev"]["manifest"]).parent.name
    if kind != "stage1":
        if dev and dev.get("bleu4") is not None:
            results.append(EvalResult(task_type="translation", dataset_type=ds, dataset_name=f"{ds} (dev)",
                                      dataset_split="dev", metric_type="bleu", metric_value=round(float(dev["bleu4"]), 2),
                                      metric_name="BLEU-4 (dev)"))
        for e in evals:
            results.append(EvalResult(task_type="translation", dataset_type=Path(e.get("ref", "test")).stem,
                                      dataset_name=str(e.get("ref")), dataset_split=e.get("split", "test"),
                                      metric_type="bleu", metric_value=round(float(e["bleu4"]), 2), metric_name="BLEU-4"))
    data = ModelCardData(
        license=lic, base_model=str(base) if base else None,
        library_name="peft" if kind in ("lora", "qlora") else ("transformers" if kind == "merged" else None),
        tags=TAGS + ([kind] if kind != "none" else []),
        metrics=(["recall"] if kind == "stage1" else ["bleu", "chrf", "rouge"]),
        model_name=name if results else None, eval_results=results or None)
    config_lines = []
    if training and training.get("config"):
        config_lines.append(f"- training run: `{training['run_dir']}`; its full resolved config: `{training['config']}`")
        if training.get("tokenize"):
            config_lines.append(f"- BLEU tokenizer (`eval.tokenize`): `{training['tokenize']}`")
    own = ["vlp_config.yaml"] if kind == "stage1" else ["slt_config.yaml", "meta.json"]
    config_lines.append(f"- in this folder: {', '.join(f'`{x}`' for x in own)} (model config) and `clip.yaml` "
                        "(how clips are decoded: the same settings at inference)")
    if facts.get("versions"):
        config_lines.append("- written with " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()))
    if kind == "stage1":
        use = (f"```bash\nslt-llm train --config YOUR_STAGE2_CONFIG llm.path={base} train.init_encoder={folder}\n"
               f"slt-llm retrieval --model {folder} --manifest test.jsonl\n```\n")
    else:
        tok = f" --tokenize {training['tokenize']}" if training and training.get("tokenize") not in (None, "13a") else ""
        use = (f"```bash\nslt-llm translate --model {folder} --input videos/ --out out.jsonl\n"
               f"slt-llm eval --hyp out.jsonl --ref test.jsonl{tok} --model {folder}   # adds the scores to this card\n```\n")
    body = [
        f"# {name}: sign language translation, {what}",
        "",
        "Gloss-free sign language translation with slt_llm: a hand-centric visual "
        "encoder over hand crops, the full frame and keypoints"
        + (", trained to match a frozen LLM's sentence embeddings." if kind == "stage1" else
           ", a projector into the LLM's input embeddings, and the LLM writing the sentence."),
        "",
        "## Base LLM", "", _base_section(facts, lic),
        "## Training data", "", _data_section(training),
        "## Configuration", "", "\n".join(config_lines) + "\n",
        "## Metrics", "", _metrics_section(kind, dev, evals, folder),
        "## Use it", "",
        "With the `slt-llm` command (videos or frame folders in, one JSON line per video out; "
        "keypoints from `.pose` sidecars):", "", use,
        "With plain transformers + peft (the weights are safetensors; the visual encoder and projector are "
        "state dicts of slt_llm modules):" if kind != "stage1" else
        "With safetensors alone (state dicts of slt_llm modules):", "",
        "```python\n" + python_snippet(folder, facts) + "\n```", "",
        "The whole model in Python (with the slt_llm package installed):", "",
        "```python\n" + slt_snippet(folder, kind) + "\n```", "",
        "## Share it", "",
        "`slt-llm` does not upload. With a Hugging Face token (`hf auth login`):", "",
        f"```bash\n{UPLOAD_HINT.format(folder=folder)}\n```", "",
        ("The base LLM is a local folder: before uploading, set `base_model` in this card's header to its "
         "hub id, and the users of the upload need that LLM too.\n" if base and not _is_hub_id(str(base))
         and kind != "merged" else ""),
    ]
    text = "---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(body).rstrip() + "\n"
    return ModelCard(text)


def _adapter_card(folder: Path, facts: dict) -> str:
    from huggingface_hub import ModelCardData

    base = facts["base"]
    data = ModelCardData(base_model=str(base) if base else None, library_name="peft", tags=TAGS + ["lora"])
    return ("---\n" + data.to_yaml() + "\n---\n\n"
            f"# LoRA adapter of `{folder}`\n\n"
            f"The {facts['kind']} adapter of the sign language translation model in the folder above "
            f"(its card: `{folder / CARD_FILE}`), for the base LLM `{base}`. On its own it adapts the LLM; "
            "the videos come in through the visual encoder and projector beside it.\n\n"
            "```python\nfrom peft import AutoPeftModelForCausalLM\n\n"
            f'llm = AutoPeftModelForCausalLM.from_pretrained("{folder / "adapter"}")  # finds the base LLM itself\n```\n')


def write_model_card(folder, final=None) -> Path:
    """Write ``folder/README.md`` (and the adapter's own card over PEFT's template), then give the
    folder's files the umask's mode (:func:`follow_umask`). ``final``: the path the folder is
    renamed to after writing (an atomic export writes beside it), shown in the card. Returns the
    card's path."""
    folder = Path(folder)
    card = render_model_card(folder, final=final)
    card.save(folder / CARD_FILE)
    facts = _folder_facts(folder.resolve())
    if (folder / "adapter").is_dir():
        (folder / "adapter" / CARD_FILE).write_text(_adapter_card(Path(final or folder).resolve(), facts),
                                                    encoding="utf-8")
    for sub in ("llm", "tokenizer"):  # anything a library wrote as a blank template goes
        t = folder / sub / CARD_FILE
        if t.is_file() and "[More Information Needed]" in t.read_text(encoding="utf-8", errors="replace"):
            t.unlink()
    follow_umask(folder)
    return folder / CARD_FILE


def evaluation_target(folder) -> Path:
    """The meta.json that :func:`record_evaluation` adds to; ConfigError (one line) when ``folder``
    is no stage-2 model folder (checked before any scoring)."""
    from slt_llm.errors import ConfigError

    meta_path = Path(folder) / "meta.json"
    if not meta_path.is_file() or not isinstance(_read_json(meta_path).get("adapter"), str):
        raise ConfigError(f"{folder}: not a stage-2 model folder (no meta.json written by slt_llm); --model takes "
                          f"the folder that translated --hyp")
    return meta_path


def record_evaluation(folder, scores: dict, *, hyp, ref, split: str = "test") -> Path:
    """Add ``slt-llm eval`` scores (``slt_llm.metrics.evaluate_files``) of a translation run of the
    model in ``folder`` to its meta.json ``evaluations`` (one entry per reference file: a re-run
    replaces it) and re-render its card. Returns the card's path."""
    folder = Path(folder)
    meta_path = evaluation_target(folder)
    meta = json.loads(meta_path.read_text())
    entry = {"split": split, "ref": str(Path(ref).resolve()), "hyp": str(Path(hyp).resolve()),
             "model": str(folder.resolve()), "tokenize": scores.get("tokenize"),
             **{k: scores[k] for k in ("n", "bleu1", "bleu2", "bleu3", "bleu4", "chrf", "rouge_l", "signature")
                if k in scores}}
    meta["evaluations"] = [e for e in meta.get("evaluations") or [] if e.get("ref") != entry["ref"]] + [entry]
    tmp = meta_path.with_name(meta_path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False))
    os.replace(tmp, meta_path)
    return write_model_card(folder)
