"""Which global batches stage 1 trains on, epoch by epoch: the part of
:class:`~slt_llm.training.stage1.Stage1Trainer` that owns its samplers and false negatives
(``selection.selection``: ``random``, ``random_fn``, ``ps``).

:class:`PairSelection` is a mixin of the trainer. It reads what the trainer's setup made
(``cfg``, ``sel``, ``tc``, ``accelerator``, ``device``, ``rank``, ``world``, ``run_dir``,
``reference_source``; the training set ``ds``, ``n``, ``global_batch``, ``train_ids``,
``train_texts``; the text side ``text_idx``, ``text_llm``, ``text_tok``) and sets ``n_ref``
(epochs of the reference phase in this run), the text / oracle false negatives, the random
sampler, and once the reference phase ends the pair-selection sampler (``ps_sampler``,
``ps_fn``, ``selection_s``). Pair selection scores either each anchor's top-M candidates
over the K reference checkpoints (``selection.candidates=top_m``: ``contrastive.selection``)
or every unused sample from the first and last checkpoint (``all``: ``contrastive.dense``).
"""

from __future__ import annotations

import time

from slt_llm import distributed as dist_utils
from slt_llm import run_layout as layout
from slt_llm.errors import InputError
from slt_llm.training import data_order


class PairSelection:
    """The batch samplers of a stage-1 run (module docstring)."""

    ps_sampler = None
    ps_fn = None
    selection_s = 0.0

    def build_samplers(self) -> None:
        """The random global-batch sampler and the text false negatives (``random_fn``, ``ps``)."""
        from slt_llm.contrastive import selection as sel_mod

        sel = self.sel
        if sel.selection == "ps":
            self.n_ref = 0 if sel.protocol == "separate" else sel.ref_epochs
        else:
            self.n_ref = min(sel.ref_epochs, self.tc.epochs)
        self.oracle_fn = sel_mod.false_negatives_from_file(sel.fn_file, self.train_ids) if sel.fn_file else None
        self.text_fn = None
        if (sel.selection == "random_fn" and self.oracle_fn is None) or (sel.selection == "ps" and sel.text_fn):
            self.text_fn = sel_mod.text_false_negatives(self.train_texts, sel)
        self.random_fn_mask = self.oracle_fn if self.oracle_fn is not None else self.text_fn
        data_seed = self.tc.seed if self.tc.data_seed is None else self.tc.data_seed
        self.random_sampler = data_order.RandomGlobalBatchSampler(self.n, self.global_batch, rank=self.rank,
                                                                  world_size=self.world, seed=data_seed)

    def build_pair_selection(self) -> None:
        """Trajectories over the reference checkpoints (read when saved, else computed and
        saved), then the pair selector, its false negatives and its batch sampler."""
        from slt_llm.contrastive import selection as sel_mod
        from slt_llm.contrastive.trajectories import ids_hash

        t0 = time.perf_counter()
        refs = layout.reference_dirs(self.reference_source)
        expect = ids_hash(self.train_ids)
        if self.sel.candidates == "all":
            selector = self.dense_selector(refs, expect)
        else:
            selector = self.topm_selector(refs, expect)
        self.ps_fn = selector.false_negatives
        self.ps_sampler = sel_mod.PairSelectionBatchSampler(selector, self.global_batch, rank=self.rank,
                                                            world_size=self.world, seed=self.tc.seed,
                                                            num_epochs=self.tc.epochs - self.n_ref)
        self.selection_s = time.perf_counter() - t0
        dist_utils.print0(f"stage 1: pair selection ready in {self.selection_s:.1f}s (K={len(refs)} reference "
                          f"checkpoints of {self.reference_source}; {self.sel.protocol} protocol; candidates "
                          f"{self.sel.candidates}, score {self.sel.score})")

    def dense_selector(self, refs: list, expect: str):
        """``DensePairSelector`` over every unused sample; the dense similarities of the first and
        last reference checkpoint are kept in the REFERENCE run's folder (computed once, shared by
        every run that selects from it; atomic write)."""
        from slt_llm.contrastive import dense

        path = layout.reference_root(self.reference_source) / "dense_similarity.npz"
        if not path.is_file():
            first, last = dense.reference_similarities(refs, self.ds, self.text_idx, self.text_llm,
                                                       batch_size=self.tc.batch_size,
                                                       num_workers=self.cfg.data.num_workers, device=self.device,
                                                       rank=self.rank, world_size=self.world,
                                                       text_tokens=self.text_tok)
            if self.accelerator.is_main_process:
                dense.save_similarities(path, first, last, expect, self.cfg.vlp.similarity)
            self.accelerator.wait_for_everyone()
        else:
            first, last = dense.load_similarities(path, expect_ids_hash=expect,
                                                  expect_similarity=self.cfg.vlp.similarity)
        return dense.DensePairSelector(first, last, self.sel, base_fn=self.dense_base_fn(), score=self.sel.score,
                                       seed=self.tc.seed)

    def dense_base_fn(self):
        """The dense selector's given false negatives: the text ones (``selection.text_fn``; above
        400 unique sentences only exact duplicates: chrF over every pair is too slow) and the
        ``fn_file`` oracle."""
        from slt_llm.contrastive import selection as sel_mod

        base = None
        if self.sel.text_fn:
            cid, _ = sel_mod.sentence_clusters(self.train_texts)
            base = self.text_fn if self.text_fn is not None else sel_mod.FalseNegatives(cid)
        if self.oracle_fn is not None:
            base = self.oracle_fn if base is None else sel_mod.combine_false_negatives(base, self.oracle_fn)
        return base

    def topm_selector(self, refs: list, expect: str):
        """``PairSelector`` over each anchor's top-M candidates: their trajectories over the K
        reference checkpoints (``RUN_DIR/reference/trajectories.npz``, computed once)."""
        from slt_llm.contrastive import selection as sel_mod
        from slt_llm.contrastive.reference import trajectories_from_references
        from slt_llm.contrastive.trajectories import Trajectories

        traj_path = layout.trajectories_path(self.run_dir)
        if traj_path.is_file():
            traj = Trajectories.load(traj_path, expect_ids_hash=expect)
            if traj.similarity != self.cfg.vlp.similarity:
                raise InputError(traj_path, f"trajectories of the {traj.similarity} similarity, this run uses "
                                            f"vlp.similarity={self.cfg.vlp.similarity}; delete it to recompute")
        else:
            traj = trajectories_from_references(refs, self.ds, self.text_idx, self.text_llm, self.sel,
                                                batch_size=self.tc.batch_size, num_workers=self.cfg.data.num_workers,
                                                device=self.device, rank=self.rank, world_size=self.world,
                                                text_tokens=self.text_tok)
            traj.ids_hash = expect
            if self.accelerator.is_main_process:
                traj_path.parent.mkdir(parents=True, exist_ok=True)
                traj.save(traj_path)
            self.accelerator.wait_for_everyone()
        return sel_mod.PairSelector(traj, self.train_texts if self.sel.text_fn else None, self.sel,
                                    text_fn=self.text_fn, extra_fn=self.oracle_fn)

    def sampler_for_epoch(self, epoch: int):
        """``(batches of this rank, false-negative mask fn or None, phase name)`` of an epoch:
        the random sampler in the reference phase and the baseline arms, pair selection after."""
        sel = self.sel
        if sel.selection == "ps" and epoch >= self.n_ref:
            if self.ps_sampler is None:
                self.build_pair_selection()
            self.ps_sampler.set_epoch(epoch - self.n_ref)
            return list(self.ps_sampler), self.ps_fn, sel.selection
        self.random_sampler.set_epoch(epoch)
        phase = "reference" if sel.selection == "ps" else sel.selection
        return list(self.random_sampler), (self.random_fn_mask if sel.selection == "random_fn" else None), phase
