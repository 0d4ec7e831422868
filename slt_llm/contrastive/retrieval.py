"""Video<->text retrieval of a stage-1 model: R@1/R@5/R@10 over the UNIQUE sentences of a split.

``slt-llm retrieval --model DIR --manifest test.jsonl [--json OUT]``

Definitions (a split with N videos and U <= N distinct sentences; repeated
sentences are one retrieval target, so a corpus with duplicates is not scored
against itself):

- video-to-text (v2t): each video ranks the U sentences by cosine similarity;
  it is right at k if ITS sentence is among the first k. Rank = 1 + the number
  of OTHER sentences scoring >= its own (ties count against the model, so a
  collapsed model scores 0, not 100).
- text-to-video (t2v): each unique sentence ranks the N videos; it is right at
  k if ANY of its videos is among the first k: rank = 1 + the number of videos
  of other sentences scoring >= its best own video.

R@k is the percentage (0-100) of queries right at k; k larger than the gallery
is clipped (R@k = 100 then). Cost: O(N*U*E) similarities, computed in row
blocks (memory O(block*U)).

A model trained with ``vlp.similarity=fine`` is scored with the same
fine-grained similarity it was trained with (video temporal tokens against
the frozen LLM's token states, ``contrastive.loss.fine_grained_similarity``):
O(N*U*T*L*E) compute, the (N, U) score matrix kept, the token tensors
(N, T, E) and (U, L, E) as float16.

:func:`retrieval_metrics` is the maths on embeddings, :func:`embed_and_score` the one
evaluation of a :class:`~slt_llm.models.vlp.VLPModel` (videos embedded, their unique
sentences, the metrics; stage-1 dev evaluation passes its cached sentence states),
:func:`evaluate_retrieval` runs it on a dataset (the demo and the CLI).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

KS = (1, 5, 10)


def unique_sentences(texts: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """``(unique texts in first-seen order, video_text (N,) long)``: row i's sentence index."""
    uniq: dict[str, int] = {}
    ids = [uniq.setdefault(t, len(uniq)) for t in texts]
    return list(uniq), torch.tensor(ids, dtype=torch.long)


@torch.no_grad()
def retrieval_metrics(video_emb: torch.Tensor, text_emb: torch.Tensor, video_text: torch.Tensor,
                      ks: Sequence[int] = KS, block: int = 1024, *, video_mask: Optional[torch.Tensor] = None,
                      text_mask: Optional[torch.Tensor] = None) -> dict:
    """R@k both ways.

    Args:
        video_emb: (N, E) video embeddings (unit vectors; the dot product is the score).
        text_emb: (U, E) embeddings of the unique sentences.
        video_text: (N,) long, the sentence index of each video (every sentence must
            have at least one video).
        video_mask, text_mask: fine-grained retrieval (a model trained with
            ``vlp.similarity=fine``): ``video_emb`` (N, T, E) and ``text_emb`` (U, L, E)
            are unit token vectors with these (N, T) / (U, L) masks and the score is
            ``contrastive.loss.fine_grained_similarity``; the (N, U) score matrix is
            computed once in row blocks and kept (N*U*4 bytes).
    Returns ``{"v2t": {"r1",...}, "t2v": {...}, "num_videos": N, "num_sentences": U,
    "v2t_median_rank": ...}`` with R@k in percent.
    """
    n, u = video_emb.shape[0], text_emb.shape[0]
    if n == 0 or u == 0:
        raise ValueError("retrieval needs at least one video and one sentence")
    # float32 scores even when called under an autocast context (stage-1 dev evaluation under bf16)
    with torch.autocast(device_type=video_emb.device.type, enabled=False):
        return _retrieval_metrics(video_emb, text_emb, video_text.long(), ks, block, video_mask, text_mask)


