"""Training memory of the LLM, bf16 + LoRA vs NF4 + LoRA (QLoRA), counted exactly from tensors.

    .venv/bin/python eval/bench_memory.py            # 1.1 B Llama-style config, 32k vocab
    .venv/bin/python eval/bench_memory.py --layers 2 --no-step   # quick look
    .venv/bin/python eval/bench_memory.py --loss-memory          # SLT loss at a 150k vocabulary

A random-init Llama-style model (default: TinyLlama-1.1B shape: hidden 2048,
22 layers, 32 heads / 4 KV heads, MLP 5632, vocab 32000) is written once in
bf16 safetensors to a temp folder, then each variant is loaded in its own
process through the project's real path, ``slt_llm.models.llm.load_llm``
(so the QLoRA numbers include ``prepare_model_for_kbit_training`` and our
dtype choices: norms fp32, frozen embeddings / lm_head at the bf16 compute
dtype). Counted per variant, each tensor once (tied / shared storage
deduplicated by data pointer):

  params        every parameter as stored (packed 4-bit data for Linear4bit)
  buffers       registered buffers (rotary inv_freq, ...)
  quant_state   NF4 state of every Linear4bit: absmax (uint8 when double-
                quantized), quant_map/code, offset, nested absmax + code
  grads         one gradient per trainable parameter (its dtype)
  adamw         2 x fp32 per trainable parameter (exp_avg, exp_avg_sq)

``--loss-memory``: the activation side of the SLT loss at a 150k vocabulary
(Qwen2.5's 151,936): an SLTModel over a random 1-layer Llama with that
vocabulary (hidden 512), batch 4 x (prompt + 128 video tokens + ~32 target
tokens), one forward + backward, each variant in its own process:
``full`` = lm_head on every position + fp32 upcast (``return_logits=True``),
``target`` = lm_head only on the target positions (the training path).
Counted: activation bytes saved for backward (saved-tensor hooks, each storage
once, parameters excluded)
and the peak RSS above the pre-step level (sampled every 2 ms). Last line
``RESULT loss_full_mb=... loss_target_mb=... loss_ratio=... peak_full_mb=...
peak_target_mb=...`` (ratio = target / full, saved-for-backward bytes).

Then one training step (batch 1 x --seq tokens, AdamW on the LoRA params) and
the process peak RSS, for information only (on CPU RSS is dominated by the
libraries and the activations). Last line:
``RESULT bf16_mb=... nf4_mb=... ratio=...`` (MiB; ratio = nf4 / bf16).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MiB = 2**20


def write_random_llama(out: Path, *, hidden: int, layers: int, heads: int, kv_heads: int, inter: int, vocab: int,
                       seed: int = 0) -> int:
    """Random bf16 Llama checkpoint (model built on meta, tensors made one by one). Returns #params."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=2048,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg.architectures = ["LlamaForCausalLM"]
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(seed)
    sd, n = {}, 0
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            t = torch.ones(p.shape, dtype=torch.bfloat16)
        else:
            t = (torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.02).to(torch.bfloat16)
        sd[name] = t
        n += t.numel()
    out.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    del sd
    cfg.dtype = "bfloat16"
    cfg.save_pretrained(out)
    # a tokenizer so load_llm's checks pass (the bench never tokenizes text)
    from slt_llm.models.tiny_llm import train_tokenizer

    train_tokenizer(["a b c d e"], vocab_size=300).save_pretrained(str(out))
    return n


def tensor_bytes(model) -> dict:
    """Exact bytes by category (see module doc); each storage counted once."""
    seen: set = set()

    def nbytes(t) -> int:
        if t is None or not torch.is_tensor(t):
            return 0
        key = (t.untyped_storage().data_ptr(), t.device.type)
        if key in seen:
            return 0
        seen.add(key)
        return t.untyped_storage().nbytes()

    out = {"params": 0, "buffers": 0, "quant_state": 0, "grads": 0, "adamw": 0, "trainable_params": 0,
           "params_fp32": 0, "params_bf16": 0, "params_4bit": 0}
    for p in model.parameters():
        b = nbytes(p)
        out["params"] += b
        if p.__class__.__name__ == "Params4bit":
            out["params_4bit"] += b
        elif p.dtype == torch.float32:
            out["params_fp32"] += b
        elif p.dtype == torch.bfloat16:
            out["params_bf16"] += b
        if p.requires_grad:
            out["trainable_params"] += p.numel()
            out["grads"] += p.numel() * p.element_size()
            out["adamw"] += 2 * 4 * p.numel()
    for b in model.buffers():
        out["buffers"] += nbytes(b)
    for m in model.modules():
        qs = getattr(getattr(m, "weight", None), "quant_state", None)
        if qs is None:
            continue
        for t in (qs.absmax, qs.code, getattr(qs, "offset", None)):
            out["quant_state"] += nbytes(t)
        s2 = getattr(qs, "state2", None)
        if s2 is not None:
            out["quant_state"] += nbytes(s2.absmax) + nbytes(s2.code)
    out["total"] = out["params"] + out["buffers"] + out["quant_state"] + out["grads"] + out["adamw"]
    return out


