"""GPU checks (run by eval/gpu_check.sh on a CUDA machine; nothing is downloaded).

    python eval/gpu_check.py qlora7b [--batch 4 --video-tokens 128 --text-tokens 32]
    python eval/gpu_check.py smollm2-model --llm DIR --out DIR   # SLT model folder for bench_translate
    python eval/gpu_check.py qlora7b --dry-run                   # CPU: the 7B config on meta, no weights
    python eval/gpu_check.py random-llm --like DIR --out DIR     # DIR's architecture + tokenizer, random weights

``qlora7b``: one QLoRA training step of the FULL SLT model (encoder + projector
+ LLM in NF4 + LoRA) at Qwen2.5-7B shape (hidden 3584, 28 layers, 28 heads /
4 KV heads, MLP 18944, vocab 152064, untied lm_head; random weights written
shard by shard as bf16 safetensors from a config), loaded through the
project's own path (``SLTModel.build`` -> ``load_llm`` with
``load_in_4bit``, quantised on the GPU), gradient checkpointing on, bf16
autocast, AdamW on the trainable parameters. Input: ``--batch`` clips of
``--video-tokens`` video tokens (frames = video tokens x temporal_stride) and
a ``--text-tokens`` long text side (prompt + target + eos). Prints the peak
GPU memory (``torch.cuda.max_memory_allocated``, weights included) and a
``RESULT qlora_7b_peak_gb=...`` line. Target: <= 24 GB at batch 4, 128 + 32.

``--dry-run`` (CPU): builds the same config and model on the meta device and
prints the parameter count and the NF4 weight estimate, to check the shape
and the arguments without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QWEN25_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                 rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
GB = 1e9


def qwen25_7b_config(**over):
    from transformers import Qwen2Config

    cfg = Qwen2Config(**{**QWEN25_7B, **over}, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg.architectures = ["Qwen2ForCausalLM"]
    return cfg


def write_random_checkpoint(cfg, out: Path, device: str, seed: int = 0, shard_gb: float = 4.0) -> int:
    """Random bf16 weights for ``cfg`` as sharded safetensors + index (model built on meta;
    tensors made one at a time on ``device``). Tokenizer: the project's tiny BPE (ids < 600
    are valid in any vocabulary; the text side only needs a tokenizer, not a language)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from slt_llm.models.tiny_llm import DEFAULT_TEXTS, train_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    g = torch.Generator(device=device).manual_seed(seed)
    shard, shard_bytes, n, weight_map, idx = {}, 0, 0, {}, 0
    names = [(k, tuple(p.shape)) for k, p in model.named_parameters()]

    def flush():
        nonlocal shard, shard_bytes, idx
        if shard:
            name = f"model-{idx:05d}.safetensors"
            save_file(shard, str(out / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in shard})
            idx += 1
            shard, shard_bytes = {}, 0

    for k, shape in names:
        if k.endswith("norm.weight"):
            t = torch.ones(shape, dtype=torch.bfloat16)
        elif k.endswith(".bias"):
            t = torch.zeros(shape, dtype=torch.bfloat16)
        else:
            t = (torch.randn(shape, generator=g, device=device, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()
        shard[k] = t
        shard_bytes += t.numel() * 2
        n += t.numel()
        if shard_bytes >= shard_gb * GB:
            flush()
    flush()
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": n * 2},
                                                                   "weight_map": weight_map}))
    cfg.save_pretrained(str(out))
    train_tokenizer(DEFAULT_TEXTS).save_pretrained(str(out))
    return n


def slt_config(llm_path: str, video_tokens: int, stride: int = 4):
    from slt_llm.config import EncoderConfig, LLMConfig, SLTConfig

    cfg = SLTConfig()
    cfg.encoder = EncoderConfig(temporal_stride=stride)  # the shipped default encoder (cnn backbones)
    cfg.llm = LLMConfig(path=llm_path, dtype="bfloat16", load_in_4bit=True, bnb_4bit_compute_dtype="bfloat16",
                        bnb_4bit_quant_storage="bfloat16", gradient_checkpointing=True)
    return cfg


