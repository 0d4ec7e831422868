"""Similarity trajectories of a stage-1 run, built from its reference checkpoints.

Stage 1 (pair selection) and ``slt-llm analyze`` both need them: every training
video is embedded at each reference checkpoint ``RUN_DIR/reference/ref_KK``
(sharded over ranks, all-gathered), each sample's sentence goes through that
checkpoint's text head (the frozen-LLM sentence embeddings are computed once),
then ``contrastive.trajectories.compute_trajectories`` keeps each anchor's
top-M candidate negatives and their K similarities (O(N*M*K) memory, never
N x N; the candidate search is sharded over ranks too: each rank its block of
anchor rows, gathered once). Cost: K encoder passes over N clips + the blockwise candidate search.
"""

from __future__ import annotations

from pathlib import Path

import torch

from slt_llm import distributed as dist_utils
from slt_llm import faults
from slt_llm.errors import ConfigError, InputError


def clip_loader(ds, batch_sampler, num_workers: int = 0, *, seed: tuple = (0,), first: int = 0):
    """DataLoader over ``ds`` with explicit batches of indices, collated by ``collate_clips``
    (``data.loader.batch_loader``: ``batch_sampler[k]`` is batch ``first + k`` of ``seed``'s
    epoch; building or iterating it leaves the global random generators untouched)."""
    from slt_llm.data.dataset import collate_clips
    from slt_llm.data.loader import batch_loader

    return batch_loader(ds, list(batch_sampler), collate_clips, num_workers, seed=seed, first=first)