def run_variant(model_dir: str, variant: str, seq: int, step: bool, targets: list) -> dict:
    from slt_llm.config import LLMConfig
    from slt_llm.models.llm import load_llm

    torch.manual_seed(0)
    cfg = LLMConfig(path=model_dir, dtype="bfloat16", load_in_4bit=(variant == "nf4"),
                    bnb_4bit_compute_dtype="bfloat16", bnb_4bit_quant_storage="bfloat16",
                    lora_targets=targets)
    t0 = time.perf_counter()
    model, _ = load_llm(cfg)
    res = {"variant": variant, "load_s": time.perf_counter() - t0, **tensor_bytes(model)}
    res["rss_after_load_mb"] = _rss_now() / MiB
    if step:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4)
        ids = torch.randint(3, model.config.vocab_size, (1, seq))
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        res["step_s"] = time.perf_counter() - t0
        res["loss"] = float(loss)
        # counted again with the grads / optimizer state that now exist: must agree
        real_state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if t.dim() > 0)
        res["adamw_real"] = real_state
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def loss_variant(model_dir: str, variant: str, batch_size: int, video: int) -> dict:
    """One SLT forward + backward; bytes saved for backward and transient peak RSS."""
    import threading

    from slt_llm.config import EncoderConfig, LLMConfig, SLTConfig
    from slt_llm.models.slt_model import SLTModel

    torch.manual_seed(0)
    cfg = SLTConfig()
    cfg.encoder = EncoderConfig(dim=64, hand_channels=[8, 16], full_channels=[8, 16], keypoint_hidden=32, num_layers=1,
                                num_heads=2, temporal_stride=1, temporal_kernel=1, dropout=0.0)
    cfg.llm = LLMConfig(path=model_dir, dtype="float32", lora_targets=["q_proj", "v_proj"], lora_dropout=0.0)
    model = SLTModel.build(cfg).train()
    g = torch.Generator().manual_seed(0)
    B, T = batch_size, video
    batch = {"left": torch.randint(0, 256, (B, T, 3, 16, 16), dtype=torch.uint8, generator=g),
             "right": torch.randint(0, 256, (B, T, 3, 16, 16), dtype=torch.uint8, generator=g),
             "full": torch.randint(0, 256, (B, T, 3, 16, 16), dtype=torch.uint8, generator=g),
             "keypoints": torch.randn(B, T, 53, 3, generator=g),
             "frame_mask": torch.ones(B, T, dtype=torch.bool), "lengths": torch.full((B,), T)}
    from slt_llm.models.tiny_llm import DEFAULT_TEXTS

    batch["texts"] = [" ".join(DEFAULT_TEXTS[i:i + 4]) for i in range(B)]  # ~30 tokens each
    saved: dict = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}  # saved weights are not activations

    def pack(t):
        try:
            ptr = t.untyped_storage().data_ptr()
            if ptr not in weights:
                saved[ptr] = max(saved.get(ptr, 0), t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):
            pass
        return t

    base = _rss_now()
    peak = [base]
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_now())
            time.sleep(0.002)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(batch, return_logits=(variant == "full"))
    saved_bytes = sum(saved.values())
    out["loss"].backward()
    step_s = time.perf_counter() - t0
    stop.set()
    th.join()
    L = int(model.prompt_ids.numel() + T + model.after_ids.numel())
    return {"variant": variant, "loss": float(out["loss"]), "num_tokens": int(out["num_tokens"]),
            "saved_mb": saved_bytes / MiB, "peak_mb": (peak[0] - base) / MiB, "step_s": step_s,
            "positions": B * L, "vocab": model.llm.config.vocab_size}