def make_batch(tokenizer, prompt_len: int, batch: int, video_tokens: int, stride: int, text_tokens: int, device):
    """Synthetic clips (uint8 frames, keypoints) of video_tokens * stride frames; targets sized
    so prompt + target + eos = text_tokens tokens."""
    import torch

    from slt_llm.models.tiny_llm import DEFAULT_TEXTS

    T = video_tokens * stride
    g = torch.Generator().manual_seed(0)
    b = {"left": torch.randint(0, 256, (batch, T, 3, 64, 64), dtype=torch.uint8, generator=g),
         "right": torch.randint(0, 256, (batch, T, 3, 64, 64), dtype=torch.uint8, generator=g),
         "full": torch.randint(0, 256, (batch, T, 3, 112, 112), dtype=torch.uint8, generator=g),
         "keypoints": torch.randn(batch, T, 53, 3, generator=g),
         "frame_mask": torch.ones(batch, T, dtype=torch.bool), "lengths": torch.full((batch,), T)}
    b = {k: v.to(device) for k, v in b.items()}
    want = max(1, text_tokens - prompt_len - 1)
    words = " ".join(DEFAULT_TEXTS * 4).split()
    texts = []
    for i in range(batch):
        ws = words[i * 7:]
        text = ""
        for j in range(1, len(ws)):
            cand = " ".join(ws[:j])
            if len(tokenizer(cand, add_special_tokens=False)["input_ids"]) > want:
                break
            text = cand
        texts.append(text)
    b["texts"] = texts
    return b


def qlora7b(args) -> int:
    import torch

    cfg7 = qwen25_7b_config()
    if args.dry_run:
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            m = AutoModelForCausalLM.from_config(cfg7)
        n = sum(p.numel() for p in m.parameters())
        lin = sum(p.numel() for name, p in m.named_parameters()
                  if p.dim() == 2 and "embed" not in name and "lm_head" not in name)
        nf4 = lin * 0.5 + (n - lin) * 2  # packed 4-bit linears, bf16 embeddings / lm_head / norms
        slt_config("/nonexistent", args.video_tokens, args.stride)  # the config builds
        print(f"dry run: Qwen2.5-7B shape {type(m).__name__}, {n / 1e9:.2f} B params "
              f"({lin / 1e9:.2f} B in linear layers), NF4 weights ~{nf4 / GB:.1f} GB; "
              f"batch {args.batch} x ({args.video_tokens} video tokens = {args.video_tokens * args.stride} frames, "
              f"{args.text_tokens} text tokens)")
        print(f"RESULT qlora_7b_params_b={n / 1e9:.2f} nf4_weights_gb={nf4 / GB:.1f}")
        return 0
    if not torch.cuda.is_available():
        print("qlora7b: no CUDA device", file=sys.stderr)
        return 2
    from slt_llm.models.slt_model import SLTModel

    dev = torch.device("cuda")
    ckpt = Path(args.work) / "qwen25_7b_random"
    if not (ckpt / "model.safetensors.index.json").is_file():
        t0 = time.time()
        n = write_random_checkpoint(cfg7, ckpt, "cuda")
        print(f"random Qwen2.5-7B-shape checkpoint: {n / 1e9:.2f} B params in {time.time() - t0:.0f} s -> {ckpt}",
              flush=True)
    cfg = slt_config(str(ckpt), args.video_tokens, args.stride)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    model = SLTModel.build(cfg, device=dev)
    model.train()
    load_gb = torch.cuda.max_memory_allocated() / GB
    print(f"built on {dev} in {time.time() - t0:.0f} s; allocated after build {torch.cuda.memory_allocated() / GB:.2f} GB",
          flush=True)
    prompt_len = int(model.prompt_ids.numel() + model.after_ids.numel())
    batch = make_batch(model.tokenizer, prompt_len, args.batch, args.video_tokens, args.stride, args.text_tokens, dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(args.steps):
        torch.cuda.synchronize()
        t0 = time.time()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(batch)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.time() - t0)
        print(f"step {step + 1}: loss {float(out['loss']):.4f}, {times[-1]:.2f} s, "
              f"{int(out['num_tokens'])} target tokens", flush=True)
    peak = torch.cuda.max_memory_allocated() / GB
    _, vmask = model.encoder(batch)
    print(f"QLoRA step at Qwen2.5-7B shape: batch {args.batch}, {int(vmask.sum(1).max())} video tokens + "
          f"{prompt_len} prompt tokens + targets (text side <= {args.text_tokens}), gradient checkpointing: "
          f"peak GPU memory {peak:.2f} GB (build peak {load_gb:.2f} GB; target <= 24 GB)")
    print(f"RESULT qlora_7b_peak_gb={peak:.2f} step_s={min(times):.2f}")
    return 0


