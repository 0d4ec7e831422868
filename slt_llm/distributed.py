"""The one module that knows the distributed environment.

Works the same under ``accelerate launch`` (with or without DeepSpeed), under
``torchrun``, and in a plain single process (rank 0 of 1).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def print0(*args, **kwargs) -> None:
    """print() on rank 0 only."""
    if is_main():
        print(*args, **kwargs, flush=True)


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a new tensor; identity in one process)."""
    if not is_initialized() or world_size() == 1:
        return x
    y = x.clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


def all_gather_object(obj) -> list:
    if not is_initialized() or world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def node_id() -> str:
    """This process's machine: host name + the launcher's node rank
    (``GROUP_RANK`` from torchrun / accelerate's standard launcher,
    ``CROSS_RANK`` from DeepSpeed's launcher, ``NODE_RANK`` otherwise), so two
    "machines" on one host (loopback tests) still count as two."""
    import socket

    rank_env = next((os.environ[k] for k in ("GROUP_RANK", "CROSS_RANK", "NODE_RANK") if k in os.environ), "0")
    return f"{socket.gethostname()}#{rank_env}"


def num_machines() -> int:
    """Distinct machines in the process group (one small all-gather; 1 alone)."""
    return len(set(all_gather_object(node_id())))


def check_world(expected_machines=None, on_error=None) -> None:
    """Refuse to train in a world other than the one launched for, in one line
    (``ConfigError``), instead of silently training alone:

    - the launcher's ``WORLD_SIZE`` differs from the process group's size (e.g.
      each process of a CPU ``accelerate launch`` made its own group of 1);
    - ``expected_machines`` (``train.num_machines``) > 1 and the group spans
      fewer machines (e.g. accelerate's default multi-node DeepSpeed launcher,
      pdsh without a hostfile, fell back to "local resources only" and every
      machine trains alone).

    ``on_error()`` runs before raising (e.g. to tear the accelerator down).
    Cost: one all-gather of a short string when the group has several processes.
    """
    from slt_llm.errors import ConfigError

    try:
        _check_world(expected_machines)
    except ConfigError:
        if on_error is not None:
            on_error()
        raise


def _check_world(expected_machines) -> None:
    from slt_llm.errors import ConfigError

    env_world = int(os.environ.get("WORLD_SIZE", 1))
    group = dist.get_world_size() if is_initialized() else 1
    if env_world != group:
        raise ConfigError(f"launched as {env_world} processes (WORLD_SIZE={env_world}) but the process group has "
                          f"{group}: the processes did not join one group (check the launcher and MASTER_ADDR/MASTER_PORT)")
    if expected_machines is not None and int(expected_machines) > 1:
        found = num_machines()
        if found < int(expected_machines):
            raise ConfigError(
                f"train.num_machines={expected_machines} but this run found {found} machine(s) (world size {group}): "
                "the machines were not joined; launch every machine with the same --num_machines/--main_process_ip/"
                "--main_process_port and an accelerate config with `deepspeed_multinode_launcher: standard` "
                "(ds_configs/accelerate_*.yaml), or use DeepSpeed's hostfile launcher (docs/training.md)")