def _run_child(cmd: list) -> tuple:
    """One measurement in a fresh process: ``(0, its last stdout line as JSON)``, or
    ``(its exit code, None)`` with the tail of its stderr printed."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode, None
    return 0, json.loads(proc.stdout.strip().splitlines()[-1])


def loss_memory(args) -> int:
    tmp = tempfile.mkdtemp(prefix="bench_lossmem_")
    try:
        write_random_llama(Path(tmp), hidden=512, layers=1, heads=8, kv_heads=2, inter=1024, vocab=args.vocab)
        from slt_llm.models.tiny_llm import DEFAULT_TEXTS, train_tokenizer

        train_tokenizer(DEFAULT_TEXTS).save_pretrained(tmp)
        res = {}
        for variant in ("full", "target"):
            cmd = [sys.executable, __file__, "--loss-variant", variant, "--model-dir", tmp,
                   "--batch", str(args.batch), "--video", str(args.video)]
            rc, res[variant] = _run_child(cmd)
            if rc:
                return rc
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    f, t = res["full"], res["target"]
    print(f"vocab {f['vocab']}, batch {args.batch}, {f['positions']} prompt+video positions + "
          f"{f['num_tokens']} target tokens (hidden 512, 1 layer, fp32, LoRA q/v)")
    for r in (f, t):
        print(f"{r['variant']:<7} loss {r['loss']:.6f}  saved for backward {r['saved_mb']:8.1f} MiB  "
              f"peak RSS above start {r['peak_mb']:8.1f} MiB  fwd+bwd {r['step_s']:.1f} s")
    assert abs(f["loss"] - t["loss"]) <= 1e-4 * max(1.0, abs(f["loss"])), "the two losses differ"
    ratio = t["saved_mb"] / f["saved_mb"]
    print(f"RESULT loss_full_mb={f['saved_mb']:.1f} loss_target_mb={t['saved_mb']:.1f} loss_ratio={ratio:.3f} "
          f"peak_full_mb={f['peak_mb']:.1f} peak_target_mb={t['peak_mb']:.1f}")
    return 0


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seq", type=int, default=128, help="tokens in the one training step")
    ap.add_argument("--no-step", action="store_true", help="skip the training step (counts only)")
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj",
                    help="LoRA targets (default: the project's default, attention projections)")
    ap.add_argument("--model-dir", default=None, help="reuse/write the random checkpoint here")
    ap.add_argument("--variant", choices=["bf16", "nf4"], help=argparse.SUPPRESS)
    ap.add_argument("--loss-memory", action="store_true",
                    help="activation memory of the SLT loss, full logits vs target positions (default --vocab 151936)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--video", type=int, default=128, help="video tokens per sample (--loss-memory)")
    ap.add_argument("--loss-variant", choices=["full", "target"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.loss_variant:
        print(json.dumps(loss_variant(args.model_dir, args.loss_variant, args.batch, args.video)))
        return 0
    if args.loss_memory:
        if args.vocab == 32000:  # the parser default: this mode is about a 150k vocabulary
            args.vocab = 151936
        return loss_memory(args)
    if args.variant:  # child process: one variant, JSON on the last line
        print(json.dumps(run_variant(args.model_dir, args.variant, args.seq, not args.no_step, args.targets.split(","))))
        return 0
    tmp = None
    model_dir = Path(args.model_dir) if args.model_dir else Path(tmp := tempfile.mkdtemp(prefix="bench_mem_"))
    if not (model_dir / "model.safetensors").is_file():
        t0 = time.perf_counter()
        n = write_random_llama(model_dir, hidden=args.hidden, layers=args.layers, heads=args.heads,
                               kv_heads=args.kv_heads, inter=args.intermediate, vocab=args.vocab)
        print(f"random Llama-style checkpoint: {n / 1e9:.3f} B params, vocab {args.vocab}, "
              f"written in {time.perf_counter() - t0:.1f} s -> {model_dir}", flush=True)
    results = {}
    try:
        for variant in ("bf16", "nf4"):
            cmd = [sys.executable, __file__, "--variant", variant, "--model-dir", str(model_dir), "--seq", str(args.seq),
                   "--targets", args.targets]
            if args.no_step:
                cmd.append("--no-step")
            rc, results[variant] = _run_child(cmd)
            if rc:
                return rc
    finally:
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    cats = ["params", "params_4bit", "params_bf16", "params_fp32", "buffers", "quant_state", "grads", "adamw", "total"]
    print(f"\n{'MiB':<14}{'bf16+LoRA':>14}{'NF4+LoRA':>14}{'ratio':>9}")
    for c in cats:
        a, b = results["bf16"][c] / MiB, results["nf4"][c] / MiB
        print(f"{c:<14}{a:>14.1f}{b:>14.1f}{(b / a if a else float('nan')):>9.3f}")
    for v in ("bf16", "nf4"):
        r = results[v]
        line = (f"{v}: trainable {r['trainable_params']:,} params, load {r['load_s']:.1f} s, "
                f"RSS after load {r['rss_after_load_mb']:.0f} MiB, peak RSS {r['peak_rss_mb']:.0f} MiB")
        if "step_s" in r:
            line += f", one step ({args.seq} tokens) {r['step_s']:.1f} s, loss {r['loss']:.3f}"
            assert r["adamw_real"] == r["adamw"], "AdamW state differs from the count"
        print(line)
    bf16_mb, nf4_mb = results["bf16"]["total"] / MiB, results["nf4"]["total"] / MiB
    ratio = nf4_mb / bf16_mb
    print(f"QLoRA / bf16-LoRA memory ratio {ratio:.3f} (target <= 0.35)")
    print(f"RESULT bf16_mb={bf16_mb:.1f} nf4_mb={nf4_mb:.1f} ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