def smollm2_model(args) -> int:
    """An SLT model folder (random encoder/projector, fresh LoRA) over the imported SmolLM2,
    for eval/bench_translate.py --model (speed does not depend on training)."""
    import torch

    from slt_llm.config import EncoderConfig, LLMConfig, SLTConfig
    from slt_llm.models.slt_model import SLTModel

    out = Path(args.out)
    if (out / "meta.json").is_file():
        print(f"reusing {out}")
        return 0
    torch.manual_seed(0)
    cfg = SLTConfig()
    cfg.encoder = EncoderConfig(hand_channels=[16, 32, 64], full_channels=[8, 16, 32], keypoint_hidden=128, dim=128,
                                temporal_stride=4, num_layers=2, num_heads=4)
    cfg.llm = LLMConfig(path=str(Path(args.llm).resolve()), dtype="float32", lora_targets=["q_proj", "v_proj"])
    model = SLTModel.build(cfg)
    model.clip_cfg = cfg.data.clip  # what training records for translate
    model.save_pretrained(out)
    print(f"SLT model over SmolLM2 -> {out}")
    return 0


def random_llm(args) -> int:
    """An LLM folder with the architecture, tokenizer and chat template of ``--like`` (an
    ``import-llm`` folder whose weights are not read, e.g. eval/gpu_prep.sh's
    ``.gpu/smollm2_shape``) and random weights (the model's own initialisation, seed 0), saved
    in the folder's dtype. For speed checks on a machine the real weights cannot reach: every
    shape, the tokenizer's token counts and so every FLOP are the real model's; the
    translations are not. ``random_weights.json`` in the folder says so."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    like, out = Path(args.like), Path(args.out)
    if (out / "random_weights.json").is_file():
        print(f"reusing {out}")
        return 0
    if not (like / "config.json").is_file():
        print(f"random-llm: {like / 'config.json'}: no such file (an import-llm folder is needed)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for f in like.iterdir():
        if f.is_file() and f.suffix not in (".safetensors", ".bin"):
            shutil.copy2(f, out / f.name)
    cfg = AutoConfig.from_pretrained(str(like))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    dtype = getattr(cfg, "dtype", None) or getattr(cfg, "torch_dtype", None) or torch.float32
    model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype).save_pretrained(str(out))
    n = sum(p.numel() for p in model.parameters())
    (out / "random_weights.json").write_text(json.dumps(
        {"like": str(like), "params": n, "seed": 0,
         "note": "random weights at the shape of 'like': for speed checks only, translations are meaningless"}, indent=1))
    print(f"random-weight LLM at the shape of {like} ({n / 1e6:.1f} M params) -> {out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("check", choices=["qlora7b", "smollm2-model", "random-llm"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--video-tokens", type=int, default=128)
    ap.add_argument("--stride", type=int, default=4, help="encoder temporal_stride (frames = video tokens x stride)")
    ap.add_argument("--text-tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2, help="training steps (the peak is over all of them)")
    ap.add_argument("--work", default="runs/gpu_check")
    ap.add_argument("--dry-run", action="store_true", help="CPU: build the 7B config on meta only")
    ap.add_argument("--llm", default=None, help="smollm2-model: the imported SmolLM2 folder")
    ap.add_argument("--out", default=None, help="smollm2-model, random-llm: output folder")
    ap.add_argument("--like", default=None, help="random-llm: an import-llm folder (its weights are not read)")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.video_tokens < 1 or args.text_tokens < 2 or args.stride < 1 or args.steps < 1:
        ap.error("--batch, --video-tokens, --stride, --steps must be >= 1 and --text-tokens >= 2")
    if args.check == "smollm2-model":
        if not args.llm or not args.out:
            ap.error("smollm2-model needs --llm DIR and --out DIR")
        return smollm2_model(args)
    if args.check == "random-llm":
        if not args.like or not args.out:
            ap.error("random-llm needs --like DIR and --out DIR")
        return random_llm(args)
    return qlora7b(args)


if __name__ == "__main__":
    sys.exit(main())