def _embed_shard(embed, ds, batch_size: int, num_workers: int, rank: int, world_size: int) -> list:
    """This rank's samples r, r+W, ... through ``embed(loader) -> (*outputs, index)``, all-gathered:
    one ``(index, *outputs)`` per rank. A sample that fails to load raises InputError."""
    idx = list(range(rank, len(ds), world_size))
    batches = [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    *outputs, index = embed(clip_loader(ds, batches, num_workers))
    if index.numel() != len(idx):
        raise InputError(getattr(ds, "source", "training set"), "a sample became unreadable during training")
    return dist_utils.all_gather_object((index, *outputs))


@torch.no_grad()
def embed_dataset_sharded(model, ds, batch_size: int, num_workers: int = 0, device="cpu",
                          rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """(N, E) video embeddings of every sample of ``ds`` in dataset order; each rank embeds
    indices r, r+W, ... and the parts are all-gathered. Cost: one encoder pass per clip
    (divided over the ranks). A sample that fails to load raises InputError."""
    parts = _embed_shard(lambda loader: model.embed_videos(loader, device=device), ds, batch_size, num_workers,
                         rank, world_size)
    out = torch.zeros(len(ds), parts[0][1].shape[1])
    for ix, e in parts:
        out[ix] = e
    return out


@torch.no_grad()
def embed_tokens_sharded(model, ds, batch_size: int, num_workers: int = 0, device="cpu",
                         rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token video embeddings of every sample of ``ds`` in dataset order: ``(tokens (N, T, E)
    float16, mask (N, T) bool)``, T the longest clip's token count; sharded like
    :func:`embed_dataset_sharded`. Memory: N x T x E x 2 bytes."""
    from slt_llm.models.vlp import pad_tokens

    parts = _embed_shard(lambda loader: model.embed_video_tokens(loader, device=device), ds, batch_size,
                         num_workers, rank, world_size)
    parts = [p for p in parts if p[0].numel()]
    all_tok, all_mask = pad_tokens([p[1] for p in parts], [p[2] for p in parts])
    order = torch.cat([p[0] for p in parts])
    out_tok = torch.zeros(len(ds), *all_tok.shape[1:], dtype=all_tok.dtype)
    out_mask = torch.zeros(len(ds), all_mask.shape[1], dtype=torch.bool)
    out_tok[order], out_mask[order] = all_tok, all_mask
    return out_tok, out_mask


def trajectories_from_references(ref_dirs: list[Path], ds, text_idx: torch.Tensor, text_llm: torch.Tensor,
                                 sel_cfg, *, batch_size: int, num_workers: int = 0, device="cpu", rank: int = 0,
                                 world_size: int = 1, text_tokens=None):
    """Embed the training set at each reference checkpoint and build the top-M trajectories.

    V_k (N,E): videos through checkpoint k; T_k (N,E): each sample's sentence through
    checkpoint k's text head (``text_llm`` (U,H) frozen-LLM embeddings of the unique
    sentences, ``text_idx`` (N,) each sample's row). Returns what
    ``contrastive.trajectories.compute_trajectories`` returns.

    With ``text_tokens`` (a ``models.text_embed.TokenStates`` of the U unique sentences;
    ``vlp.similarity=fine``) the fine-grained trajectories instead
    (``compute_fine_trajectories``): at checkpoint k the encoder's temporal tokens through
    its video head (N, T, E) and each sample's sentence tokens through its text head
    (N, L, E), both kept as float16 for all K checkpoints: K x N x (T + L) x E x 2 bytes.
    """
    from slt_llm.contrastive.trajectories import compute_fine_trajectories, compute_trajectories
    from slt_llm.models.vlp import VLPModel

    if len(ref_dirs) < 2:
        raise ConfigError(f"pair selection needs K >= 2 reference checkpoints, found {len(ref_dirs)}")
    videos, texts = [], []
    for d in ref_dirs:
        m = VLPModel.from_pretrained(d, device=device)
        if text_tokens is not None:
            videos.append(embed_tokens_sharded(m, ds, batch_size, num_workers, device, rank, world_size))
            t, tm = m.embed_text_tokens(text_tokens)  # (U, L, E) float16
            texts.append((t[text_idx], tm[text_idx]))
        else:
            videos.append(embed_dataset_sharded(m, ds, batch_size, num_workers, device, rank, world_size))
            texts.append(m.embed_texts(text_llm.to(device))[text_idx])
        faults.point("trajectory")  # one reference checkpoint embedded (tests kill a run here)
    if text_tokens is not None:
        return compute_fine_trajectories(videos, texts, top_m=sel_cfg.top_m, rank=rank, world_size=world_size)
    return compute_trajectories(videos, texts, top_m=sel_cfg.top_m, block_size=sel_cfg.block_size, rank=rank,
                                world_size=world_size)


def training_set_for_analysis(cfg):
    """``(texts (N,), dataset, text_idx (N,), text_llm (U,H))`` of a stage-1 run's training set
    (a Stage1Config), in the order stage 1 used (one process)."""
    from slt_llm.contrastive.retrieval import unique_sentences
    from slt_llm.data.dataset import readable_training_set
    from slt_llm.models.text_embed import TextEmbedder
    from slt_llm.run_layout import text_cache_dir

    ds, samples, _ = readable_training_set(cfg.data)
    texts = [s.text for s in samples]
    uniq, text_idx = unique_sentences(texts)
    emb = TextEmbedder(cfg.llm.path, pooling=cfg.vlp.pooling, dtype=cfg.llm.dtype, cache_dir=text_cache_dir(cfg),
                       trust_remote_code=cfg.llm.trust_remote_code)
    return texts, ds, text_idx, emb.embed(uniq)


def token_states_for_analysis(cfg, texts: list[str]):
    """The frozen LLM's token states (``TokenStates``) of the unique ``texts`` of a run trained
    with ``vlp.similarity=fine`` (cached like stage 1's); None for a pooled run."""
    if getattr(cfg.vlp, "similarity", "pooled") != "fine":
        return None
    from slt_llm.contrastive.retrieval import unique_sentences
    from slt_llm.models.text_embed import TokenTextEmbedder
    from slt_llm.run_layout import text_cache_dir

    uniq, _ = unique_sentences(texts)
    return TokenTextEmbedder(cfg.llm.path, dtype=cfg.llm.dtype, cache_dir=text_cache_dir(cfg),
                             trust_remote_code=cfg.llm.trust_remote_code).embed(uniq)