def _retrieval_metrics(video_emb, text_emb, video_text, ks, block, video_mask, text_mask) -> dict:
    n, u = video_emb.shape[0], text_emb.shape[0]
    v, t = video_emb.float(), text_emb.float()
    if video_mask is not None or text_mask is not None:
        from slt_llm.contrastive.loss import fine_grained_similarity

        scores = torch.cat([fine_grained_similarity(v[s:s + 64], video_mask[s:s + 64], t, text_mask)
                            for s in range(0, n, 64)])  # (N, U)
        sims = lambda s: scores[s:s + block]  # noqa: E731
    else:
        sims = lambda s: v[s:s + block] @ t.T  # noqa: E731
    v2t_rank = torch.empty(n, dtype=torch.long)
    best_own = torch.full((u,), -float("inf"))  # t2v: best score of a sentence's own videos
    for s in range(0, n, block):
        sim = sims(s)  # (b, U)
        own = video_text[s:s + block]
        pos = sim.gather(1, own[:, None])  # (b,1)
        v2t_rank[s:s + block] = (sim >= pos).sum(1)  # counts itself once: 1 + others >= own
        best_own.scatter_reduce_(0, own, pos.squeeze(1), reduce="amax")
    t2v_rank = torch.ones(u, dtype=torch.long)
    for s in range(0, n, block):
        sim = sims(s)  # (b, U)
        other = video_text[s:s + block][:, None] != torch.arange(u)[None, :]  # (b, U)
        t2v_rank += ((sim >= best_own[None, :]) & other).sum(0)
    out = {"v2t": {}, "t2v": {}, "num_videos": int(n), "num_sentences": int(u)}
    for k in ks:
        out["v2t"][f"r{k}"] = 100.0 * float((v2t_rank <= k).float().mean())
        out["t2v"][f"r{k}"] = 100.0 * float((t2v_rank <= k).float().mean())
    out["v2t_median_rank"] = float(v2t_rank.float().median())
    out["t2v_median_rank"] = float(t2v_rank.float().median())
    return out


def with_misses(metrics: dict, num_videos: int, num_sentences: int) -> dict:
    """R@k of :func:`retrieval_metrics` re-scored over a whole split of ``num_videos`` videos and
    ``num_sentences`` unique sentences, where ``metrics`` only saw the readable videos: an
    unreadable video is a v2t query that failed, a sentence without a readable video a t2v one.
    Adds ``"unreadable"`` (videos). Identical to ``metrics`` when nothing was unreadable."""
    def rescale(rk: dict, seen: int, total: int) -> dict:
        return rk if seen == total else {k: r * seen / total for k, r in rk.items()}

    nv, ns = metrics["num_videos"], metrics["num_sentences"]
    return dict(metrics, v2t=rescale(metrics["v2t"], nv, num_videos), t2v=rescale(metrics["t2v"], ns, num_sentences),
                unreadable=int(num_videos - nv))


@torch.no_grad()
def embed_and_score(model, loader, texts: Sequence[str], sentence_states: Callable[[list], object], *,
                    fine: bool, device: str | torch.device = "cpu") -> Optional[dict]:
    """The one retrieval evaluation of a stage-1 ``model`` (stage-1 dev evaluation and
    :func:`evaluate_retrieval`): embed the videos of ``loader`` (pooled, or token states
    when ``fine``), the unique sentences of the readable ones (``texts[i]`` is sample i's;
    ``sentence_states(unique)`` gives the frozen LLM's states of those sentences, in that
    order: pooled (U, H) or a token batch), and score with :func:`retrieval_metrics`.
    ``num_videos`` in the result counts the readable videos; None when none was readable."""
    if fine:
        video_emb, video_mask, index = model.embed_video_tokens(loader, device=device)
    else:
        video_emb, index = model.embed_videos(loader, device=device)
    if video_emb.shape[0] == 0:
        return None
    uniq, video_text = unique_sentences([texts[i] for i in index.tolist()])
    if fine:
        text_emb, text_mask = model.embed_text_tokens(sentence_states(uniq))
        return retrieval_metrics(video_emb, text_emb, video_text, video_mask=video_mask, text_mask=text_mask)
    text_emb = model.embed_texts(sentence_states(uniq).to(device))
    return retrieval_metrics(video_emb, text_emb, video_text)


