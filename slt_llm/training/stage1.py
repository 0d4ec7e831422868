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
- ``ps`` (default), pair selection, under ``selection.protocol``:

  ``separate`` (default, the paper's protocol): a REFERENCE RUN, i.e. the
  ``random`` arm for ``selection.ref_epochs`` epochs, checkpointed every
  ``ref_interval`` epochs, is trained first into ``RUN_DIR/reference_run/`` (or
  ``selection.reference_run`` names an existing stage-1 run whose checkpoints
  are used), then a FRESH model (same seed, same init) is trained for
  ``train.epochs`` with pair selection from its first epoch, alpha running over
  all its epochs. The reference run's cost is reported separately
  (``reference_s``). ``continuation`` (cheap): steps 1-4 below in one run.

  1. Reference phase (continuation): the ``random`` arm, exactly (same seed, same batches, same
     schedule, no mask) for ``selection.ref_epochs`` epochs; at the end of every
     ``ref_interval``-th epoch the model (encoder + heads) is saved as a reference
     checkpoint ``RUN_DIR/reference/ref_KK/`` (a stage-1 model folder); K =
     ref_epochs // ref_interval must be >= 2. (The ``random`` arms save the same
     checkpoints, so ``slt-llm analyze`` works on a baseline run too, and a
     random run can serve as another run's ``selection.reference_run``.)
  2. Trajectories: every training video is embedded at each reference checkpoint
     (sharded over ranks), texts go through that checkpoint's text head (the LLM
     embeddings are cached once), then ``contrastive.trajectories`` keeps each
     anchor's top-M candidate negatives and their K similarities (O(N*M*K)
     memory, never N x N). Saved as ``RUN_DIR/reference/trajectories.npz``.
     The file records a hash of the training sample ids; one computed on other
     samples is refused.
  3. Scores, groups and false negatives (``contrastive.selection``): the text
     duplicates (``selection.text_fn``), the trajectory rule relative to the
     positive (``selection.traj_fn_eps``), high-to-high trajectory pairs, and an
     optional oracle (``selection.fn_file``) form the mask used in the loss
     from then on.
  4. The remaining ``train.epochs - ref_epochs`` epochs (continuation; all
     ``train.epochs`` with ``separate``) use greedy PS global batches under the
     curriculum (alpha(e') for e' = epoch - ref_epochs). The arms therefore take
     the SAME number of target-model optimizer steps; the extra cost of PS is
     the K embedding passes + selection, logged as ``selection_s`` (plus the
     reference run, ``reference_s``, with ``separate``).

``random_fn`` masks the text false negatives, or the groups of ``selection.fn_file``
when it is set (the oracle arm of the ablation).

Similarity (``vlp.similarity``): ``pooled`` (default, cosine of the pooled
embeddings) or ``fine`` (CiCo-style token similarity between the encoder's
temporal tokens and the frozen LLM's token states, ``TokenTextEmbedder``): the
loss, the trajectories and the dev retrieval then all use it
(docs/pair_selection.md, section 1, for its memory cost).

Data parallelism: a batch sampler yields each rank's slice of the global batch
(``batch_size`` per process); the DataLoader is never passed to
``accelerator.prepare`` (only model, optimizer and scheduler are), batches are
moved to the device here, and the loss all-gathers features so negatives are the
global batch. ``train.grad_accum`` must be 1 (accumulating would shrink the set
of negatives, not emulate a larger batch). Unreadable samples are found by one
sharded pre-scan before training (with ``data.cache_dir`` set it also fills the
clip cache, so it costs no extra decoding later) and removed, so every rank's
slice has the same size.

Logging and checkpoints follow stage 2 (``training.metrics_log``, ``training.checkpoint``): ``RUN_DIR/metrics.jsonl``
(``step``, ``loss``, ``lr``, ``samples_per_s``, ``temperature``, ``epoch``,
``phase``; dev lines add ``dev_v2t_r1``/``dev_v2t_r5``/``dev_v2t_r10``/``dev_t2v_r1``, ``dev_n`` and
``dev_unreadable``: unreadable dev clips count as failed queries, as stage 2 scores them
as empty hypotheses), checkpoints
under ``RUN_DIR/checkpoints/step_N/``, ``--resume`` from the last one with the same
data order (PS state is rebuilt from the saved trajectories). The best model on
DEV video-to-text R@1 (ties broken by R@5, R@10; never test; recorded in the
trainer state as ``best_metric``/``best_key``/``best_step``) is exported to
``RUN_DIR/model/``; without a dev manifest the final model is exported.

The objective (``contrastive.objective.Stage1Objective``, built once in ``build_model``) is a
sum of independent terms, any combination valid: the contrastive alignment (pooled or fine
similarity), the joint translation loss (``vlp.translation_weight``), and BeyondGloss's hand
auxiliaries (``data.descriptions`` -> ``vlp.desc_weight`` (0.5) x L_desc, ``data.hand_teacher``
-> ``vlp.hand_weight`` (0.3) x L_hand; ``contrastive.hand_aux``, docs/hand_descriptions.md).
The step runs the model once and calls the objective; with more than one term, log lines add
each term's global mean (``loss_align``, ``loss_translation``, ``loss_desc``, ``loss_hand``;
``loss`` stays the total).

The run is a :class:`Stage1Trainer`: ``setup`` (run folder, data, text side,
model, resume, samplers), then per epoch ``sampler_for_epoch`` (building pair
selection with ``build_pair_selection`` when the reference phase ends),
``train_epoch`` and ``end_epoch`` (reference checkpoint, dev evaluation,
best-model export), and ``finish``. Its parts live beside this module: the config checks and
the reference run's config in ``training.stage1_config``, the samplers and pair selection in
``training.stage1_selection``, the sentence / description embeddings and hand-teacher targets
in ``training.stage1_targets``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import torch

from slt_llm import distributed as dist_utils
from slt_llm import faults
from slt_llm import run_layout as layout
from slt_llm.config import Stage1Config, save_config
from slt_llm.data.dataset import batch_to_device
from slt_llm.errors import ConfigError, InputError
from slt_llm.models.model_card import training_facts
from slt_llm.training import accelerator as accel
from slt_llm.training import checkpoint, metrics_log, optim, run_folder
from slt_llm.training.divergence import stop_if_not_finite
from slt_llm.training.stage1_config import (ARMS, PROTOCOLS, num_reference_checkpoints, reference_run_config,  # noqa: F401
                                            uses_separate_reference, validate_config)
from slt_llm.training.stage1_selection import PairSelection
from slt_llm.training.stage1_targets import AlignmentTargets

__all__ = ["train_vlp", "Stage1Trainer", "validate_config", "build_stage1_model", "reference_source",
           "reference_run_config", "uses_separate_reference", "num_reference_checkpoints", "joint_param_group",
           "ARMS", "PROTOCOLS"]


# ----------------------------------------------------------------------- training
def train_vlp(cfg: Stage1Config, resume: bool = False, overwrite: bool = False, trainer_cls=None,
              stop_at_step: Optional[int] = None) -> dict:
    """Run stage 1 (see the module docstring). ``resume``: continue the run in
    ``train.run_dir``; ``overwrite``: replace the run there (a fresh run into a
    folder holding another run is refused otherwise); ``trainer_cls``: a ``Stage1Trainer``
    subclass (an experiment's own end-of-run measurements); ``stop_at_step``: leave after
    that many optimizer steps of this run (not of its reference run) as if interrupted, with
    a checkpoint and no ``result.json`` (continue with ``resume``). Returns ``{"best_dev_r1", "best_step", "steps",
    "model_dir", "selection_s", "skipped", "final_loss", "run_dir", "selection"}``."""
    validate_config(cfg)
    from slt_llm.models.llm import resolve_llm_path

    resolve_llm_path(cfg.llm.path)  # a folder, or a hub id in the cache / downloadable: checked before any work
    # a run that would be refused its folder is refused now, before the reference run or any cache
    run_folder.check_claim(cfg.train.run_dir, "stage1", resume=resume, overwrite=overwrite)
    source, reference_s = reference_source(cfg, resume)
    accelerator = accel.setup_accelerator(cfg.train, cfg.optim, log_tensorboard=False)
    try:
        return (trainer_cls or Stage1Trainer)(cfg, accelerator, resume=resume, overwrite=overwrite,
                                              reference_source=source, reference_s=reference_s,
                                              stop_at_step=stop_at_step).run()
    finally:  # also on errors: another run may follow in this process (tests, the ablation)
        accel.teardown(accelerator)


# ------------------------------------------------- joint translation loss (vlp.translation_weight)
def build_stage1_model(cfg: Stage1Config, text_dim: int, *, desc_head: bool = False):
    """The stage-1 model: a ``VLPModel``, or with ``vlp.translation_weight > 0`` a
    ``TranslatingVLPModel`` (a translation head, projector + LoRA LLM, sharing its encoder);
    ``desc_head`` when descriptions are aligned."""
    from slt_llm.models.vlp import TranslatingVLPModel, VLPModel

    local = Path(cfg.llm.path)
    # recorded in the model folder: an absolute folder, or the hub id as given (so it travels)
    kw = dict(llm_path=str(local.resolve()) if local.is_dir() else str(cfg.llm.path), llm_dtype=cfg.llm.dtype,
              desc_head=desc_head)
    if cfg.vlp.translation_weight > 0:
        return TranslatingVLPModel(cfg.encoder, cfg.vlp, text_dim, llm_cfg=cfg.llm, projector_cfg=cfg.projector, **kw)
    return VLPModel(cfg.encoder, cfg.vlp, text_dim, **kw)


def joint_param_group(name: str) -> str:
    """Learning-rate groups of the joint model: its projector and LoRA weights have their own."""
    if name.startswith("translation.projector."):
        return "projector"
    return optim.default_param_group(name)


# ------------------------------------------------------- the reference protocol
def reference_source(cfg: Stage1Config, resume: bool = False) -> tuple[Optional[Path], float]:
    """``(run folder whose reference/ref_KK checkpoints pair selection uses, seconds spent
    training the reference run here)``. Protocol ``separate``: ``selection.reference_run`` if
    given, else the reference run is trained now (reused when ``resume`` finds it complete);
    ``continuation``: this run itself; other arms: None."""
    if cfg.selection.selection != "ps":
        return None, 0.0
    if not uses_separate_reference(cfg):
        return Path(cfg.train.run_dir), 0.0
    if cfg.selection.reference_run:
        return Path(cfg.selection.reference_run), 0.0
    ref_cfg = reference_run_config(cfg)
    ref_dir = Path(ref_cfg.train.run_dir)
    k = num_reference_checkpoints(cfg)
    if resume and layout.result_path(ref_dir).is_file() and len(layout.reference_dirs(ref_dir)) >= k:
        dist_utils.print0(f"stage 1: reusing the reference run {ref_dir}")
        return ref_dir, 0.0
    dist_utils.print0(f"stage 1: training the reference run ({cfg.selection.ref_epochs} epochs of random "
                      f"batches, K={k} checkpoints) -> {ref_dir}")
    t0 = time.perf_counter()
    train_vlp(ref_cfg, resume=resume and layout.checkpoints_root(ref_dir).is_dir())
    return ref_dir, time.perf_counter() - t0


class Stage1Trainer(AlignmentTargets, PairSelection):
    """One stage-1 run on a prepared ``Accelerator``: ``run()`` = ``setup()``, then
    per epoch ``sampler_for_epoch`` -> ``train_epoch`` -> ``end_epoch``, then ``finish()``.
    The samplers and pair selection (``build_samplers``, ``sampler_for_epoch``,
    ``build_pair_selection``, ...) are :class:`~slt_llm.training.stage1_selection.PairSelection`'s,
    what the videos are aligned to (``embed_texts``, ``setup_hand_aux``)
    :class:`~slt_llm.training.stage1_targets.AlignmentTargets`'."""

    def __init__(self, cfg: Stage1Config, accelerator, *, resume: bool = False, overwrite: bool = False,
                 reference_source: Optional[Path] = None, reference_s: float = 0.0, stop_at_step: Optional[int] = None):
        self.cfg, self.accelerator, self.resume, self.overwrite = cfg, accelerator, resume, overwrite
        self.stop_at_step = stop_at_step
        self.reference_source = Path(reference_source) if reference_source else Path(cfg.train.run_dir)
        self.reference_s = float(reference_s)
        self.tc, self.sel = cfg.train, cfg.selection
        self.run_dir = Path(self.tc.run_dir)
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.device = accelerator.device
        self.ps_sampler, self.ps_fn, self.selection_s = None, None, 0.0
        self.last_loss = float("nan")
        self.loss_parts: dict = {}  # the last step's per-term losses (local, detached)
        self.told_dev_unreadable = False

    # ------------------------------------------------------------------ setup
    def run(self) -> dict:
        self.setup()
        while self.running():
            sampler, fn, phase = self.sampler_for_epoch(self.state.epoch)
            evaluated = self.train_epoch(sampler, fn, phase)
            self.end_epoch(len(sampler), evaluated)
        return self.finish()

    def running(self) -> bool:
        """Steps left, and ``stop_at_step`` (if any) not reached."""
        step = self.state.step
        return step < self.total and (self.stop_at_step is None or step < self.stop_at_step)

    def interrupted(self) -> bool:
        return self.stop_at_step is not None and self.stop_at_step <= self.state.step < self.total

    def setup(self) -> None:
        self.prepare_run_dir()
        checkpoint.seed_everything(self.tc.seed)
        self.load_data()
        self.embed_texts()
        self.setup_hand_aux()
        self.build_model()
        self.logger = metrics_log.MetricsLogger(self.run_dir, self.accelerator)
        self.state = checkpoint.TrainerState(run_id=self.run_id)
        if self.resume:
            self.state = checkpoint.resume_state(self.accelerator, self.run_dir, self.logger, what="stage 1",
                                                 run_id=self.run_id)
        self.build_samplers()
        self.model.train()
        self.bar = metrics_log.progress_bar(self.total, initial=self.state.step, enabled=self.tc.progress,
                                            desc="stage 1")
        self.throughput = metrics_log.Throughput()

    def prepare_run_dir(self) -> None:
        """Claim the run folder (``run_folder.claim_run_dir``: a fresh run into another run's
        folder is refused unless --overwrite, which removes that run's reference checkpoints,
        trajectories, metrics, checkpoints and model first; a crash mid-export is repaired),
        then rank 0 writes the config."""
        self.run_id = run_folder.claim_run_dir(self.accelerator, self.run_dir, self.cfg, stage="stage1",
                                               resume=self.resume, overwrite=self.overwrite)
        if self.accelerator.is_main_process:
            save_config(self.cfg, layout.config_path(self.run_dir))
        self.accelerator.wait_for_everyone()

    def load_data(self) -> None:
        """Training set without its unreadable samples (one sharded pre-scan), dev set."""
        from slt_llm.data.dataset import SLTDataset, readable_training_set
        from slt_llm.data.manifest import read_manifest

        dc = self.cfg.data
        self.ds, samples, self.bad = readable_training_set(dc, self.rank, self.world)
        if self.bad:
            ids = self.ds.left_out
            more = f" and {len(ids) - 2} more" if len(ids) > 2 else ""
            dist_utils.print0(f"stage 1: skipped {len(ids)} unreadable training sample{'s' * (len(ids) > 1)}: "
                              f"{', '.join(repr(x) for x in ids[:2])}{more} (named above)")
        self.train_texts = [s.text for s in samples]
        self.train_samples = samples
        self.train_ids = [s.id for s in samples]
        if self.accelerator.is_main_process:  # what dataset index i means, for `slt-llm analyze`
            layout.texts_path(self.run_dir).write_text(json.dumps(self.train_texts, ensure_ascii=False))
        self.n = len(self.ds)
        self.global_batch = self.tc.batch_size * self.world
        if self.global_batch > self.n:
            raise ConfigError(f"global batch {self.global_batch} (train.batch_size={self.tc.batch_size} x "
                              f"{self.world} processes) is larger than the training set ({self.n} readable samples)")
        self.dev_samples = read_manifest(dc.dev_manifest, allow_outside_root=dc.allow_outside_root) if dc.dev_manifest else []
        self.dev_ds = SLTDataset(self.dev_samples, dc.clip, on_error="skip", pose_dir=dc.pose_dir,
                                 cache_dir=dc.cache_dir) if self.dev_samples else None

    def build_model(self) -> None:
        """The stage-1 model, optimizer, schedule, the objective; model/optimizer/scheduler prepared."""
        from slt_llm.contrastive.objective import Stage1Objective
        from slt_llm.models.encoder import check_data_parallel

        cfg, tc = self.cfg, self.tc
        check_data_parallel(cfg.encoder, self.world)
        checkpoint.seed_everything(tc.seed)
        model = build_stage1_model(cfg, self.text_dim, desc_head=self.desc_weight > 0)
        model.clip_cfg = cfg.data.clip
        optimizer = optim.build_optimizer(optim.make_param_groups(model, cfg.optim, joint_param_group), cfg.optim)
        # the samplers fill the last global batch with already-used samples: ceil(N / B) batches
        steps_per_epoch = math.ceil(self.n / self.global_batch)
        self.total = tc.max_steps if tc.max_steps is not None else tc.epochs * steps_per_epoch
        scheduler = optim.build_scheduler(optimizer, cfg.optim, self.total)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.objective = Stage1Objective.from_config(cfg.vlp, desc_weight=self.desc_weight, hand_weight=self.hand_weight,
                                                     desc_targets=self.desc_targets, rank=self.rank,
                                                     world_size=self.world)
        dist_utils.print0(f"stage 1: loss = {self.objective.describe()}")

    def loss_log_values(self) -> dict:
        """Global means of the last step's per-term losses when the objective has more than one
        term (one all-reduce; every rank calls it), else nothing."""
        names = list(self.loss_parts)
        if len(names) < 2:
            return {}
        local = torch.stack([self.loss_parts[k].float().reshape(()) for k in names])
        total = dist_utils.all_reduce_sum(local) / self.world
        return {k: float(x) for k, x in zip(names, total.tolist())}

    # --------------------------------------------------------------- training
    def train_epoch(self, batches: list, fn, phase: str) -> Optional[int]:
        """Optimizer steps over this epoch's batches from ``state.batch_in_epoch`` on, with
        logging, evaluation and checkpoints on their schedules. Returns the step of the last
        evaluation in this epoch (None if none)."""
        from slt_llm.contrastive.reference import clip_loader

        tc, state = self.tc, self.state
        skip = state.batch_in_epoch
        last_eval = None
        loader = clip_loader(self.ds, batches[skip:], self.cfg.data.num_workers, seed=(tc.seed, state.epoch), first=skip)
        for bi, batch in enumerate(loader, start=skip):
            loss = self.train_step(batch, fn)
            state.step += 1
            state.batch_in_epoch = bi + 1
            faults.point("step")
            self.throughput.add(self.global_batch)
            self.bar.update(1)
            self.last_loss = float(dist_utils.all_reduce_sum(loss.detach().float().reshape(1)).item()) / self.world
            if not math.isfinite(self.last_loss):  # the same on every rank: all stop together
                lrs = dict(zip([g.get("name", str(i)) for i, g in enumerate(self.optimizer.param_groups)],
                               self.scheduler.get_last_lr()))
                stop_if_not_finite("stage 1", state.step, {"loss": self.last_loss, **self.loss_log_values()}, lrs)
            if state.step % tc.log_every == 0 or state.step == 1 or state.step == self.total:
                lrs = self.scheduler.get_last_lr()
                self.logger.log(state.step, loss=self.last_loss, lr=float(lrs[0]), lr_head=float(lrs[-1]),
                                samples_per_s=self.throughput.rate(),
                                temperature=self.accelerator.unwrap_model(self.model).temperature,
                                epoch=state.epoch, phase=phase, **self.loss_log_values())
                self.bar.set_postfix(loss=f"{self.last_loss:.3f}")
            if tc.eval_every and state.step % tc.eval_every == 0:
                self.evaluate_and_export()
                last_eval = state.step
            if tc.save_every and state.step % tc.save_every == 0:
                self.save()
            if not self.running():
                break
        return last_eval

    def train_step(self, batch: dict, fn) -> torch.Tensor:
        """One contrastive optimizer step on this rank's slice of a global batch; the local loss."""
        checkpoint.seed_step(self.tc.seed, self.state.step)  # dropout of this step: from (seed, step) alone
        if batch.get("skipped"):
            raise InputError(batch["skipped"][0][0], f"sample became unreadable during training "
                                                    f"({batch['skipped'][0][1]})")
        batch = batch_to_device(batch, self.device)
        rows = self.text_idx[batch["index"].cpu()]
        if self.text_tok is not None:  # vlp.similarity=fine: token states (b, L, H) + mask, padded per batch
            t_tok, t_mask = self.text_tok.padded(rows)
            text = dict(text=t_tok.to(self.device), text_mask=t_mask.to(self.device))
        else:
            text = dict(text=self.text_llm[rows].to(self.device))  # (b, H)
        with accel.forward_context(self.accelerator):  # DeepSpeed half precision: autocast the fp32 inputs
            out = self.model(batch, **self.objective.model_kwargs(batch, **text))
        loss, self.loss_parts = self.objective(out, batch, fn)
        self.accelerator.backward(loss)
        if not accel.uses_deepspeed(self.accelerator) and self.cfg.optim.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def end_epoch(self, num_batches: int, last_eval: Optional[int]) -> None:
        """After an epoch's batches: a reference checkpoint at every ``ref_interval``-th epoch of
        the reference phase (every arm), the next epoch, and a dev evaluation at every epoch end
        (and at the last step) unless one just ran; none mid-epoch at ``stop_at_step`` (the
        uninterrupted run evaluates nothing there)."""
        state = self.state
        completed = state.batch_in_epoch >= num_batches
        if completed:
            done = state.epoch + 1
            if done <= self.n_ref and done % self.sel.ref_interval == 0:
                self.export(layout.reference_dir(self.run_dir, done // self.sel.ref_interval - 1))
            state.epoch, state.batch_in_epoch = done, 0
        if last_eval != state.step and (completed or state.step >= self.total):
            self.evaluate_and_export()

    # ------------------------------------------------------ evaluation, export
    def evaluate(self) -> Optional[dict]:
        """Dev retrieval metrics (``retrieval_metrics``) of the current model over ALL dev clips:
        an unreadable clip counts as a failed query (``retrieval.with_misses``; ``unreadable`` in
        the result, said once in the output), never silently dropped. None without dev, or
        when no dev clip is readable."""
        from slt_llm.contrastive.reference import clip_loader
        from slt_llm.contrastive.retrieval import embed_and_score, with_misses

        if self.dev_ds is None:
            return None
        m = self.accelerator.unwrap_model(self.model)
        bs, n = self.tc.batch_size, len(self.dev_ds)
        # every rank embeds the whole (small) dev set: same forward count on all ranks (ZeRO-3 safe)
        batches = [list(range(s, min(s + bs, n))) for s in range(0, n, bs)]
        use_fine = self.dev_text_tok is not None  # vlp.similarity=fine: fine retrieval too

        def sentence_states(uniq: list):  # the dev sentences' LLM states, embedded once at the start
            rows = torch.tensor([self.dev_uniq.index(t) for t in uniq])
            return self.dev_text_tok.select(rows) if use_fine else self.dev_text_llm[rows]

        with accel.forward_context(self.accelerator):
            loader = clip_loader(self.dev_ds, batches, self.cfg.data.num_workers)
            metrics = embed_and_score(m, loader, [s.text for s in self.dev_samples], sentence_states,
                                      fine=use_fine, device=self.device)
        unreadable = n - (metrics["num_videos"] if metrics is not None else 0)
        if unreadable and not self.told_dev_unreadable:
            dist_utils.print0(f"stage 1: {unreadable} of {n} dev clips unreadable; dev retrieval counts "
                              f"them as misses")
            self.told_dev_unreadable = True
        return None if metrics is None else with_misses(metrics, n, len(self.dev_uniq))

    def evaluate_and_export(self) -> None:
        """Evaluate on dev, log, and export ``RUN_DIR/model`` when video-to-text R@1 (ties: R@5,
        R@10) beats the best so far (``TrainerState.update_best``)."""
        metrics = self.evaluate()
        if metrics is None:
            return
        v2t, t2v = metrics["v2t"], metrics["t2v"]
        self.logger.log(self.state.step, dev_v2t_r1=v2t["r1"], dev_v2t_r5=v2t["r5"], dev_v2t_r10=v2t["r10"],
                        dev_t2v_r1=t2v["r1"], dev_n=len(self.dev_ds), dev_unreadable=metrics["unreadable"])
        if self.state.update_best([v2t["r1"], v2t["r5"], v2t["r10"]]):
            self.export(layout.model_dir(self.run_dir), dev={**{k: v2t[k] for k in ("r1", "r5", "r10")},
                                                             "n": len(self.dev_ds), "step": self.state.step})

    def export(self, dest: Path, dev: Optional[dict] = None) -> None:
        """Write a stage-1 model folder (encoder + heads + clip settings + model card); collective."""
        clip_cfg, card = self.cfg.data.clip, training_facts(self.cfg, stage=1, dev=dev)
        checkpoint.export_folder(self.accelerator, self.model, dest,
                                 lambda m, tmp: m.save_pretrained(tmp, clip_cfg=clip_cfg, card=card, final=dest))

    def save(self) -> None:
        checkpoint.save_checkpoint(self.accelerator, self.run_dir, self.state, self.tc.keep_checkpoints)

    def finish(self) -> dict:
        """Final export without dev, last checkpoint, ``result.json``; at ``stop_at_step`` only a
        checkpoint (``result.json`` marks a finished run: a reference run is reused by it)."""
        self.bar.close()
        interrupted = self.interrupted()
        if self.dev_ds is None and not interrupted:
            self.export(layout.model_dir(self.run_dir))
        if self.tc.save_every or (interrupted and self.state.step > 0):
            self.save()
        state = self.state
        result = {"best_dev_r1": state.best_metric, "best_step": state.best_step, "steps": state.step,
                  "model_dir": str(layout.model_dir(self.run_dir)), "selection_s": round(self.selection_s, 3),
                  "skipped": len(self.bad), "final_loss": self.last_loss, "run_dir": str(self.run_dir),
                  "selection": self.sel.selection, "protocol": self.sel.protocol if self.sel.selection == "ps" else None,
                  "reference_run": str(self.reference_source) if self.sel.selection == "ps" else None,
                  "reference_s": round(self.reference_s, 3)}
        if self.accelerator.is_main_process and not interrupted:
            layout.result_path(self.run_dir).write_text(json.dumps(result, indent=1))
        self.accelerator.wait_for_everyone()
        return result
