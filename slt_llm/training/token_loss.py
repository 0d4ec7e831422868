"""One optimizer step with a token-level loss, normalised correctly under data
parallelism and gradient accumulation (torchtune ``lora_finetune_distributed.py``).

Each micro-batch's *summed* token loss is multiplied by
``world_size * grad_accum / N`` where N is the number of target tokens of the
whole optimizer step (all ranks, all micro-steps). DDP/DeepSpeed average
gradients over ranks and Accelerate/DeepSpeed divide the loss by
``grad_accum``, so the final gradient is exactly d(sum of token losses)/dθ / N:
the same as one process computing the mean over the global batch.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from slt_llm import distributed as dist_utils
from slt_llm.training.accelerator import forward_context, uses_deepspeed


# -------------------------------------------------------------- token-level loss
def global_token_count(local_tokens: int | torch.Tensor, device=None) -> int:
    """Sum of target tokens over all ranks (an all-reduce; identity in one process)."""
    t = torch.as_tensor(local_tokens, dtype=torch.float64, device=device).reshape(())
    return int(round(float(dist_utils.all_reduce_sum(t).item())))


def token_loss_scale(step_tokens_global: int, world_size: int, grad_accum: int) -> float:
    """Factor turning a micro-batch's summed token loss into the loss to backpropagate.

    ``world_size * grad_accum / N``: DDP/DeepSpeed average gradients over ranks
    and divide by ``grad_accum``; N = target tokens of the whole optimizer step
    (all ranks, all micro-steps). Result: gradient of (total token loss) / N.
    """
    return world_size * grad_accum / max(1, step_tokens_global)


# ------------------------------------------------------------ one optimizer step
def token_loss_step(accelerator, model, optimizer, scheduler, micro_batches: list, forward: Callable,
                    *, max_grad_norm: float, local_token_counts: Optional[list[int]] = None) -> dict:
    """One optimizer step over ``grad_accum`` micro-batches with a token-level loss.

    ``forward(model, batch) -> {"loss_sum": scalar tensor, "num_tokens": int}``
    (summed token loss of this rank's micro-batch). The backpropagated loss is
    ``loss_sum * token_loss_scale(N, W, grad_accum)``, N = target tokens of the
    whole step over all ranks, so the update equals one process taking the
    token mean over the global batch. With one micro-batch N comes from an
    all-reduce after the forward; with several, the caller passes each
    micro-batch's token count (``local_token_counts``, counted from the text
    before the forward) and they are checked against the model's.

    Returns ``{"loss": global token-mean loss, "tokens": N, "grad_norm": float|None}``.
    Collective: all ranks call it with the same number of micro-batches.
    """
    ga = len(micro_batches)
    world = accelerator.num_processes
    device = accelerator.device
    if ga != accelerator.gradient_accumulation_steps:
        raise ValueError(f"{ga} micro-batches for gradient_accumulation_steps={accelerator.gradient_accumulation_steps}")
    if ga > 1 and local_token_counts is None:
        raise ValueError("several micro-batches need local_token_counts (the step's token total before backward)")
    step_tokens = global_token_count(sum(local_token_counts), device) if local_token_counts is not None else None
    loss_sum_local = torch.zeros((), dtype=torch.float64, device=device)
    grad_norm = None
    model.train()
    for m, batch in enumerate(micro_batches):
        with accelerator.accumulate(model):
            with forward_context(accelerator):
                out = forward(model, batch)
            n_local = int(out["num_tokens"])
            if local_token_counts is not None and n_local != int(local_token_counts[m]):
                raise RuntimeError(f"token count mismatch: counted {local_token_counts[m]} before the forward, "
                                   f"the model reports {n_local}")
            if step_tokens is None:
                step_tokens = global_token_count(n_local, device)
            loss = out["loss_sum"] * token_loss_scale(step_tokens, world, ga)
            loss_sum_local += out["loss_sum"].detach().double()
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                if not uses_deepspeed(accelerator) and max_grad_norm and max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
    if uses_deepspeed(accelerator):
        try:
            grad_norm = accelerator.deepspeed_engine_wrapped.get_global_grad_norm()
        except Exception:  # older DeepSpeed / before the first step
            grad_norm = None
    if isinstance(grad_norm, torch.Tensor):
        grad_norm = grad_norm.item()
    total = float(dist_utils.all_reduce_sum(loss_sum_local).item())
    return {"loss": total / max(1, step_tokens), "tokens": int(step_tokens),
            "grad_norm": None if grad_norm is None else float(grad_norm)}
