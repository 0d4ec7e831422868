"""One config system for the whole project: typed, nested dataclasses.

A run is described by a YAML (or JSON) file whose keys mirror the dataclasses
below; command-line overrides use dotted keys (``encoder.dim=128``,
``train.max_steps=50``) and are parsed as YAML scalars, so ``true``, ``3``,
``1e-4`` and ``[q_proj, v_proj]`` get their natural types. Unknown keys are an
error naming the key, never silently ignored.

Models take the sub-configs (``EncoderConfig``, ``ProjectorConfig``,
``LLMConfig``), never an argparse namespace; loading pretrained weights is a
separate step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from slt_llm.errors import ConfigError


# --------------------------------------------------------------------------- data
@dataclass
class ClipConfig:
    """How a video (+ keypoints) becomes a clip.

    fps: target sampling rate; None keeps the native rate, capped at max_fps.
    max_frames: frames kept per clip; longer clips are subsampled uniformly
        over their whole duration (never truncated, so the end of a sentence is
        not lost).
    full_size: side of the (square, letterboxed) full-frame image.
    hand_size: side of each (square) hand crop.
    hand_scale: hand box side = hand_scale * extent of the hand keypoints
        (or of the wrist-elbow fallback), clamped to [min_box, max_box] as a
        fraction of the frame's shorter side.
    smooth_window: frames in the moving average that smooths hand boxes.
    max_gap: keypoint gaps up to this many frames are linearly interpolated;
        longer gaps stay missing (confidence 0) and are marked.
    """

    fps: Optional[float] = None
    max_fps: float = 30.0
    max_frames: int = 256
    full_size: int = 112
    hand_size: int = 64
    hand_scale: float = 1.5
    min_box: float = 0.08
    max_box: float = 0.6
    smooth_window: int = 5
    max_gap: int = 8
    decode_threads: int = 0  # 0 = let FFmpeg choose


@dataclass
class DataConfig:
    train_manifest: Optional[str] = None
    dev_manifest: Optional[str] = None
    clip: ClipConfig = field(default_factory=ClipConfig)
    on_error: str = "skip"  # "skip" (skip and count) or "raise"
    num_workers: int = 0
    pose_dir: Optional[str] = None
    cache_dir: Optional[str] = None  # decoded clips cached here (npz) when set
    allow_outside_root: bool = False  # manifest paths may leave the manifest's folder (absolute, '..', symlinks)
    # stage-1 hand auxiliaries (docs/hand_descriptions.md): a descriptions JSONL (by sample id,
    # `slt-llm describe`) and per-frame hand-teacher sidecars (<stem>.hands.npz, `slt-llm hand-teacher`)
    descriptions: Optional[str] = None
    hand_teacher: bool = False
    hands_dir: Optional[str] = None  # where sidecars are when not beside the videos
    preload: bool = False  # stage 1: keep every decoded training clip in memory after its first load


# -------------------------------------------------------------------------- model
@dataclass
class EncoderConfig:
    """HandCentricEncoder. Shapes: hands (B,T,3,hand_size,hand_size), full
    (B,T,3,full_size,full_size), keypoints (B,T,num_keypoints,3) ->
    tokens (B, ceil(T/temporal_stride), dim)."""

    hand_backbone: str = "cnn"  # "cnn" (small, from scratch) or "resnet18"
    full_backbone: str = "cnn"
    hand_channels: list = field(default_factory=lambda: [32, 64, 128])
    full_channels: list = field(default_factory=lambda: [16, 32, 64])
    num_keypoints: int = 53
    keypoint_hidden: int = 128
    hand_local_keypoints: bool = True  # add wrist-relative, hand-size-normalised hand points (handshape)
    dim: int = 256
    temporal_stride: int = 4
    temporal_kernel: int = 5
    num_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.1
    use_hands: bool = True
    use_full: bool = True
    use_keypoints: bool = True
    backbone_weights: Optional[str] = None  # local torchvision/timm state dict
    # resnet18's BatchNorm: "batch" (batch statistics; one process only) or "frozen" (running
    # statistics, affine trained: identical for any number of processes)
    batchnorm: str = "batch"
    # per-frame hand head (BeyondGloss's HaMeR distillation): crop features -> Linear -> teacher
    # features (this many per hand, the sidecars' D); GELU of it is fed back into the frame
    # features. 0 = no head. Stage 1 sets it from the sidecars when data.hand_teacher is on.
    hand_head_dim: int = 0


@dataclass
class ProjectorConfig:
    type: str = "mlp"  # "mlp" | "linear"
    hidden: Optional[int] = None  # default: LLM hidden size
    num_layers: int = 2


@dataclass
class LLMConfig:
    path: Optional[str] = None  # a local AutoModelForCausalLM directory
    dtype: str = "float32"  # float32 | bfloat16 | float16
    load_in_4bit: bool = False  # QLoRA: NF4 base + double quantization
    bnb_4bit_compute_dtype: str = "bfloat16"
    bnb_4bit_quant_storage: str = "bfloat16"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    use_lora: bool = True
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    target_language: str = "English"
    prompt: str = "Translate the sign language video into {language}.\nVideo: "
    after_video: str = "\nTranslation: "


# ----------------------------------------------------------------------- training
@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # "adamw" | "adamw8bit" (bitsandbytes)
    lr_encoder: float = 3e-4
    lr_projector: float = 3e-4
    lr_lora: float = 2e-4
    lr_head: float = 1e-3  # stage-1 heads and temperature
    weight_decay: float = 0.01
    warmup_steps: int = 50
    schedule: str = "cosine"  # cosine | constant
    max_grad_norm: float = 1.0


@dataclass
class TrainConfig:
    run_dir: str = "runs/slt"
    seed: int = 0
    # the random batch order's seed (None = seed): two runs with the same seed (model init,
    # dropout) and another data_seed differ only in their batches (a random-vs-random control)
    data_seed: Optional[int] = None
    epochs: int = 10
    max_steps: Optional[int] = None  # overrides epochs when set
    batch_size: int = 8  # per process
    grad_accum: int = 1
    mixed_precision: str = "no"  # no | bf16 | fp16
    log_every: int = 10
    save_every: int = 200
    eval_every: int = 200  # dev BLEU-4 (greedy); selects the best model
    keep_checkpoints: int = 2
    deepspeed: Optional[str] = None  # path to a ds_configs/*.json
    num_machines: Optional[int] = None  # machines the run must span (checked at start, one-line error if alone)
    init_encoder: Optional[str] = None  # stage-1 run/model dir to start from
    max_new_tokens: int = 48
    dev_limit: Optional[int] = None  # evaluate on the first N dev samples
    progress: bool = True


@dataclass
class SelectionConfig:
    """SCL-SLT pair selection (stage 1). See slt_llm/contrastive and docs/pair_selection.md."""

    selection: str = "ps"  # "ps" | "random" | "random_fn" (random batches + false-negative mask)
    # "separate" (the paper): a reference model trained with random batches for ref_epochs, then a
    # FRESH model trained with PS from its first epoch; "continuation" (cheap): the first ref_epochs
    # of this run are the reference phase and PS continues from them
    protocol: str = "separate"
    reference_run: Optional[str] = None  # separate: reuse this stage-1 run's reference checkpoints
    ref_epochs: int = 10  # epochs of the random-batch reference run (phase)
    ref_interval: int = 2  # save a reference checkpoint every N epochs
    top_m: int = 64  # candidate negatives kept per anchor (candidates=top_m)
    # "top_m": each anchor's top_m candidates (+ random_share random ones) from the reference
    # trajectories, O(N*M) memory; "all": every unused sample, from dense N x N similarity matrices
    # of the first and last reference checkpoint (contrastive/dense.py; ~1 GB at N = 7,096)
    candidates: str = "top_m"
    # the pair score the curriculum orders by (candidates=all): "delta" (the trajectory, the
    # method), "shuffled" (delta permuted across pairs: a control) or "last" (the last
    # checkpoint's similarity: a static hard-negative control)
    score: str = "delta"
    random_share: float = 0.25  # share of random candidates in greedy search
    schedule: str = "log"  # linear | sqrt | log | easy | hard
    text_fn: bool = True  # ps: mask text false negatives (identical / chrF near-duplicate sentences)
    traj_fn_eps: Optional[float] = 0.02  # ps: s_ij >= s_ii - eps at every checkpoint -> false negative
    fn_file: Optional[str] = None  # JSON {sample id: group}: same group = false negatives (an oracle)
    text_sim_threshold: float = 80.0  # chrF above which sentences are near-duplicates
    hh_threshold: float = 0.9  # high-to-high pairs above this are false negatives
    high_z: Optional[float] = 1.0  # groups: "high" = standardised similarity >= high_z (drift-free)
    high_level: float = 0.5  # groups when high_z is null: absolute cosine separating "high" from "low"
    high_quantile: Optional[float] = None  # if set: per-checkpoint q-quantile thresholds instead
    block_size: int = 4096


@dataclass
class VLPConfig:
    embed_dim: int = 256  # shared space
    pooling: str = "mean"  # text pooling over the frozen LLM: mean | last
    init_temperature: float = 0.07
    text_cache_dir: Optional[str] = None
    # auxiliary loss weights (BeyondGloss): None = 0.5 for descriptions when data.descriptions is
    # set, 0.3 for hand distillation when data.hand_teacher is on, 0 otherwise
    desc_weight: Optional[float] = None
    hand_weight: Optional[float] = None
    # > 0: a projector + the (LoRA) LLM are trained jointly with the contrastive loss on the same
    # batches (loss = contrastive + translation_weight * target-token cross-entropy), as in SCL-SLT
    translation_weight: float = 0.0
    # video-text similarity of the loss, the pair-selection trajectories and dev/test retrieval:
    # "pooled" (cosine of the pooled embeddings) | "fine" (CiCo-style token-wise max, then mean, both
    # directions, over the encoder's temporal tokens and the frozen LLM's token states;
    # docs/pair_selection.md for its memory cost)
    similarity: str = "pooled"


@dataclass
class EvalConfig:
    """How translations are scored. tokenize: sacrebleu's tokenizer for dev BLEU (checkpoint
    selection), its signature and ROUGE-L: 13a (default; space-separated languages), zh (Chinese:
    every CJK character a token, as CSL-Daily is scored), char, intl, none."""

    tokenize: str = "13a"


@dataclass
class SLTConfig:
    """Stage 2 (translation)."""

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class Stage1Config:
    """Stage 1 (selective contrastive alignment)."""

    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    vlp: VLPConfig = field(default_factory=VLPConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)  # used when vlp.translation_weight > 0
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_dir="runs/vlp"))


# ------------------------------------------------------------------ (de)serialise
def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Coerce YAML scalars to the field's type (YAML 1.1 reads ``1e-4`` as a string)."""
    if value is None:
        return None
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else tp
    try:
        if tp is float and isinstance(value, (str, int)) and not isinstance(value, bool):
            return float(value)
        if tp is str and isinstance(value, bool):  # YAML 1.1 reads no/off/yes/on as booleans
            return "yes" if value else "no"  # (train.mixed_precision: no); an override keeps its own spelling
        if tp is int and (isinstance(value, (bool, float)) or (isinstance(value, str) and "." in value)):
            raise ValueError(value)  # 3.5 (or 3.0) for an int field is a mistake, not something to round
        if tp is int and isinstance(value, str):
            return int(value)
        if tp is bool and isinstance(value, str):
            low = value.lower()
            if low in ("true", "yes", "1", "on"):
                return True
            if low in ("false", "no", "0", "off"):
                return False
            raise ValueError(value)
    except ValueError:
        raise ConfigError(f"config key {key}: {value!r} is not a valid {tp.__name__}") from None
    return value


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from a (nested) dict; unknown keys are errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join((where + '.' if where else '') + k for k in unknown)}"
            f" (known: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if _is_dataclass_type(tp):
            kwargs[name] = from_dict(tp, value, f"{where}.{name}" if where else name)
        else:
            kwargs[name] = _coerce(tp, value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def apply_override(cfg, dotted: str, value: Any, *, prefix: str = "", raw: Optional[str] = None) -> None:
    """Set ``cfg.<dotted>`` to ``value`` coerced to the field's type (``prefix``:
    where ``cfg`` sits in a larger config, for messages, e.g. ``"data.clip"``;
    ``raw``: the text the value was parsed from, kept as it is for a string field
    that YAML read as a boolean, e.g. ``train.mixed_precision=no``)."""
    parts = dotted.split(".")
    full = f"{prefix}.{dotted}" if prefix else dotted
    obj = cfg
    for p in parts[:-1]:
        if not dataclasses.is_dataclass(obj) or not hasattr(obj, p):
            raise ConfigError(f"unknown config key {full!r}")
        obj = getattr(obj, p)
    names = {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
    if parts[-1] not in names:
        raise ConfigError(f"unknown config key {full!r}" + (f" (known: {', '.join(sorted(names))})" if names else ""))
    hints = typing.get_type_hints(type(obj))
    tp = hints[parts[-1]]
    if _is_dataclass_type(tp):
        setattr(obj, parts[-1], from_dict(tp, value, full))
    else:
        if isinstance(value, bool) and raw is not None and str in (tp, *typing.get_args(tp)):
            value = raw.strip()
        setattr(obj, parts[-1], _coerce(tp, value, full))


def apply_overrides(cfg, overrides: Optional[list] = None, *, prefix: str = ""):
    """Apply ``key.sub=value`` strings (values parsed as YAML, then coerced like a
    config file's) to ``cfg`` in place; returns ``cfg``. The one override path:
    ``load_config`` and ``translate --clip`` both use it."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        key = key.lstrip("-")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        apply_override(cfg, key, value, prefix=prefix, raw=raw)
    return cfg


# ------------------------------------------------------- the shipped recipes
RECIPE_PREFIX = "recipe:"


def recipes_dir() -> Path:
    """The folder of the YAML recipes shipped with the package (``slt_llm/configs``)."""
    from importlib import resources

    return Path(str(resources.files("slt_llm") / "configs"))


def recipes() -> dict[str, str]:
    """``{name: first line of its header comment}`` of every shipped recipe, by name
    (``demo_stage1`` for ``slt_llm/configs/demo_stage1.yaml``)."""
    out = {}
    for p in sorted(recipes_dir().glob("*.yaml")):
        first = next((line.lstrip("#").strip() for line in p.read_text().splitlines() if line.startswith("#")), "")
        out[p.stem] = first
    return out


def recipe_path(name: str) -> Path:
    """The file of the shipped recipe ``name`` (with or without ``recipe:`` and ``.yaml``);
    ConfigError naming the shipped ones when there is no such recipe."""
    stem = name[len(RECIPE_PREFIX):] if name.startswith(RECIPE_PREFIX) else name
    stem = stem[:-len(".yaml")] if stem.endswith(".yaml") else stem
    p = recipes_dir() / f"{stem}.yaml"
    if "/" in stem or "\\" in stem or not p.is_file():
        raise ConfigError(f"{RECIPE_PREFIX}{stem}: no such recipe (shipped: {', '.join(recipes())}; "
                          f"`slt-llm recipes` lists them)")
    return p


# ------------------------------------------------------- the shipped DeepSpeed JSONs
def ds_configs_dir() -> Path:
    """The folder of the DeepSpeed JSONs and ``accelerate launch`` configs shipped with the
    package (``slt_llm/ds_configs``; ``ds_configs/`` in a checkout points at it)."""
    from importlib import resources

    return Path(str(resources.files("slt_llm") / "ds_configs"))


def resolve_deepspeed_path(path: str | os.PathLike, config_dir: Optional[str | os.PathLike] = None) -> str:
    """Where a DeepSpeed JSON named ``path`` is, so launches work from any folder.

    An absolute path is kept. A relative one is looked up, in order: in the working
    folder (kept as written), beside the config file that named it (``config_dir``),
    then among the shipped copies (``ds_configs/zero3.json`` or ``zero3.json`` ->
    :func:`ds_configs_dir` ``/zero3.json``). When none has it, ``path`` comes back as
    written (the check then says "not found" naming it)."""
    p = Path(path)
    if p.is_absolute() or p.is_file():
        return str(path)
    if config_dir is not None and (Path(config_dir) / p).is_file():
        return str((Path(config_dir) / p).resolve())
    shipped = ds_configs_dir()
    parts = p.parts[1:] if p.parts and p.parts[0] == "ds_configs" else p.parts
    for cand in (shipped.joinpath(*parts) if parts else None, shipped / p.name):
        if cand is not None and cand.is_file():
            return str(cand.resolve())
    return str(path)


def load_config(cls, path: Optional[str] = None, overrides: Optional[list] = None):
    """Load ``cls`` from a YAML/JSON file, then apply ``key.sub=value`` overrides.
    ``path`` may name a shipped recipe, ``recipe:NAME`` (:func:`recipe_path`).

    Relative paths inside the file are kept as written (relative to the working
    directory, like every path on a command line), except ``train.deepspeed``: a
    DeepSpeed JSON the working folder lacks is taken from beside the file when it
    is there (:func:`resolve_deepspeed_path`; the shipped copies are the last
    resort, looked up where the JSON is read).
    """
    data: dict = {}
    if path is not None and str(path).startswith(RECIPE_PREFIX):
        path = str(recipe_path(str(path)))
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            text = p.read_text()
            data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
        except (yaml.YAMLError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
        data = data or {}
    cfg = from_dict(cls, data, "")
    named = ((data.get("train") or {}) if isinstance(data, dict) else {}).get("deepspeed")
    if path is not None and isinstance(named, str) and getattr(getattr(cfg, "train", None), "deepspeed", None):
        if not Path(named).is_absolute() and not Path(named).is_file() \
                and (Path(path).parent / named).is_file():
            cfg.train.deepspeed = str((Path(path).parent / named).resolve())
    return apply_overrides(cfg, overrides)


def save_config(cfg, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


# ------------------------------------------------------- clip settings of a model
CLIP_FILE = "clip.yaml"


def write_clip_settings(folder: str | Path, clip: Optional[ClipConfig]) -> None:
    """Record the ``ClipConfig`` a model was trained with in its folder
    (``clip.yaml``, the one place for stage-1 and stage-2 model folders)."""
    if clip is None:
        return
    tmp = Path(folder) / (CLIP_FILE + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(clip), sort_keys=False))
    tmp.replace(Path(folder) / CLIP_FILE)


def read_clip_settings(folder: str | Path, *, meta: Optional[dict] = None) -> Optional[ClipConfig]:
    """The ``ClipConfig`` recorded in a model folder, or None when it records none.

    ``clip.yaml``; folders written before it existed kept the settings as
    ``clip`` in ``meta.json`` (stage 2) or ``vlp_config.yaml`` (stage 1), read
    as a fallback. ``meta``: the folder's ``meta.json`` already read by the
    caller (then that file is not read again). ConfigError for an unreadable
    or invalid record."""
    d = Path(folder)
    raw = None
    try:
        if (d / CLIP_FILE).is_file():
            raw = yaml.safe_load((d / CLIP_FILE).read_text()) or {}
        elif meta is not None:
            raw = meta.get("clip")
        elif (d / "meta.json").is_file():
            raw = (json.loads((d / "meta.json").read_text()) or {}).get("clip")
        elif (d / "vlp_config.yaml").is_file():
            raw = (yaml.safe_load((d / "vlp_config.yaml").read_text()) or {}).get("clip")
    except (OSError, yaml.YAMLError, json.JSONDecodeError, AttributeError) as e:
        raise ConfigError(f"{d}: unreadable clip settings ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    return None if raw is None else from_dict(ClipConfig, raw, "data.clip")
