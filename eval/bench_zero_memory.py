#!/usr/bin/env python
"""Per-rank memory of parameters + gradients + optimizer state under ZeRO-0, 2, 3.

Two processes (``accelerate launch``, DeepSpeed over gloo on CPU with
``DS_ACCELERATOR=cpu``, or NCCL on GPUs), the shipped ``ds_configs/zero{0,2,3}.json``
through ``training.accel.setup_accelerator`` (the trainer's own path), a random
Llama-style causal LM, fully trainable, fp32, AdamW. Bytes are counted from the
tensors each rank holds, not from process RSS:

- params: the module's parameters as stored on this rank (ZeRO-3: the partition
  ``p.ds_tensor``, plus full copies of parameters DeepSpeed keeps persistent);
- grads (after ``engine.backward``, before the step): ``p.grad`` (ZeRO-0), the
  partitioned gradient buffer (ZeRO-2 ``grads_in_partition`` / averaged
  gradients, ZeRO-3 ``grad_partitions_flat_buffer``);
- optimizer (after ``engine.step``): AdamW ``exp_avg``/``exp_avg_sq`` + ZeRO's
  fp32 master partition (ZeRO-2 ``single_partition_of_fp32_groups``, ZeRO-3
  ``fp32_partitioned_groups_flat``; ZeRO-0 updates the parameters in place).

Also printed: bytes of every live tensor storage on the rank (includes
communication buckets), for information.

    DS_ACCELERATOR=cpu python eval/bench_zero_memory.py [--hidden 768 --layers 8]

Last line: ``RESULT zero0_mb=... zero2_mb=... zero3_mb=...`` (max over the two ranks).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = {0: "ds_configs/zero0.json", 2: "ds_configs/zero2.json", 3: "ds_configs/zero3.json"}


def _nbytes(t) -> int:
    return t.numel() * t.element_size()


def _unique(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if t is None or t.numel() == 0:
            continue
        key = (t.data_ptr(), t.numel(), t.element_size())
        if key not in seen:
            seen.add(key)
            total += _nbytes(t)
    return total


def _live_tensor_bytes() -> int:
    import torch

    seen, total = set(), 0
    for obj in gc.get_objects():
        try:
            if isinstance(obj, torch.Tensor) and obj.device.type in ("cpu", "cuda"):
                st = obj.untyped_storage()
                key = st.data_ptr()
                if key and key not in seen:
                    seen.add(key)
                    total += st.nbytes()
        except Exception:
            continue
    return total


def worker(args) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from slt_llm.config import OptimConfig, TrainConfig
    from slt_llm.training import accelerator as accel, optim

    tc = TrainConfig(run_dir=str(args.out), batch_size=1, deepspeed=STAGES[args.stage], seed=0)
    oc = OptimConfig(lr_head=1e-4, weight_decay=0.0)
    acc = accel.setup_accelerator(tc, oc, log_tensorboard=False)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3 // 64 * 64,
                      num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64),
                      num_key_value_heads=max(1, args.hidden // 64), max_position_embeddings=256,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    opt = optim.build_optimizer(optim.make_param_groups(model, oc, assign=lambda n: "head"), oc)
    sched = optim.build_scheduler(opt, oc, 10)
    engine, opt_w, _ = acc.prepare(model, opt, sched)
    zopt = engine.optimizer  # DeepSpeed's ZeRO optimizer (or the torch optimizer at stage 0)
    ids = torch.randint(0, args.vocab, (1, args.seq), generator=torch.Generator().manual_seed(acc.process_index))

    def params_bytes():
        ts = []
        for p in engine.module.parameters():
            if hasattr(p, "ds_tensor"):
                ts.append(p.ds_tensor)
                if getattr(p, "ds_persist", False):
                    ts.append(p.data)
            else:
                ts.append(p.data)
        return _unique(ts)

    t0 = time.perf_counter()
    loss = engine(input_ids=ids.to(acc.device), labels=ids.to(acc.device)).loss
    engine.backward(loss)
    if args.stage == 0:
        grads = _unique(p.grad for p in engine.module.parameters())
    elif args.stage == 2:
        if getattr(zopt, "grads_in_partition", None) is not None:
            grads = _unique([zopt.grads_in_partition])
        else:
            grads = _unique(g for group in zopt.averaged_gradients.values() for g in (group or []))
        grads += _unique(p.grad for p in engine.module.parameters())
    else:
        grads = _unique([zopt.grad_partitions_flat_buffer])
    engine.step()
    step_s = time.perf_counter() - t0
    torch_opt = getattr(zopt, "optimizer", zopt)
    state = _unique(t for st in torch_opt.state.values() for t in st.values() if torch.is_tensor(t) and t.numel() > 1)
    if args.stage == 2:
        master = _unique(zopt.single_partition_of_fp32_groups)
    elif args.stage == 3:
        master = _unique(zopt.fp32_partitioned_groups_flat)
    else:
        master = 0
    rec = {"rank": acc.process_index, "stage": args.stage, "n_params": n_params, "params": params_bytes(),
           "grads": grads, "adam": state, "master": master, "live_tensors": _live_tensor_bytes(),
           "step_s": step_s, "loss": float(loss)}
    rec["total"] = rec["params"] + rec["grads"] + rec["adam"] + rec["master"]
    recs = dist_utils..all_gather_object(rec)
    if acc.is_main_process:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"zero{args.stage}.json").write_text(json.dumps(recs))
    accel.teardown(acc)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--out", default="runs/bench_zero_memory")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--stage", type=int, default=0)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    env = dict(os.environ, DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(k, None)
    results = {}
    for stage in (0, 2, 3):
        cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--use_deepspeed",
               "--deepspeed_config_file", STAGES[stage], "--num_processes", "2", "--main_process_port", str(_port()),
               __file__, "--worker", "--stage", str(stage), "--out", args.out, "--hidden", str(args.hidden),
               "--layers", str(args.layers), "--vocab", str(args.vocab), "--seq", str(args.seq)]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print("\n".join((proc.stdout + proc.stderr).splitlines()[-30:]), file=sys.stderr)
            return 1
        results[stage] = json.loads((REPO / args.out / f"zero{stage}.json").read_text())

    mb = lambda b: b / 2**20
    n = results[0][0]["n_params"]
    print(f"model: random Llama, {n / 1e6:.1f}M parameters (hidden {args.hidden}, {args.layers} layers, "
          f"vocab {args.vocab}), all trainable, fp32, AdamW; 2 processes, device {env['DS_ACCELERATOR']}")
    print(f"{'stage':<7}{'rank':>5}{'params MB':>11}{'grads MB':>10}{'adam MB':>9}{'master MB':>11}"
          f"{'total MB':>10}{'live tensors MB':>17}{'step s':>8}")
    worst = {}
    for stage, recs in results.items():
        for r in recs:
            print(f"ZeRO-{stage:<2}{r['rank']:>5}{mb(r['params']):>11.1f}{mb(r['grads']):>10.1f}{mb(r['adam']):>9.1f}"
                  f"{mb(r['master']):>11.1f}{mb(r['total']):>10.1f}{mb(r['live_tensors']):>17.1f}{r['step_s']:>8.2f}")
        worst[stage] = max(r["total"] for r in recs)
    base = worst[0]
    print(f"ZeRO-0 (DDP-equivalent) expected 16 bytes/param = {mb(16 * n):.1f} MB")
    for stage in (2, 3):
        print(f"ZeRO-{stage} / ZeRO-0 per-rank total: {worst[stage] / base:.3f}")
    print(f"RESULT zero0_mb={mb(worst[0]):.1f} zero2_mb={mb(worst[2]):.1f} zero3_mb={mb(worst[3]):.1f} "
          f"zero2_ratio={worst[2] / base:.3f} zero3_ratio={worst[3] / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