@torch.no_grad()
def evaluate_retrieval(model, samples_or_manifest, clip_cfg, *, text_embedder=None, batch_size: int = 16,
                       device: str | torch.device = "cpu", num_workers: int = 0, pose_dir: Optional[str] = None,
                       cache_dir: Optional[str] = None, text_cache_dir: Optional[str] = None,
                       limit: Optional[int] = None, allow_outside_root: bool = False) -> dict:
    """Embed a split with a stage-1 ``model`` and score retrieval (see :func:`retrieval_metrics`).

    ``samples_or_manifest``: a manifest path or a list of ``Sample``. Texts are
    embedded by ``text_embedder`` (a :class:`TextEmbedder`), or by one built from
    the LLM recorded in the model (cached under ``text_cache_dir`` when given).
    Bad clips are skipped and counted (``"skipped"`` in the result).
    Cost: one encoder pass per video + one LLM pass per uncached sentence.
    """
    from torch.utils.data import DataLoader

    from slt_llm.data.dataset import SLTDataset, collate_clips
    from slt_llm.errors import InputError
    from slt_llm.models.text_embed import TextEmbedder, TokenTextEmbedder

    from slt_llm.data.manifest import read_manifest

    samples = (read_manifest(samples_or_manifest, allow_outside_root=allow_outside_root) if isinstance(samples_or_manifest, (str, os.PathLike))
               else list(samples_or_manifest))
    if limit is not None:
        samples = samples[:limit]
    ds = SLTDataset(samples, clip_cfg, on_error="skip", pose_dir=pose_dir, cache_dir=cache_dir)
    texts_all = [s.text for s in samples]
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_clips)
    fine = getattr(model, "fine", False)
    where = samples_or_manifest if isinstance(samples_or_manifest, (str, os.PathLike)) else "split"

    def sentence_states(uniq: list):
        embedder = text_embedder
        if fine and not isinstance(embedder, TokenTextEmbedder):
            # the model compares token states: a pooled embedder given by the caller names the LLM to use
            llm = embedder.llm_path if embedder is not None else model.llm_path
            if not llm:
                raise InputError(where, "the stage-1 model records no LLM path to embed sentences with")
            cache = embedder.cache_dir if embedder is not None else text_cache_dir
            dtype = embedder.dtype if embedder is not None else model.llm_dtype
            embedder = TokenTextEmbedder(llm, dtype=dtype, cache_dir=cache)
        if embedder is None:
            if not model.llm_path:
                raise InputError(where, "the stage-1 model records no LLM path to embed sentences with")
            embedder = TextEmbedder(model.llm_path, pooling=model.vlp_cfg.pooling, dtype=model.llm_dtype,
                                    cache_dir=text_cache_dir)
        return embedder.embed(uniq)

    out = embed_and_score(model, loader, texts_all, sentence_states, fine=fine, device=device)
    if out is None:
        raise InputError(where, "no readable video in this split")
    out["skipped"] = len(texts_all) - out["num_videos"]
    return out


def score_model_folder(model_dir, manifest, *, json_path=None, batch_size: int = 16, device: str = "cpu",
                       llm: Optional[str] = None, text_cache: Optional[str] = None, pose_dir: Optional[str] = None,
                       clip_cache: Optional[str] = None, allow_outside_root: bool = False) -> dict:
    """``slt-llm retrieval``: :func:`evaluate_retrieval` of the stage-1 model folder ``model_dir``
    on a manifest, with the clip settings the model records; ``llm`` replaces the LLM folder it
    records for the sentence embeddings. With ``json_path`` the result is also written there
    (atomically). Returns the result."""
    from slt_llm.config import ClipConfig
    from slt_llm.models.vlp import VLPModel

    model = VLPModel.from_pretrained(model_dir, device=device)
    if llm:
        model.llm_path = str(Path(llm).resolve())
    clip_cfg = model.clip_cfg or ClipConfig()
    res = evaluate_retrieval(model, manifest, clip_cfg, batch_size=batch_size, device=device,
                             pose_dir=pose_dir, cache_dir=clip_cache, text_cache_dir=text_cache,
                             allow_outside_root=allow_outside_root)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(json_path).with_name(Path(json_path).name + ".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, json_path)
    return res


def format_result(res: dict) -> str:
    """The lines ``slt-llm retrieval`` prints: R@k per direction, and the skipped samples."""
    lines = [f"{d}: " + "  ".join(f"R@{k[1:]}={v:.2f}" for k, v in res[d].items())
             + f"  ({res['num_videos']} videos, {res['num_sentences']} unique sentences)" for d in ("v2t", "t2v")]
    if res["skipped"]:
        lines.append(f"skipped {res['skipped']} unreadable sample(s)")
    return "\n".join(lines)
