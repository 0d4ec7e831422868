"""``slt-llm synth``: write a synthetic sign corpus of a profile (:mod:`slt_llm.synth.profiles`).

``generate(out, profile="toy"|"phoenix", ...)`` writes::

    out/train.jsonl, dev.jsonl, test.jsonl   manifests (id, video, text, pose, signer, gloss; phoenix: group)
    out/videos/<id>.mp4                      H.264 (PyAV, yuv420p), size x size px, fps frames/s
    out/videos/<id>.pose                     keypoints, MediaPipe Holistic layout (33+468+21+21)
    out/corpus.json                          profile, seed, language description, lexicon, dev/test
                                             sentences (for the stand-in LLM's extra sentences)

``text_only=True`` writes the same manifests' ``text``, ``gloss``, ``signer`` (and ``group``)
fields without rendering (no ``video``/``pose``). The summary's ``text_hash`` is
:func:`slt_llm.synth.profiles.text_hash` of those fields, identical with and without rendering.

Rendering: each sample has its own random stream (``_sample_seed``), so ``workers`` processes give
the same files. The phoenix profile renders its glosses with the extended lexicon
(fingerspelling for ``fs-`` names), its 9 signers (speed, transitions, co-articulation, jitter)
and detector misses on the written keypoints (``render.detector_misses``); the toy profile writes
exact keypoints.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from slt_llm.errors import InputError
from slt_llm.progress import progress_bar
from slt_llm.synth import render
from slt_llm.synth.profiles import PHOENIX_SEED, PHOENIX_SPLITS, PROFILES, phoenix_sentences, text_hash
from slt_llm.synth.toy import SLOTS, build_grammar, content_words, glosses, make_sentences, realize


def _sample_seed(seed: int, split: str, i: int) -> list:
    h = hashlib.sha256(f"{split}:{i}".encode()).digest()
    return [seed, int.from_bytes(h[:4], "little")]


def _make_sample(job: tuple) -> tuple:
    """Render and write one sample (a process-pool task). Returns (signer name, frames)."""
    sid, signs, seed, split, i, lexicon, signers, signer_name, size, fps, vid_dir, toy = job
    rng = np.random.default_rng(_sample_seed(seed, split, i))
    if toy:  # the toy signer is the first draw of the sample's stream (see _toy_signer)
        rng.integers(len(signers))
    signer = next(s for s in signers if s.name == signer_name)
    if fps != 12:  # keep the sign durations in seconds
        signer = render.Signer(**{**signer.__dict__,
                                  "frames_per_sign": max(4, int(round(signer.frames_per_sign * fps / 12.0)))})
    frames, xy, conf = render.render_sample(signs, lexicon, signer, size, rng)
    if not toy:
        xy, conf = render.detector_misses(xy, conf, rng)
    render.encode_mp4(Path(vid_dir) / f"{sid}.mp4", frames, fps)
    render._write_pose(Path(vid_dir) / f"{sid}.pose", xy, conf, float(fps), size, size)
    return signer.name, len(frames)


def _toy_signer(seed: int, split: str, i: int, signers: list) -> str:
    return signers[int(np.random.default_rng(_sample_seed(seed, split, i)).integers(len(signers)))].name


def _toy_records(n_train, n_dev, n_test, seed, dup_rate, vocab):
    g = build_grammar(vocab)
    sents = make_sentences(g, n_train, n_dev, n_test, seed, dup_rate)
    recs = {sp: [{"text": realize(g, slots), "gloss": " ".join(glosses(slots)), "kind": kind}
                 for slots, kind in sents[sp]] for sp in ("train", "dev", "test")}
    desc = {"grammar": g, "vocabulary": content_words(g), "sign_order": list(SLOTS),
            "heldout_triples": sents["heldout"], "dup_rate": dup_rate}
    return recs, desc


def _write_jsonl(path: Path, rows: list) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def phoenix_records(seed: int = PHOENIX_SEED, counts: Optional[dict] = None, subset: Optional[dict] = None) -> dict:
    """The phoenix profile's sentences; ``subset`` {split: n} keeps the first n of each split of
    the full profile (a demo-sized corpus with the full profile's language)."""
    recs = phoenix_sentences(seed, counts)
    if subset:
        recs = {sp: r[: int(subset.get(sp, len(r)))] for sp, r in recs.items()}
    return recs


def generate(out, *, profile: str = "toy", n_train: Optional[int] = None, n_dev: Optional[int] = None,
             n_test: Optional[int] = None, seed: Optional[int] = None, dup_rate: float = 0.3,
             size: int = 128, vocab: Optional[int] = None, fps: int = 12, workers: int = 1,
             text_only: bool = False, progress: bool = True) -> dict:
    """Write the synthetic corpus under ``out`` (module docstring).

    toy: ``n_train``/``n_dev``/``n_test`` sentences (defaults 600/100/100), ``dup_rate``, ``vocab``.
    phoenix: the profile's 7,096 / 519 / 642 sentences of ``seed`` (default the frozen
    :data:`PHOENIX_SEED`); ``n_*`` keep the first n of each split (a subset: same language,
    statistics of the subset). Returns a summary: ``counts``, ``frames``, ``paths``, ``text_hash``,
    ``profile``, ``seed`` (toy adds ``duplicates``, ``unseen``, ``vocab_size``).
    """
    from slt_llm.data.manifest import Sample, write_manifest

    if profile not in PROFILES:
        raise InputError("--profile", f"unknown profile {profile!r} (choose {', '.join(PROFILES)})")
    if not 0.0 <= dup_rate < 1.0:
        raise InputError("--dup-rate", f"must be in [0, 1), got {dup_rate}")
    if size < 32 or size % 2:
        raise InputError("--size", f"must be an even number >= 32, got {size}")
    if fps < 4:
        raise InputError("--fps", f"must be >= 4, got {fps}")
    counts = {"train": n_train, "dev": n_dev, "test": n_test}
    if any(v is not None and v < 0 for v in counts.values()):
        raise InputError("--n-train", "sample counts must be >= 0")
    summary: dict = {"profile": profile, "counts": {}, "frames": 0, "paths": {}}
    if profile == "toy":
        seed = 0 if seed is None else seed
        n = {"train": 600, "dev": 100, "test": 100}
        counts = {k: n[k] if v is None else v for k, v in counts.items()}
        if counts["train"] < 1:
            raise InputError("--n-train", "sample counts must be >= 0 and n_train >= 1")
        recs, desc = _toy_records(counts["train"], counts["dev"], counts["test"], seed, dup_rate, vocab)
        lexicon = render.build_lexicon(desc["vocabulary"])
        signers = render.make_signers(seed)
        for sp in ("train", "dev", "test"):
            for i, r in enumerate(recs[sp]):
                r["signer"] = _toy_signer(seed, sp, i, signers)
        summary["duplicates"] = {"exact": sum(r["kind"] == "exact" for r in recs["train"]),
                                 "near": sum(r["kind"] == "near" for r in recs["train"])}
        summary["unseen"] = {sp: sum(r["kind"] == "unseen" for r in recs[sp]) for sp in ("dev", "test")
                             if any(r["kind"] == "unseen" for r in recs[sp])}
        summary["vocab_size"] = len(desc["vocabulary"])
    else:
        from slt_llm.synth.weather import WeatherLanguage

        seed = PHOENIX_SEED if seed is None else seed
        subset = {k: v for k, v in counts.items() if v is not None}
        for k, v in subset.items():
            if v > PHOENIX_SPLITS[k]:
                raise InputError(f"--n-{k}", f"the phoenix profile has {PHOENIX_SPLITS[k]} {k} sentences, asked {v}")
        recs = phoenix_records(seed, subset=subset)
        lang = WeatherLanguage()
        lexicon = render.build_lexicon(lang.sign_vocabulary(), extended=True)
        signers = render.phoenix_signers(seed)
        desc = {"language": "weather forecasts, English (slt_llm.synth.weather)"}
    summary["seed"] = seed
    summary["text_hash"] = text_hash(recs)
    out = Path(out)
    vid_dir = out / "videos"
    (vid_dir if not text_only else out).mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if not text_only:
        jobs = [(f"{sp}_{i:05d}", r["gloss"].split(), seed, sp, i, lexicon, signers, r.get("signer"), size, fps,
                 str(vid_dir), profile == "toy")
                for sp in ("train", "dev", "test") for i, r in enumerate(recs[sp])]
        if workers > 1 and len(jobs) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: safe even when the caller has started threads (torch, tokenizers)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                done = list(progress_bar(pool.map(_make_sample, jobs, chunksize=4), total=len(jobs),
                                         desc="synth", unit="clip", enabled=progress))
        else:
            done = [_make_sample(j) for j in progress_bar(jobs, desc="synth", unit="clip", enabled=progress)]
        results = {j[0]: d for j, d in zip(jobs, done)}
    for sp in ("train", "dev", "test"):
        samples = []
        for i, r in enumerate(recs[sp]):
            sid = f"{sp}_{i:05d}"
            extra = {"gloss": r["gloss"]}
            if "group" in r:
                extra["group"] = r["group"]
            if text_only:
                samples.append({"id": sid, "text": r["text"], "signer": r["signer"], **extra})
                continue
            signer_name, n_frames = results[sid]
            assert signer_name == r["signer"], (sid, signer_name, r["signer"])
            summary["frames"] += n_frames
            samples.append(Sample(id=sid, video=str(vid_dir / f"{sid}.mp4"), text=r["text"],
                                  pose=str(vid_dir / f"{sid}.pose"), signer=signer_name, extra=extra))
        if text_only:
            _write_jsonl(out / f"{sp}.jsonl", samples)
        else:
            write_manifest(out / f"{sp}.jsonl", samples)
        summary["counts"][sp] = len(samples)
        summary["paths"][sp] = str(out / f"{sp}.jsonl")
    eval_sents = sorted({r["text"] for sp in ("dev", "test") for r in recs[sp]})
    corpus = {"profile": profile, "seed": seed, "size": size, "fps": fps, "counts": summary["counts"],
              "text_only": text_only, "text_hash": summary["text_hash"], "lexicon": lexicon,
              "signers": [s.__dict__ for s in signers], "eval_sentences": eval_sents, **desc}
    tmp = out / ".corpus.json.tmp"
    tmp.write_text(json.dumps(corpus, indent=1, sort_keys=True))
    os.replace(tmp, out / "corpus.json")
    return summary


def read_records(corpus_dir) -> dict:
    """{split: [record]} (text, gloss, signer, group) from a corpus folder's manifests (rendered or
    text-only); for :func:`slt_llm.synth.stats.corpus_stats`."""
    from slt_llm.data.manifest import jsonl_objects

    out = {}
    for sp in ("train", "dev", "test"):
        path = Path(corpus_dir) / f"{sp}.jsonl"
        if not path.is_file():
            raise InputError(path, "manifest not found (a corpus folder holds train/dev/test.jsonl)")
        recs = []
        for i, rec in jsonl_objects(path, "manifest not found"):
            if not isinstance(rec.get("text"), str):
                raise InputError(path, f"line {i}: no 'text' string")
            recs.append({"text": rec["text"], "gloss": str(rec.get("gloss", "")), "signer": rec.get("signer"),
                         **({"group": rec["group"]} if "group" in rec else {})})
        out[sp] = recs
    return out
