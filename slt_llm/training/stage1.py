"""Stage 1: selective contrastive alignment of the visual encoder to the frozen LLM (SCL-SLT).

``slt-llm vlp --config FILE [--resume] [key.sub=value ...]`` (one process) and
``accelerate launch --config_file ds_configs/accelerate_zero2.yaml scripts/train_vlp.py --config FILE``
(several processes, DeepSpeed ZeRO as Accelerate's plugin) run :func:`train_vlp`.

Training flow (``selection.selection``):

- ``random``: the GFSLT-VLP baseline: random global batches every epoch, plain
  symmetric InfoNCE (no false-negative mask).
- ``random_fn``: random global batches + the TEXT false-negative mask (identical
  sentences after normalisation and near-duplicates by chrF, see
  ``slt_llm.contrastive.selection``) from step 0. Isolates the mask's effect.
- ``ps`` (default), pair selection:

  1. Reference phase: the ``random`` arm, exactly (same seed, same batches, same
     schedule, no mask) for ``selection.ref_epochs`` epochs; at the end of every
     ``ref_interval``-th epoch the model (encoder + heads) is saved as a reference
     checkpoint ``RUN_DIR/reference/ref_KK/`` (a stage-1 model folder); K =
     ref_epochs // ref_interval must be >= 2. (The ``random`` arms save the same
     checkpoints, so ``slt-llm analyze`` works on a baseline run too.)
  2. Trajectories: every training video is embedded at each reference checkpoint
     (sharded over ranks), texts go through that checkpoint's text head (the LLM
     embeddings are cached once), then ``contrastive.trajectories`` keeps each
     anchor's top-M candidate negatives and their K similarities (O(N*M*K)
     memory, never N x N). Saved as ``RUN_DIR/reference/trajectories.npz``.
  3. Scores, groups and false negatives (``contrastive.selection``): the text
     duplicates plus high-to-high trajectory pairs form the mask used in the loss
     from then on.
  4. The remaining ``train.epochs - ref_epochs`` epochs use greedy PS global
     batches under the curriculum (alpha(e') for e' = epoch - ref_epochs). The
     arms therefore take the SAME number of optimizer steps; the extra cost of PS
     is the K embedding passes + selection, logged as ``selection_s``.

Data parallelism: a batch sampler yields each rank's slice of the global batch
(``batch_size`` per process); the DataLoader is never passed to
``accelerator.prepare`` (only model, optimizer and scheduler are), batches are
moved to the device here, and the loss all-gathers features so negatives are the
global batch. ``train.grad_accum`` must be 1 (accumulating would shrink the set
of negatives, not emulate a larger batch). Unreadable samples are found by one
sharded pre-scan before training (with ``data.cache_dir`` set it also fills the
clip cache, so it costs no extra decoding later) and removed, so every rank's
slice has the same size.

Logging and checkpoints follow stage 2 (``training.common``): ``RUN_DIR/metrics.jsonl``
(``step``, ``loss``, ``lr``, ``samples_per_s``, ``temperature``, ``epoch``,
``phase``; dev lines add ``dev_v2t_r1``/``dev_v2t_r5``/``dev_t2v_r1``), checkpoints
under ``RUN_DIR/checkpoints/step_N/``, ``--resume`` from the last one with the same
data order (PS state is rebuilt from the saved trajectories). The best model on
DEV video-to-text R@1 (ties broken by R@5, R@10; never test) is exported to
``RUN_DIR/model/``; without a dev manifest the final model is exported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Optional

import torch

from slt_llm import distributed as dist_utils
from slt_llm.config import Stage1Config, load_config, save_config
from slt_llm.errors import ConfigError, InputError

ARMS = ("ps", "random", "random_fn")
REFERENCE_DIR = "reference"
TRAJ_FILE = "trajectories.npz"
TEXTS_FILE = "train_texts.json"  # the sentence of each training index (after removing unreadable samples)


# ----------------------------------------------------------------------- helpers
def reference_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """The reference checkpoints of a run (``RUN_DIR/reference/ref_KK``), in order."""
    root = Path(run_dir) / REFERENCE_DIR
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("ref_")
                  and (d / "vlp_config.yaml").is_file())


def num_reference_checkpoints(cfg: Stage1Config) -> int:
    return cfg.selection.ref_epochs // max(1, cfg.selection.ref_interval)


def validate_config(cfg: Stage1Config) -> None:
    """Config errors that must surface before any long work."""
    sel = cfg.selection
    if sel.selection not in ARMS:
        raise ConfigError(f"selection.selection must be one of {', '.join(ARMS)} (got {sel.selection!r})")
    if not cfg.llm.path:
        raise ConfigError("llm.path is not set: stage 1 aligns to a frozen LLM's text space")
    if not cfg.data.train_manifest:
        raise ConfigError("data.train_manifest is not set")
    if cfg.train.grad_accum != 1:
        raise ConfigError("stage 1 needs train.grad_accum=1: contrastive negatives come from the batch; "
                          "raise train.batch_size or the number of processes instead")
    if sel.ref_interval < 1:
        raise ConfigError(f"selection.ref_interval must be >= 1 (got {sel.ref_interval})")
    if sel.selection == "ps":
        k = num_reference_checkpoints(cfg)
        if k < 2:
            raise ConfigError(f"pair selection needs K >= 2 reference checkpoints; selection.ref_epochs="
                              f"{sel.ref_epochs} with ref_interval={sel.ref_interval} gives K={k}")
        if cfg.train.max_steps is None and sel.ref_epochs >= cfg.train.epochs:
            raise ConfigError(f"selection.ref_epochs={sel.ref_epochs} leaves no pair-selection epoch "
                              f"(train.epochs={cfg.train.epochs})")


def _prescan(ds, rank: int = 0, world_size: int = 1) -> list[int]:
    """Indices of unreadable samples (each rank checks r, r+W, ...; results all-gathered)."""
    r, w = rank, world_size
    bad = []
    for i in range(r, len(ds), w):
        item = ds[i]
        if "error" in item:
            bad.append(i)
    return sorted(i for part in dist_utils.all_gather_object(bad) for i in part)


def build_training_set(cfg: Stage1Config, rank: int = 0, world_size: int = 1):
    """``(dataset, samples, bad)``: the training manifest as an SLTDataset with unreadable
    samples removed (found by one sharded pre-scan; ``data.on_error=raise`` raises on the
    first). Sample i of ``samples`` is dataset index i everywhere in stage 1."""
    from slt_llm.data.dataset import SLTDataset
    from slt_llm.data.manifest import read_manifest

    dkw = dict(pose_dir=cfg.data.pose_dir, cache_dir=cfg.data.cache_dir)
    samples = read_manifest(cfg.data.train_manifest, allow_outside_root=cfg.data.allow_outside_root)
    ds = SLTDataset(samples, cfg.data.clip, on_error="skip", **dkw)
    bad = _prescan(ds, rank, world_size)
    if bad and cfg.data.on_error == "raise":
        raise InputError(samples[bad[0]].video, ds[bad[0]].get("error", "unreadable sample"))
    if bad:
        bad_set = set(bad)
        samples = [s for i, s in enumerate(samples) if i not in bad_set]
        ds = SLTDataset(samples, cfg.data.clip, on_error="skip", **dkw)
    return ds, samples, bad


def text_cache_dir(cfg: Stage1Config) -> str:
    """``vlp.text_cache_dir`` or ``RUN_DIR/text_cache``."""
    return cfg.vlp.text_cache_dir or str(Path(cfg.train.run_dir) / "text_cache")


def training_set_for_analysis(cfg: Stage1Config):
    """``(texts (N,), dataset, text_idx (N,), text_llm (U,H))`` of a run's training set, in the
    order stage 1 used (one process)."""
    from slt_llm.contrastive.retrieval import unique_sentences
    from slt_llm.models.text_embed import TextEmbedder

    ds, samples, _ = build_training_set(cfg)
    texts = [s.text for s in samples]
    uniq, text_idx = unique_sentences(texts)
    emb = TextEmbedder(cfg.llm.path, pooling=cfg.vlp.pooling, dtype=cfg.llm.dtype, cache_dir=text_cache_dir(cfg),
                       trust_remote_code=cfg.llm.trust_remote_code)
    return texts, ds, text_idx, emb.embed(uniq)


def _embed_texts_rank0_first(embedder_args: dict, texts: list[str], accelerator):
    """Rank 0 fills the text cache, the others then read it (no concurrent writers)."""
    from slt_llm.models.text_embed import TextEmbedder

    if accelerator.is_main_process:
        emb = TextEmbedder(**embedder_args)
        out = emb.embed(texts)
        emb.release()
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        emb = TextEmbedder(**embedder_args)
        out = emb.embed(texts)
    return emb, out


def _loader(ds, batch_sampler, num_workers: int):
    from torch.utils.data import DataLoader

    from slt_llm.data.dataset import collate_clips

    return DataLoader(ds, batch_sampler=batch_sampler, collate_fn=collate_clips, num_workers=num_workers)


@torch.no_grad()
def embed_dataset_sharded(model, ds, batch_size: int, num_workers: int = 0, device="cpu",
                          rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """(N, E) video embeddings of every sample of ``ds`` in dataset order; each rank embeds
    indices r, r+W, ... and the parts are all-gathered. Cost: one encoder pass per clip
    (divided over the ranks). A sample that fails to load raises InputError."""
    idx = list(range(rank, len(ds), world_size))
    batches = [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    emb, index = model.embed_videos(_loader(ds, batches, num_workers), device=device)
    if index.numel() != len(idx):
        raise InputError(getattr(ds, "source", "training set"), "a sample became unreadable during training")
    parts = dist_utils.all_gather_object((index, emb))
    n = len(ds)
    out = torch.zeros(n, emb.shape[1])
    for ix, e in parts:
        out[ix] = e
    return out


def compute_trajectories(ref_dirs: list[Path], ds, text_idx: torch.Tensor, text_llm: torch.Tensor, sel_cfg, *,
                         batch_size: int, num_workers: int = 0, device="cpu", rank: int = 0, world_size: int = 1):
    """Embed the training set at each reference checkpoint and build the top-M trajectories.

    V_k (N,E): videos through checkpoint k; T_k (N,E): each sample's sentence through
    checkpoint k's text head. Returns what ``contrastive.trajectories.compute_trajectories``
    returns. Cost: K encoder passes over N clips + the blockwise candidate search.
    """
    from slt_llm.contrastive import trajectories as traj_mod
    from slt_llm.models.vlp import VLPModel

    if len(ref_dirs) < 2:
        raise ConfigError(f"pair selection needs K >= 2 reference checkpoints, found {len(ref_dirs)}")
    videos, texts = [], []
    for d in ref_dirs:
        m = VLPModel.from_pretrained(d, device=device)
        videos.append(embed_dataset_sharded(m, ds, batch_size, num_workers, device, rank, world_size))
        texts.append(m.embed_texts(text_llm.to(device))[text_idx])
    return traj_mod.compute_trajectories(videos, texts, top_m=sel_cfg.top_m, block_size=sel_cfg.block_size)


# ----------------------------------------------------------------------- training
def train_vlp(cfg: Stage1Config, resume: bool = False) -> dict:
    """Run stage 1 (see the module docstring). Returns ``{"best_dev_r1", "best_step", "steps",
    "model_dir", "selection_s", "skipped", "final_loss", "run_dir"}``."""
    from slt_llm.training import common

    validate_config(cfg)
    if not Path(cfg.llm.path).is_dir():
        raise InputError(cfg.llm.path, "LLM directory not found (llm.path)")
    tc = cfg.train
    accelerator = common.setup_accelerator(tc, cfg.optim, log_tensorboard=False)
    try:
        return _train(cfg, resume, accelerator)
    finally:  # also on errors: another run may follow in this process (tests, the ablation)
        common.teardown(accelerator)


def _train(cfg: Stage1Config, resume: bool, accelerator) -> dict:
    from slt_llm.contrastive import selection as sel_mod
    from slt_llm.contrastive.loss import SelectiveInfoNCE
    from slt_llm.contrastive.retrieval import retrieval_metrics, unique_sentences
    from slt_llm.data.dataset import SLTDataset
    from slt_llm.data.manifest import read_manifest
    from slt_llm.models.vlp import VLPModel
    from slt_llm.training import common

    tc, sel = cfg.train, cfg.selection
    run_dir = Path(tc.run_dir)
    rank, world = accelerator.process_index, accelerator.num_processes
    device = accelerator.device
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:  # a fresh run never reuses another run's reference checkpoints or trajectories
            import shutil

            stale = [run_dir / REFERENCE_DIR, run_dir / "metrics.jsonl", run_dir / "result.json"]
            if any(p.exists() for p in stale):
                dist_utils.print0(f"stage 1: fresh run in {run_dir}: removing the previous run's reference/, "
                                  "metrics.jsonl and result.json")
            shutil.rmtree(run_dir / REFERENCE_DIR, ignore_errors=True)
            for p in stale[1:]:
                p.unlink(missing_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()
    common.seed_everything(tc.seed)

    # ---- data (bad samples found once, before training)
    ds, train_samples, bad = build_training_set(cfg, rank, world)
    if bad:
        dist_utils.print0(f"stage 1: skipped {len(bad)} unreadable training sample(s)")
    dkw = dict(pose_dir=cfg.data.pose_dir, cache_dir=cfg.data.cache_dir)
    train_texts = [s.text for s in train_samples]
    if accelerator.is_main_process:  # what dataset index i means, for `slt-llm analyze`
        (run_dir / TEXTS_FILE).write_text(json.dumps(train_texts, ensure_ascii=False))
    n = len(ds)
    global_batch = tc.batch_size * world
    if global_batch > n:
        raise ConfigError(f"global batch {global_batch} (train.batch_size={tc.batch_size} x {world} processes) "
                          f"is larger than the training set ({n} readable samples)")
    dev_samples = read_manifest(cfg.data.dev_manifest, allow_outside_root=cfg.data.allow_outside_root) if cfg.data.dev_manifest else []

    # ---- text side: the frozen LLM, once (cached)
    ekw = dict(llm_path=cfg.llm.path, pooling=cfg.vlp.pooling, dtype=cfg.llm.dtype, cache_dir=text_cache_dir(cfg),
               trust_remote_code=cfg.llm.trust_remote_code)
    train_uniq, text_idx = unique_sentences(train_texts)
    dev_uniq = list(dict.fromkeys(s.text for s in dev_samples))
    embedder, all_text = _embed_texts_rank0_first(ekw, train_uniq + dev_uniq, accelerator)
    text_llm = all_text[:len(train_uniq)]  # (U_train, H)
    dev_text_llm = all_text[len(train_uniq):]  # (U_dev, H)
    text_dim = int(all_text.shape[1])

    # ---- model, optimizer, schedule
    common.seed_everything(tc.seed)
    model = VLPModel(cfg.encoder, cfg.vlp, text_dim, llm_path=str(Path(cfg.llm.path).resolve()),
                     llm_dtype=cfg.llm.dtype)
    model.clip_cfg = cfg.data.clip
    optimizer = common.build_optimizer(common.make_param_groups(model, cfg.optim), cfg.optim)
    # the samplers fill the last global batch with already-used samples: ceil(N / B) batches
    steps_per_epoch = math.ceil(n / global_batch)
    total = tc.max_steps if tc.max_steps is not None else tc.epochs * steps_per_epoch
    scheduler = common.build_scheduler(optimizer, cfg.optim, total)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    use_ds = common.uses_deepspeed(accelerator)
    loss_fn = SelectiveInfoNCE(rank=rank, world_size=world)
    logger = common.MetricsLogger(run_dir, accelerator)

    state = common.TrainerState()
    best = {"key": None, "r1": None, "step": None}
    if resume:
        ckpt = common.latest_checkpoint(run_dir)
        if ckpt is not None:
            state = common.load_checkpoint(accelerator, ckpt)
            logger.truncate_after(state.step)
            extra = ckpt / "stage1_state.json"
            if extra.is_file():
                best = json.loads(extra.read_text())
            dist_utils.print0(f"stage 1: resumed from {ckpt} (step {state.step}, epoch {state.epoch})")

    # ---- samplers
    n_ref = sel.ref_epochs if sel.selection == "ps" else min(sel.ref_epochs, tc.epochs)
    text_fn = None
    if sel.selection in ("ps", "random_fn"):
        text_fn = sel_mod.text_false_negatives(train_texts, sel)
    random_sampler = sel_mod.RandomGlobalBatchSampler(n, global_batch, rank=rank, world_size=world, seed=tc.seed)
    ps_sampler, ps_fn, selection_s = None, None, 0.0

    def build_ps():
        nonlocal ps_sampler, ps_fn, selection_s
        t0 = time.perf_counter()
        traj_path = run_dir / REFERENCE_DIR / TRAJ_FILE
        from slt_llm.contrastive.trajectories import Trajectories

        if traj_path.is_file():
            traj = Trajectories.load(traj_path)
        else:
            refs = reference_dirs(run_dir)
            traj = compute_trajectories(refs, ds, text_idx, text_llm, sel, batch_size=tc.batch_size,
                                        num_workers=cfg.data.num_workers, device=device, rank=rank,
                                        world_size=world)
            if accelerator.is_main_process:
                traj.save(traj_path)
            accelerator.wait_for_everyone()
        selector = sel_mod.PairSelector(traj, train_texts, sel, text_fn=text_fn)
        ps_fn = selector.false_negatives
        ps_sampler = sel_mod.PairSelectionBatchSampler(selector, global_batch, rank=rank, world_size=world,
                                                       seed=tc.seed, num_epochs=tc.epochs - n_ref)
        selection_s = time.perf_counter() - t0
        dist_utils.print0(f"stage 1: pair selection ready in {selection_s:.1f}s "
                          f"(K={len(reference_dirs(run_dir))} reference checkpoints)")

    # ---- evaluation / export helpers
    dev_ds = SLTDataset(dev_samples, cfg.data.clip, on_error="skip", **dkw) if dev_samples else None

    def export(dest: Path):
        with common.unwrap_for_save(accelerator, model) as m:
            if accelerator.is_main_process:
                tmp = dest.with_name(dest.name + ".tmp")
                m.save_pretrained(tmp, clip_cfg=cfg.data.clip)
                if dest.exists():
                    import shutil

                    shutil.rmtree(dest)
                os.replace(tmp, dest)
        accelerator.wait_for_everyone()

    def evaluate() -> Optional[dict]:
        if dev_ds is None:
            return None
        m = accelerator.unwrap_model(model)
        # every rank embeds the whole (small) dev set: same forward count on all ranks (ZeRO-3 safe)
        batches = [list(range(s, min(s + tc.batch_size, len(dev_ds)))) for s in range(0, len(dev_ds), tc.batch_size)]
        v, index = m.embed_videos(_loader(dev_ds, batches, cfg.data.num_workers), device=device)
        if v.shape[0] == 0:
            return None
        dev_texts = [dev_samples[i].text for i in index.tolist()]
        uniq, vt = unique_sentences(dev_texts)
        rows = torch.tensor([dev_uniq.index(t) for t in uniq])
        t = m.embed_texts(dev_text_llm[rows].to(device))
        return retrieval_metrics(v, t, vt)

    # ---- the loop
    model.train()
    bar = common.progress_bar(total, initial=state.step, enabled=tc.progress, desc="stage 1")
    thr = common.Throughput()
    last_loss = float("nan")
    epoch = state.epoch
    while state.step < total:
        phase = "reference" if (sel.selection == "ps" and epoch < n_ref) else sel.selection
        if sel.selection == "ps" and epoch >= n_ref:
            if ps_sampler is None:
                build_ps()
            sampler, fn = ps_sampler, ps_fn
            sampler.set_epoch(epoch - n_ref)
        else:
            sampler, fn = random_sampler, (text_fn if sel.selection == "random_fn" else None)
            sampler.set_epoch(epoch)
        batches = list(sampler)
        skip = state.batch_in_epoch
        loader = _loader(ds, batches[skip:], cfg.data.num_workers)
        last_eval = None
        for bi, batch in enumerate(loader, start=skip):
            if batch.get("skipped"):
                raise InputError(batch["skipped"][0][0], f"sample became unreadable during training "
                                                        f"({batch['skipped'][0][1]})")
            batch = common.to_device(batch, device)
            t_emb = text_llm[text_idx[batch["index"].cpu()]].to(device)  # (b, H)
            v, t, scale = model(batch, t_emb)  # (b,E), (b,E), ()
            loss = loss_fn(v, t, scale, index=batch["index"], false_negatives=fn)
            accelerator.backward(loss)
            if not use_ds and cfg.optim.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.batch_in_epoch = bi + 1
            thr.add(global_batch)
            bar.update(1)
            glob_loss = float(dist_utils.all_reduce_sum(loss.detach().float().reshape(1)).item()) / world
            last_loss = glob_loss
            if state.step % tc.log_every == 0 or state.step == 1 or state.step == total:
                lrs = scheduler.get_last_lr()
                logger.log(state.step, loss=glob_loss, lr=float(lrs[0]), lr_head=float(lrs[-1]),
                           samples_per_s=thr.rate(), temperature=accelerator.unwrap_model(model).temperature,
                           epoch=epoch, phase=phase)
                bar.set_postfix(loss=f"{glob_loss:.3f}")
            if tc.eval_every and state.step % tc.eval_every == 0:
                _maybe_best(evaluate(), state.step, best, export, run_dir, logger)
                last_eval = state.step
            if tc.save_every and state.step % tc.save_every == 0:
                _save(accelerator, run_dir, state, best, tc.keep_checkpoints)
            if state.step >= total:
                break
        if state.batch_in_epoch >= len(batches):  # epoch completed
            done = epoch + 1
            if done <= n_ref and done % sel.ref_interval == 0:  # reference checkpoint (every arm)
                export(run_dir / REFERENCE_DIR / f"ref_{done // sel.ref_interval - 1:02d}")
            epoch += 1
            state.epoch, state.batch_in_epoch = epoch, 0
        if last_eval != state.step:  # dev evaluation at every epoch end (and at the last step)
            _maybe_best(evaluate(), state.step, best, export, run_dir, logger)
    bar.close()
    if dev_ds is None:
        export(run_dir / "model")
    if tc.save_every:
        _save(accelerator, run_dir, state, best, tc.keep_checkpoints)
    result = {"best_dev_r1": best["r1"], "best_step": best["step"], "steps": state.step,
              "model_dir": str(run_dir / "model"), "selection_s": round(selection_s, 3), "skipped": len(bad),
              "final_loss": last_loss, "run_dir": str(run_dir), "selection": sel.selection}
    if accelerator.is_main_process:
        (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    accelerator.wait_for_everyone()
    return result


def _maybe_best(metrics: Optional[dict], step: int, best: dict, export, run_dir: Path, logger) -> None:
    if metrics is None:
        return
    v2t, t2v = metrics["v2t"], metrics["t2v"]
    logger.log(step, dev_v2t_r1=v2t["r1"], dev_v2t_r5=v2t["r5"], dev_v2t_r10=v2t["r10"], dev_t2v_r1=t2v["r1"])
    key = [v2t["r1"], v2t["r5"], v2t["r10"]]
    if best["key"] is None or key > best["key"]:
        best.update(key=key, r1=v2t["r1"], step=step)
        export(run_dir / "model")


def _save(accelerator, run_dir: Path, state, best: dict, keep: int) -> None:
    from slt_llm.training import common

    out = common.save_checkpoint(accelerator, run_dir, state, keep)
    if accelerator.is_main_process:
        (out / "stage1_state.json").write_text(json.dumps(best))
    accelerator.wait_for_everyone()


# --------------------------------------------------------------------------- CLI
def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slt-llm vlp", description="stage 1: selective contrastive alignment")
    p.add_argument("--config", default=None, help="YAML/JSON Stage1Config")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in train.run_dir")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=4")
    a = p.parse_args(argv)
    cfg = load_config(Stage1Config, a.config, a.overrides)
    res = train_vlp(cfg, resume=a.resume)
    dist_utils.print0(json.dumps(res))
    return 0
