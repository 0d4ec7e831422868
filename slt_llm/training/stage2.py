"""Stage 2: translation training (encoder -> projector -> LLM with LoRA/QLoRA).

``slt-llm train --config FILE [--resume] [key.sub=value ...]`` in one process;
``scripts/train_slt.py`` is the same entry under ``accelerate launch``
(DeepSpeed ZeRO-2/3 from ``ds_configs/``) or alone.

Per optimizer step (``training.data_order``, ``training.token_loss``): every rank takes its slice of
``train.grad_accum`` global batches of ``batch_size * world_size`` clips (the
epoch order depends only on ``seed + epoch``), the summed token loss is
normalised by the step's target-token count over all ranks and micro-steps,
and Accelerate/DeepSpeed step the optimizer. Bad samples are skipped,
named in the step's log line and counted (``skipped``, ``skipped_ids`` in metrics.jsonl); a micro-batch whose samples are all bad
is replaced by a zero-weight one so collectives stay in step.

Every ``eval_every`` steps (and at the end): greedy decoding on the dev set
(sharded over ranks, equal counts per rank so ZeRO-3 collectives line up,
gathered), BLEU-4 on rank 0 (``slt_llm.metrics.compute_metrics``: sacrebleu);
a better dev BLEU exports the model to ``RUN_DIR/model/`` with
``SLTModel.save_pretrained`` (ZeRO-3 parameters gathered first) and the dev
hypotheses to ``RUN_DIR/dev_predictions.jsonl``. Dev, never test, selects.
Without a dev manifest the final model is exported.

Outputs under ``RUN_DIR``: ``config.yaml``, ``metrics.jsonl``,
``checkpoints/step_N/`` (Accelerate state, ZeRO shards under DeepSpeed, +
``trainer_state.json``), ``model/``.

The run is a :class:`Stage2Trainer`: ``setup`` (run folder, data, model,
resume), then per epoch ``epoch_batches``, ``train_epoch`` (per optimizer step
``train_step``, ``log_step`` with the dev evaluation ``evaluate_and_export``
when due, ``save_step``) and ``end_epoch``, and ``finish``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from slt_llm import distributed as dist_utils
from slt_llm import faults
from slt_llm import run_layout as layout
from slt_llm.config import SLTConfig, save_config
from slt_llm.data.dataset import SLTDataset, batch_to_device, collate_clips
from slt_llm.errors import ConfigError
from slt_llm.metrics import compute_metrics
from slt_llm.models.model_card import training_facts
from slt_llm.training import accelerator as accel, checkpoint, data_order, metrics_log, optim, run_folder, token_loss
from slt_llm.training.divergence import stop_if_not_finite


def _bleu4(hyps: list[str], refs: list[str], tokenize: str = "13a") -> tuple[float, str]:
    """Corpus BLEU-4 (sacrebleu with ``tokenize``: ``eval.tokenize``) and its signature."""
    m = compute_metrics(hyps, refs, tokenize)
    return float(m["bleu4"]), str(m["signature"]["bleu"])


class _Batches:
    """Loads this rank's slice of global batches as collated micro-batches.

    Keeps a fallback batch (the first readable sample) to stand in, with zero
    weight, for a micro-batch whose samples were all unreadable.
    """

    def __init__(self, dataset, collate, num_workers: int):
        self.dataset, self.collate, self.num_workers = dataset, collate, num_workers
        self._fallback = None

    def loader(self, index_lists: list[list[int]], *, seed: tuple = (0,), first: int = 0):
        """Batches ``first``, ``first + 1``, ... of an epoch (``data.loader.batch_loader``: what
        loading draws depends on ``seed`` + the batch alone; the global generators are untouched)."""
        from slt_llm.data.loader import batch_loader

        return batch_loader(self.dataset, index_lists, self.collate, self.num_workers, seed=seed, first=first)

    def fallback(self) -> dict:
        if self._fallback is None:
            from slt_llm.data.loader import batch_loader

            for i in range(len(self.dataset)):  # loaded as batch_loader loads (the global generators untouched)
                b = next(iter(batch_loader(self.dataset, [[i]], self.collate, seed=(0xFA11,))))
                if len(b.get("texts", [])) > 0:
                    self._fallback = b
                    break
            else:
                raise ConfigError("no readable sample in the dataset (every sample failed to load)")
        return self._fallback


def _num_valid(batch: dict) -> int:
    return len(batch.get("texts", []))


def _forward(model, batch: dict) -> dict:
    out = model(batch)
    if batch.get("_zero_weight"):
        return {"loss_sum": out["loss_sum"] * 0.0, "num_tokens": 0}
    return {"loss_sum": out["loss_sum"], "num_tokens": int(out["num_tokens"])}


def _count_target_tokens(model, batch: dict) -> int:
    """Target tokens of a micro-batch counted from its texts (text + eos), before the forward."""
    if batch.get("_zero_weight"):
        return 0
    return sum(len(x) for x in model._target_ids(batch["texts"]))


def evaluate_dev(accelerator, model, dev_ds, collate, cfg: SLTConfig) -> Optional[dict]:
    """Greedy decoding on the dev set, sharded over ranks; BLEU-4 on every rank's return.

    Returns ``{"bleu4", "signature", "n", "unreadable", "predictions":
    [{"id","hyp","ref"}]}`` (predictions complete on rank 0 only) or None
    without a dev set. A dev clip that cannot be read counts as an EMPTY
    hypothesis (its prediction has ``"unreadable": message``): the score is
    over all ``n`` dev clips, never silently over the readable ones. Every rank
    runs the same number of ``generate`` calls (padded shards; under ZeRO-3
    HF generate is told ``synced_gpus`` so ranks that finish early keep
    joining the parameter all-gathers). Cost: ceil(n / (W * batch)) batched
    greedy decodes of up to ``train.max_new_tokens`` tokens.
    """
    if dev_ds is None:
        return None
    tc = cfg.train
    n = len(dev_ds) if tc.dev_limit is None else min(len(dev_ds), tc.dev_limit)
    rank, world = accelerator.process_index, accelerator.num_processes
    idx, valid = data_order.shard_evenly(n, rank, world)
    unwrapped = accelerator.unwrap_model(model)
    gen_kw = {}
    if accel.zero_stage(accelerator) == 3 and world > 1:
        gen_kw["synced_gpus"] = True
    loader = _Batches(dev_ds, collate, 0)
    local = []
    bs = tc.batch_size
    was_training = model.training
    model.eval()
    for s in range(0, len(idx), bs):
        chunk, ok = idx[s:s + bs], valid[s:s + bs]
        items = [dev_ds[i] for i in chunk]
        keep = [it for it, v in zip(items, ok) if v]
        local += [{"id": it["id"], "hyp": "", "ref": dev_ds.samples[it["index"]].text, "unreadable": it["error"]}
                  for it in keep if "error" in it]  # scored as empty hypotheses
        batch = collate(keep) if keep else None
        if batch is None or _num_valid(batch) == 0:
            batch, real = loader.fallback(), False
        else:
            real = True
        batch = batch_to_device(batch, accelerator.device)
        with torch.no_grad(), accel.forward_context(accelerator):
            hyps = unwrapped.generate(batch, num_beams=1, max_new_tokens=tc.max_new_tokens, **gen_kw)
        if real:
            local += [{"id": i, "hyp": h, "ref": r} for i, h, r in zip(batch["ids"], hyps, batch["texts"])]
    model.train(was_training)
    gathered = dist_utils.all_gather_object(local)
    result = None
    if accelerator.is_main_process:
        preds = [p for part in gathered for p in part]
        if preds:
            bleu, sig = _bleu4([p["hyp"] for p in preds], [p["ref"] for p in preds], cfg.eval.tokenize)
        else:
            bleu, sig = 0.0, "no dev sample"
        result = {"bleu4": bleu, "signature": sig, "n": len(preds),
                  "unreadable": sum(1 for p in preds if "unreadable" in p), "predictions": preds}
    keys = ("bleu4", "signature", "n", "unreadable")
    shared = dist_utils.all_gather_object(None if result is None else {k: result[k] for k in keys})[0]
    if result is None:
        result = dict(shared, predictions=[])
    return result


def export_model(accelerator, model, out_dir: Path, predictions: Optional[list] = None,
                 card: Optional[dict] = None) -> Path:
    """Write the HF-style model folder (atomic rename) from rank 0; collective.

    Under ZeRO-3 the encoder, projector and trainable LLM (LoRA) parameters
    are gathered first; the frozen base LLM is not saved (its path is recorded).
    ``card``: the model card's facts (``model_card.training_facts``), kept in meta.json.
    """
    unwrapped = accelerator.unwrap_model(model)
    params = list(unwrapped.encoder.parameters()) + list(unwrapped.projector.parameters()) + \
        [p for p in unwrapped.llm.parameters() if p.requires_grad]

    def write(full, tmp: Path) -> None:
        full.meta_extra.update(card or {})
        full.save_pretrained(tmp, final=out_dir)
        if predictions is not None:
            with (tmp / "dev_predictions.jsonl").open("w") as f:
                for p in predictions:
                    f.write(json.dumps(p, ensure_ascii=False) + "\n")

    checkpoint.export_folder(accelerator, model, out_dir, write, params)
    return out_dir


def train_slt(cfg: SLTConfig, *, resume: bool = False, stop_at_step: Optional[int] = None,
              overwrite: bool = False) -> dict:
    """Train stage 2 as configured; returns a summary dict.

    ``resume``: continue from the last complete checkpoint of ``train.run_dir``
    (same data order; metrics.jsonl lines after it are dropped).
    ``overwrite``: replace the run already in ``train.run_dir`` (a fresh run
    into another run's folder is refused otherwise; ``training.run_folder``).
    ``stop_at_step``: leave after that many optimizer steps as if interrupted
    (the schedule still spans the full run), e.g. to split a run over jobs.

    Returns ``{"best_dev_bleu", "best_step", "model_dir", "steps", "run_dir",
    "skipped", "final_loss", "world_size"}``.
    """
    if not cfg.data.train_manifest:
        raise ConfigError("data.train_manifest is not set")
    if not cfg.llm.path:
        raise ConfigError("llm.path is not set (a local AutoModelForCausalLM directory)")
    from slt_llm.metrics import TOKENIZERS

    if cfg.eval.tokenize not in TOKENIZERS:
        raise ConfigError(f"eval.tokenize must be one of {', '.join(TOKENIZERS)} (got {cfg.eval.tokenize!r})")
    if cfg.train.init_encoder:  # a stage-1 model aligned to another LLM is refused before any work
        from slt_llm.models.vlp import check_stage1_model

        check_stage1_model(cfg.train.init_encoder, cfg.llm.path, clip_cfg=cfg.data.clip)
    accelerator = accel.setup_accelerator(cfg.train, cfg.optim)  # checks the DeepSpeed JSON first
    try:
        return Stage2Trainer(cfg, accelerator, resume=resume, stop_at_step=stop_at_step, overwrite=overwrite).run()
    finally:
        accel.teardown(accelerator)


class Stage2Trainer:
    """One stage-2 run on a prepared ``Accelerator``: ``run()`` = ``setup()``, then per epoch
    ``epoch_batches`` -> ``train_epoch`` (``train_step``, ``log_step``, ``save_step`` per
    optimizer step) -> ``end_epoch``, then ``finish()``."""

    def __init__(self, cfg: SLTConfig, accelerator, *, resume: bool = False, stop_at_step: Optional[int] = None,
                 overwrite: bool = False):
        self.cfg, self.accelerator = cfg, accelerator
        self.resume, self.stop_at_step, self.overwrite = resume, stop_at_step, overwrite
        self.tc, self.dc = cfg.train, cfg.data
        self.run_dir = Path(self.tc.run_dir)
        self.model_dir = layout.model_dir(self.run_dir)
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.device = accelerator.device
        self.global_batch = self.tc.batch_size * self.world
        self.final_loss = None

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        self.setup()
        while self.running():
            batches = self.epoch_batches()
            self.train_epoch(batches)
            self.end_epoch(len(batches))
        return self.finish()

    def running(self) -> bool:
        """Steps left, and ``stop_at_step`` (if any) not reached."""
        step = self.state.step
        return step < self.total and (self.stop_at_step is None or step < self.stop_at_step)

    # ---------------------------------------------------------------- setup
    def setup(self) -> None:
        self.run_id = run_folder.claim_run_dir(self.accelerator, self.run_dir, self.cfg, stage="stage2",
                                               resume=self.resume, overwrite=self.overwrite)
        accel.start_tracking(self.accelerator)  # after the claim: its event file is this run's
        checkpoint.seed_everything(self.tc.seed)
        self.load_data()
        self.build_model()
        self.resume_or_start()
        self.announce()
        self.batches = _Batches(self.train_ds, collate_clips, self.dc.num_workers)
        self.bar = metrics_log.progress_bar(self.total, initial=self.state.step, enabled=self.tc.progress)
        self.meter = metrics_log.Throughput()
        self.window_losses: list[float] = []
        self.window_tokens = 0
        self.skipped_window: list = []  # (id, message) of the bad samples skipped since the last log line
        self.last_saved = self.state.step if self.resume and self.state.step > 0 else -1

    def load_data(self) -> None:
        """Training and dev datasets; the number of optimizer steps (refused below one per epoch)."""
        tc, dc = self.tc, self.dc

        def dataset(manifest):
            return SLTDataset(manifest, dc.clip, on_error=dc.on_error, pose_dir=dc.pose_dir, cache_dir=dc.cache_dir,
                              allow_outside_root=dc.allow_outside_root)

        self.train_ds = dataset(dc.train_manifest)
        self.dev_ds = dataset(dc.dev_manifest) if dc.dev_manifest else None
        n = len(self.train_ds)
        self.total = data_order.total_steps(n, tc, self.world)
        if data_order.steps_per_epoch(n, tc, self.world) == 0:
            raise ConfigError(f"{dc.train_manifest}: {n} samples, fewer than one optimizer step "
                              f"({tc.grad_accum} x global batch {self.global_batch} = batch_size {tc.batch_size} "
                              f"x {self.world} processes)")

    def build_model(self) -> None:
        """SLTModel on the training device (+ stage-1 encoder), optimizer, schedule; prepared."""
        from slt_llm.models.encoder import check_data_parallel
        from slt_llm.models.slt_model import SLTModel

        cfg = self.cfg
        check_data_parallel(cfg.encoder, self.world)
        model = SLTModel.build(cfg, device=self.device)  # the QLoRA base is quantised on this device
        model.clip_cfg = self.dc.clip  # recorded in clip.yaml: `slt-llm translate` samples clips as in training
        if self.tc.init_encoder:
            model.load_encoder_from(self.tc.init_encoder)
        groups = optim.make_param_groups(model, cfg.optim)
        optimizer = optim.build_optimizer(groups, cfg.optim)
        scheduler = optim.build_scheduler(optimizer, cfg.optim, self.total)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.unwrapped = self.accelerator.unwrap_model(self.model)

    def resume_or_start(self) -> None:
        """The trainer state (from the last checkpoint with ``resume``), metrics.jsonl, config.yaml."""
        self.metrics = metrics_log.MetricsLogger(self.run_dir, self.accelerator)
        self.state = checkpoint.resume_state(self.accelerator, self.run_dir, self.metrics, what="stage 2",
                                             run_id=self.run_id) if self.resume \
            else checkpoint.TrainerState(run_id=self.run_id)
        if self.accelerator.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, layout.config_path(self.run_dir))
        self.accelerator.wait_for_everyone()

    def announce(self) -> None:
        tc, params = self.tc, list(self.unwrapped.parameters())
        n_params = sum(getattr(p, "ds_numel", p.numel()) for p in params)  # ZeRO-3: full sizes
        n_train = sum(getattr(p, "ds_numel", p.numel()) for p in params if p.requires_grad)
        dist_utils.print0(f"stage 2: {len(self.train_ds)} train clips, world {self.world}, global batch "
                          f"{self.global_batch} x accum {tc.grad_accum}, {self.total} steps, "
                          f"ZeRO {accel.zero_stage(self.accelerator)}, precision {tc.mixed_precision}, "
                          f"trainable {n_train:,} / {n_params:,} parameters")

    # -------------------------------------------------------------- training
    def epoch_batches(self) -> list[list[int]]:
        """The global batches of the current epoch (order from ``seed + epoch`` only)."""
        return data_order.global_batches(len(self.train_ds), self.global_batch, self.tc.seed, self.state.epoch,
                                         multiple_of=self.tc.grad_accum)

    def train_epoch(self, batches: list[list[int]]) -> None:
        """Optimizer steps over this rank's slices of the epoch's batches from ``state.batch_in_epoch``
        on, each followed by logging/evaluation and checkpointing on their schedules."""
        state = self.state
        if state.batch_in_epoch >= len(batches):
            return
        mine = [data_order.rank_slice(b, self.rank, self.world) for b in batches[state.batch_in_epoch:]]
        it = iter(self.batches.loader(mine, seed=(self.tc.seed, state.epoch), first=state.batch_in_epoch))
        while state.batch_in_epoch < len(batches) and self.running():
            out, lrs = self.train_step(it)
            self.log_step(out, lrs)
            self.save_step()

    def next_micro_batches(self, it) -> list[dict]:
        """``train.grad_accum`` micro-batches on the device; skipped samples counted; an all-bad
        micro-batch replaced by the zero-weight fallback."""
        micro = []
        for _ in range(self.tc.grad_accum):
            b = next(it)
            self.skipped_window += list(b.get("skipped", []))
            if _num_valid(b) == 0:
                b = dict(self.batches.fallback(), _zero_weight=True)
            micro.append(batch_to_device(b, self.device))
        return micro

    def train_step(self, it) -> tuple[dict, dict]:
        """One optimizer step (``token_loss.token_loss_step``); returns its output and the learning
        rates it ran with (per parameter group)."""
        ga = self.tc.grad_accum
        checkpoint.seed_step(self.tc.seed, self.state.step)  # dropout of this step: from (seed, step) alone
        micro = self.next_micro_batches(it)
        counts = [_count_target_tokens(self.unwrapped, b) for b in micro] if ga > 1 else None
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
        out = token_loss.token_loss_step(self.accelerator, self.model, self.optimizer, self.scheduler, micro, _forward,
                                         max_grad_norm=self.cfg.optim.max_grad_norm, local_token_counts=counts)
        n_valid = sum(0 if b.get("_zero_weight") else _num_valid(b) for b in micro)
        self.meter.add(int(dist_utils.all_reduce_sum(torch.tensor(n_valid, device=self.device)).item()))
        state = self.state
        state.step += 1
        state.batch_in_epoch += ga
        stop_if_not_finite("stage 2", state.step, {"loss": out["loss"]}, lrs)  # global: every rank stops
        faults.point("step")
        self.window_losses.append(out["loss"])
        self.window_tokens += out["tokens"]
        self.final_loss = out["loss"]
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{out['loss']:.4f}")
        return out, lrs

    def log_step(self, out: dict, lrs: dict) -> None:
        """Every ``log_every`` steps, at the last step and at evaluations: one metrics.jsonl line
        (window means, skipped so far; dev BLEU and export when an evaluation is due)."""
        tc, state = self.tc, self.state
        eval_due = self.dev_ds is not None and (
            (tc.eval_every and state.step % tc.eval_every == 0) or state.step == self.total)
        if not (state.step % tc.log_every == 0 or state.step == self.total or eval_due):
            return
        skipped = int(dist_utils.all_reduce_sum(torch.tensor(len(self.skipped_window), device=self.device)).item())
        named = [x for part in dist_utils.all_gather_object(self.skipped_window) for x in part] if skipped else []
        state.skipped += skipped
        self.skipped_window = []
        first_lr = next(iter(lrs.values()))
        record = dict(loss=sum(self.window_losses) / len(self.window_losses),
                      lr=lrs.get("lora", lrs.get("projector", first_lr)),
                      samples_per_s=self.meter.rate(), epoch=state.epoch, tokens=self.window_tokens,
                      grad_norm=out["grad_norm"], skipped=state.skipped,
                      **({"skipped_ids": [str(x[0]) for x in named[:10]]} if named else {}),
                      **{f"lr_{k}": v for k, v in lrs.items() if not k.endswith("_no_decay")})
        if eval_due:
            record.update(self.evaluate_and_export())
            self.meter = metrics_log.Throughput()
        self.metrics.log(state.step, **record)
        if skipped:
            dist_utils.print0(f"step {state.step}: skipped {skipped} unreadable sample{'s' * (skipped > 1)}: "
                              f"{metrics_log.name_skipped(named)} ({state.skipped} so far)")
        self.window_losses, self.window_tokens = [], 0

    def save_step(self) -> None:
        if self.tc.save_every and self.state.step % self.tc.save_every == 0:
            self.save()

    def end_epoch(self, num_batches: int) -> None:
        """Move to the next epoch once this one's batches are all consumed."""
        if self.state.batch_in_epoch >= num_batches:
            self.state.epoch, self.state.batch_in_epoch = self.state.epoch + 1, 0

    # ------------------------------------------------------ evaluation, export
    def evaluate_and_export(self) -> dict:
        """Dev BLEU-4; export when it beats the best so far. Returns the fields for metrics.jsonl."""
        accelerator, state = self.accelerator, self.state
        res = evaluate_dev(accelerator, self.model, self.dev_ds, collate_clips, self.cfg)
        bleu = res["bleu4"]
        better = state.update_best([bleu])
        if better:
            dev = {k: res[k] for k in ("bleu4", "signature", "n", "unreadable")}
            export_model(accelerator, self.model, self.model_dir,
                         res["predictions"] if accelerator.is_main_process else None,
                         card=training_facts(self.cfg, stage=2, dev={**dev, "step": state.step}))
        unreadable = f" ({res['unreadable']} unreadable, scored as empty)" if res["unreadable"] else ""
        dist_utils.print0(f"step {state.step}: dev BLEU-4 {bleu:.2f} on {res['n']} clips{unreadable}"
                          + (" (best, exported)" if better else
                             f" (best {state.best_metric:.2f} at step {state.best_step})"))
        return {"dev_bleu4": bleu, "dev_n": res["n"], "dev_unreadable": res["unreadable"],
                "best_dev_bleu": state.best_metric, "bleu_signature": res["signature"]}

    def save(self) -> None:
        checkpoint.save_checkpoint(self.accelerator, self.run_dir, self.state, self.tc.keep_checkpoints)
        self.last_saved = self.state.step

    def finish(self) -> dict:
        """Final export without dev (unless interrupted), last checkpoint; the summary."""
        self.bar.close()
        state = self.state
        interrupted = self.stop_at_step is not None and state.step < self.total
        if not interrupted and self.dev_ds is None:
            export_model(self.accelerator, self.model, self.model_dir, card=training_facts(self.cfg, stage=2))
        if self.last_saved != state.step and state.step > 0:
            self.save()
        self.accelerator.wait_for_everyone()
        return {"best_dev_bleu": state.best_metric, "best_step": state.best_step,
                "model_dir": str(self.model_dir) if self.model_dir.is_dir() else None, "steps": state.step,
                "run_dir": str(self.run_dir), "skipped": state.skipped, "final_loss": self.final_loss,
                "world_size": self.world}
