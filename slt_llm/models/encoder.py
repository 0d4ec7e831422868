"""HandCentricEncoder: clip batch -> visual tokens + mask.

Per frame (all valid frames of the batch processed as ONE 2D batch):
  left/right hand crops (B,T,3,h,h) uint8 -> shared hand backbone (one set of
      weights for both hands) -> (N, Ch) + learned left/right embedding
  full frame (B,T,3,f,f) uint8 -> lighter full-frame backbone -> (N, Cf)
  canonical keypoints (B,T,53,3) -> flatten (159) [+ hand-local handshape points
      (2 x 42, see hand_local) when hand_local_keypoints] -> MLP -> (N, keypoint_hidden)
  [hand head (``hand_head_dim`` > 0): each hand's crop feature (+ side embedding)
      -> Linear(Ch, D) = the per-frame hand prediction (regressed to teacher
      features by ``hand_distillation_loss``); GELU of it joins the concat
      (2 x D), so the head's output is fed back into the frame features]
  concat -> Linear + LayerNorm -> (B,T,dim)        (padded frames are zero)
Over time:
  Conv1d(dim, dim, temporal_kernel, stride=temporal_stride), fixed left pad
      (k-1)//2 and zero right pad -> (B, T', dim), T' = ceil(T / stride)
  + sinusoidal positions, ``num_layers`` pre-norm transformer layers with a key
      padding mask -> tokens (B,T',dim), token_mask (B,T') bool (true = valid).

Padded frames do not change the tokens of valid positions: backbones never see
them (only ``frame_mask`` frames are gathered), their fused features are zero
(the same as the temporal conv's zero padding) and padded tokens are masked
out of attention. Token i of a clip of L frames is valid iff i < ceil(L/stride).

Cost (default config, 64 px hands, 112 px full frame): ~2.3 M parameters;
about 3 x 6 MFLOP of CNN per frame, so a 64-frame clip is ~1.2 GFLOP forward.

Backbones come from one registry (``BACKBONES``, :func:`register_backbone`; each a
``BackboneSpec``: its builder, whether it has BatchNorm, its weight loader): "cnn"
(small, random init, GroupNorm so a sample never depends on the rest of its batch)
or "resnet18" (torchvision key names; load weights as a separate step with
:func:`load_backbone_weights`). An unknown name is one ConfigError listing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from slt_llm.config import EncoderConfig
from slt_llm.data.layout import LEFT_HAND, RIGHT_HAND
from slt_llm.errors import ConfigError, InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------- backbones
class SmallCNN(nn.Module):
    """Conv3x3(stride 2) + GroupNorm + GELU per entry of ``channels``, a 3x3
    refinement conv on the last stage, global average pool.
    (N,3,S,S) float -> (N, channels[-1])."""

    def __init__(self, channels: list, in_ch: int = 3):
        super().__init__()
        if not channels:
            raise ConfigError("encoder: backbone channel list is empty")
        layers: list[nn.Module] = []
        c_prev = in_ch
        for c in channels:
            layers += [nn.Conv2d(c_prev, c, 3, stride=2, padding=1, bias=False), nn.GroupNorm(_groups(c), c), nn.GELU()]
            c_prev = c
        layers += [nn.Conv2d(c_prev, c_prev, 3, padding=1, bias=False), nn.GroupNorm(_groups(c_prev), c_prev), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.out_dim = c_prev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last input: oneDNN's convolutions (forward and backward) run ~20% faster on it
        # at these small channel counts (docs/perf/step.md); the weights and their gradients keep
        # the default layout (autograd's layout contract), so checkpoints and ZeRO are unaffected
        return self.body(x.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3))


def _groups(c: int) -> int:
    for g in (8, 4, 2):
        if c % g == 0:
            return g
    return 1


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always normalises with its running statistics (never with the
    batch's, never updating them); the affine weight and bias still train. Same
    state-dict keys as ``nn.BatchNorm2d``, so torchvision weights load as they are.
    A sample's output then never depends on the other samples of its batch: W
    processes x batch b compute exactly what one process with batch W*b does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


BATCHNORM = {"batch": nn.BatchNorm2d, "frozen": FrozenStatsBatchNorm2d}


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock`` (same attribute names, same state-dict keys)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = norm(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), norm(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 trunk whose state-dict keys match torchvision's / timm's
    ``resnet18`` (conv1, bn1, layer1..4, fc); the classifier ``fc`` is not
    built (its keys are accepted and ignored when loading).
    (N,3,S,S) -> (N,512); ~11.2 M parameters, 1.8 GFLOP at 224 px
    (0.15 GFLOP at 64 px)."""

    out_dim = 512

    def __init__(self, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        planes = [64, 128, 256, 512]
        inplanes = 64
        for i, p in enumerate(planes):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inplanes, p, stride, norm), BasicBlock(p, p, 1, norm)))
            inplanes = p

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


# ------------------------------------------------------------- backbone registry
@dataclass(frozen=True)
class BackboneSpec:
    """How a backbone named in ``encoder.hand_backbone`` / ``full_backbone`` is built.

    ``build(channels, norm)`` -> an ``nn.Module`` with ``out_dim`` mapping (N,3,S,S) to
    (N, out_dim); ``norm`` is the BatchNorm class ``encoder.batchnorm`` picked, or None for
    a backbone without BatchNorm (``uses_batchnorm`` False: no ``encoder.batchnorm``
    check, safe under data parallelism as it is). ``load_weights(module, state_dict,
    path)`` loads pretrained weights strictly (``encoder.backbone_weights``), None when the
    backbone takes none."""

    build: Callable[[list, Optional[type]], nn.Module]
    uses_batchnorm: bool = False
    load_weights: Optional[Callable[[nn.Module, dict, Path], None]] = None


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, spec: BackboneSpec) -> BackboneSpec:
    """Make ``name`` a backbone ``encoder.*_backbone`` may name (one place per backbone)."""
    BACKBONES[name] = spec
    return spec


def backbone_spec(kind: str, what: str = "hand") -> BackboneSpec:
    """The registered ``BackboneSpec`` of ``kind``; one ConfigError listing the registered ones otherwise."""
    spec = BACKBONES.get(kind)
    if spec is None:
        raise ConfigError(f"encoder.{what}_backbone: unknown backbone {kind!r} "
                          f"(registered: {', '.join(sorted(BACKBONES))})")
    return spec


def build_backbone(kind: str, channels: list, what: str, batchnorm: str = "batch") -> nn.Module:
    """Build the backbone registered as ``kind`` (``what``: "hand" or "full", for messages)."""
    spec = backbone_spec(kind, what)
    norm = None
    if spec.uses_batchnorm:
        if batchnorm not in BATCHNORM:
            raise ConfigError(f"encoder.batchnorm must be {' or '.join(BATCHNORM)} (got {batchnorm!r})")
        norm = BATCHNORM[batchnorm]
    return spec.build(list(channels), norm)


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "backbone weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any parse failure is bad input
        raise InputError(path, f"cannot read backbone weights ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(path, "not a state dict of tensors")
    return sd


def load_resnet18_state_dict(module: ResNet18, sd: dict, path) -> None:
    """Strictly load a torchvision/timm resnet18 state dict into ``module``:
    every trunk key must be present with the right shape; ``fc.*`` is ignored;
    a ``module.`` prefix (DataParallel) is stripped. Errors name the file."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) e.g. {unexpected[:3]}")
        raise InputError(path, "not a resnet18 state dict: " + "; ".join(parts))
    bad = [k for k in own if tuple(own[k].shape) != tuple(sd[k].shape)]
    if bad:
        k = bad[0]
        raise InputError(path, f"shape mismatch for {k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


register_backbone("cnn", BackboneSpec(build=lambda channels, norm: SmallCNN(channels)))
register_backbone("resnet18", BackboneSpec(build=lambda channels, norm: ResNet18(norm), uses_batchnorm=True,
                                           load_weights=load_resnet18_state_dict))


# ----------------------------------------------------------------------- encoder
def sinusoidal_positions(n: int, dim: int, device=None) -> torch.Tensor:
    """(n, dim) fixed sin/cos position table."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]
    i = torch.arange(0, dim, 2, device=device, dtype=torch.float32)
    div = torch.exp(-math.log(10000.0) * i / dim)
    pe = torch.zeros(n, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe


def hand_local(hand: torch.Tensor) -> torch.Tensor:
    """Handshape features: (N, 21, 3) body-normalised hand points (x, y, conf)
    -> (N, 42) points relative to the wrist, divided by the hand's extent (its
    largest wrist distance), zero where the hand is missing. In body-normalised
    coordinates a whole hand spans ~0.3 shoulder widths and finger
    configurations differ by a few hundredths; in hand-local coordinates they
    differ by tenths, so the MLP sees the handshape as clearly as the place."""
    xy, conf = hand[..., :2], hand[..., 2:3]
    visible = (conf > 0).to(xy.dtype)
    rel = (xy - xy[:, :1]) * visible * visible[:, :1]  # (N, 21, 2)
    extent = rel.norm(dim=-1).amax(dim=1, keepdim=True).clamp_min(1e-3)  # (N, 1)
    return (rel / extent.unsqueeze(-1)).flatten(1)


class HandCentricEncoder(nn.Module):
    """See the module docstring. ``forward(batch) -> (tokens (B,T',dim),
    token_mask (B,T') bool)``; batch keys per ``slt_llm.data.layout``
    (``left``, ``right``, ``full`` uint8, ``keypoints`` float, ``frame_mask``)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        if not (cfg.use_hands or cfg.use_full or cfg.use_keypoints):
            raise ConfigError("encoder: use_hands, use_full and use_keypoints are all false")
        if cfg.temporal_stride < 1 or cfg.temporal_kernel < 1:
            raise ConfigError("encoder: temporal_stride and temporal_kernel must be >= 1")
        if cfg.dim % cfg.num_heads:
            raise ConfigError(f"encoder: dim {cfg.dim} not divisible by num_heads {cfg.num_heads}")
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        fused = 0
        if cfg.use_hands:
            self.hand_backbone = build_backbone(cfg.hand_backbone, list(cfg.hand_channels), "hand", cfg.batchnorm)
            hd = self.hand_backbone.out_dim
            self.side_embed = nn.Parameter(torch.zeros(2, hd))  # 0 = left, 1 = right
            nn.init.normal_(self.side_embed, std=0.02)
            fused += 2 * hd
            if cfg.hand_head_dim:
                self.hand_head = nn.Linear(hd, cfg.hand_head_dim)
                fused += 2 * cfg.hand_head_dim
        elif cfg.hand_head_dim:
            raise ConfigError("encoder.hand_head_dim needs encoder.use_hands=true (the head reads the hand crops)")
        if cfg.use_full:
            self.full_backbone = build_backbone(cfg.full_backbone, list(cfg.full_channels), "full", cfg.batchnorm)
            fused += self.full_backbone.out_dim
        if cfg.use_keypoints:
            kin = cfg.num_keypoints * 3 + (2 * 21 * 2 if cfg.hand_local_keypoints else 0)
            self.keypoint_mlp = nn.Sequential(
                nn.Linear(kin, cfg.keypoint_hidden), nn.GELU(), nn.Linear(cfg.keypoint_hidden, cfg.keypoint_hidden)
            )
            fused += cfg.keypoint_hidden
        self.fuse = nn.Sequential(nn.Linear(fused, cfg.dim), nn.LayerNorm(cfg.dim), nn.GELU())
        self.temporal = nn.Conv1d(cfg.dim, cfg.dim, cfg.temporal_kernel, stride=cfg.temporal_stride)
        self.temporal_norm = nn.LayerNorm(cfg.dim)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.num_heads, dim_feedforward=4 * cfg.dim, dropout=cfg.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False) if cfg.num_layers else None
        self.out_norm = nn.LayerNorm(cfg.dim)
        self.dim = cfg.dim

    # -- helpers
    def _images(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N,3,S,S) -> normalised float (N,3,S,S)."""
        if x.dtype == torch.uint8:  # one pass: x / (255 std) - mean / std, not three
            scale = 1.0 / (255.0 * self.pixel_std)
            return torch.addcmul(-self.pixel_mean / self.pixel_std, x.to(self.pixel_mean.dtype), scale)
        return (x.float() - self.pixel_mean) / self.pixel_std

    def num_tokens(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid tokens per clip: ceil(L / stride)."""
        s = self.cfg.temporal_stride
        return torch.div(lengths + s - 1, s, rounding_mode="floor")

    def frame_features(self, batch: dict, frame_mask: torch.Tensor, *, return_hand: bool = False):
        """Fused per-frame features (B,T,dim); zero at padded frames. With ``return_hand``:
        ``(features, hand_pred (B,T,2,D) [left, right] or None without a hand head)``."""
        B, T = frame_mask.shape
        idx = frame_mask.reshape(-1).nonzero(as_tuple=True)[0]  # (N,) valid frames only
        feats = []
        hand_pred = None
        if self.cfg.use_hands:
            N = idx.numel()
            left = batch["left"].reshape(B * T, *batch["left"].shape[2:])[idx]
            right = batch["right"].reshape(B * T, *batch["right"].shape[2:])[idx]
            h = self.hand_backbone(self._images(torch.cat([left, right], 0)))  # (2N, Ch), one pass, shared weights
            hl, hr = h[:N] + self.side_embed[0], h[N:] + self.side_embed[1]
            feats += [hl, hr]
            if self.cfg.hand_head_dim:
                pred = self.hand_head(torch.cat([hl, hr], 0))  # (2N, D): the per-frame hand prediction
                feats += [F.gelu(pred[:N]), F.gelu(pred[N:])]  # fed back into the frame features
                if return_hand:
                    D = pred.shape[1]
                    full = pred.new_zeros(B * T, 2, D)
                    full = full.index_copy(0, idx, torch.stack([pred[:N], pred[N:]], 1))
                    hand_pred = full.view(B, T, 2, D)
        if self.cfg.use_full:
            full = batch["full"].reshape(B * T, *batch["full"].shape[2:])[idx]
            feats.append(self.full_backbone(self._images(full)))  # (N, Cf)
        if self.cfg.use_keypoints:
            kp = batch["keypoints"].reshape(B * T, *batch["keypoints"].shape[2:])[idx].float()  # (N, J, 3)
            parts = [kp.flatten(1)]  # (N, J*3) body-normalised coordinates + confidence
            if self.cfg.hand_local_keypoints:
                parts += [hand_local(kp[:, LEFT_HAND]), hand_local(kp[:, RIGHT_HAND])]  # 2 x (N, 42)
            feats.append(self.keypoint_mlp(torch.cat(parts, -1)))
        fused = self.fuse(torch.cat(feats, -1))  # (N, dim)
        out = fused.new_zeros(B * T, self.dim)
        out = out.index_copy(0, idx, fused).view(B, T, self.dim)
        return (out, hand_pred) if return_hand else out

    def forward(self, batch: dict, *, return_hand: bool = False):
        """-> ``(tokens (B,T',dim), token_mask (B,T'))``; with ``return_hand`` a third item, the
        per-frame hand prediction (B,T,2,D) (None without a hand head)."""
        ref = batch["full"] if "full" in batch else batch["keypoints"]
        B, T = ref.shape[:2]
        frame_mask = batch.get("frame_mask")
        if frame_mask is None:
            frame_mask = torch.ones(B, T, dtype=torch.bool, device=ref.device)
        frame_mask = frame_mask.bool()
        lengths = batch.get("lengths")
        if lengths is None:
            lengths = frame_mask.sum(1)
        x, hand_pred = self.frame_features(batch, frame_mask, return_hand=True)  # (B,T,dim), (B,T,2,D)|None
        s, k = self.cfg.temporal_stride, self.cfg.temporal_kernel
        t_out = -(-T // s)
        pl = (k - 1) // 2
        pr = max(0, (t_out - 1) * s + k - T - pl)
        x = F.pad(x.transpose(1, 2), (pl, pr))  # (B,dim,T+pl+pr)
        x = self.temporal(x)[:, :, :t_out].transpose(1, 2)  # (B,T',dim)
        x = self.temporal_norm(x)
        token_mask = torch.arange(t_out, device=x.device)[None, :] < self.num_tokens(lengths.to(x.device))[:, None]
        x = x + sinusoidal_positions(t_out, self.dim, x.device).to(x.dtype)
        if self.transformer is not None:
            x = self.transformer(x, src_key_padding_mask=~token_mask)
        x = self.out_norm(x) * token_mask[..., None].to(x.dtype)
        return (x, token_mask, hand_pred) if return_hand else (x, token_mask)

    # -- pretrained backbones (a separate step)
    def load_backbone_weights(self, path, which: str = "both") -> list[str]:
        """Load a local torchvision/timm resnet18 state dict (.pth via
        ``torch.load(weights_only=True)`` or .safetensors) into the resnet18
        backbone(s) (``which``: "hand", "full" or "both"). Strict key and shape
        check; raises InputError naming the file. Returns the names loaded."""
        path = Path(path)
        targets = []
        for name, kind, used in (("hand", self.cfg.hand_backbone, self.cfg.use_hands),
                                 ("full", self.cfg.full_backbone, self.cfg.use_full)):
            if which in (name, "both") and used and backbone_spec(kind, name).load_weights is not None:
                targets.append((name, kind, getattr(self, f"{name}_backbone")))
        if not targets:
            loadable = [k for k, s in sorted(BACKBONES.items()) if s.load_weights is not None]
            raise ConfigError(f"{path}: no {'/'.join(loadable)} backbone to load into "
                              f"(set encoder.hand_backbone/full_backbone={'|'.join(loadable)})")
        sd = _read_state_dict(path)
        for name, kind, m in targets:
            BACKBONES[kind].load_weights(m, sd, path)
        return [n for n, _, _ in targets]


def check_data_parallel(cfg: EncoderConfig, world_size: int) -> None:
    """Refuse (one-line ConfigError) a resnet18 backbone with batch-statistics BatchNorm
    under data parallelism: each process would normalise by its own slice of the global
    batch, so W x b would not train like 1 x W*b (and SyncBatchNorm needs CUDA)."""
    used = [(w, k) for w, k in (("hand", cfg.hand_backbone), ("full", cfg.full_backbone))
            if (cfg.use_hands if w == "hand" else cfg.use_full) and backbone_spec(k, w).uses_batchnorm]
    if world_size > 1 and used and cfg.batchnorm == "batch":
        kinds = "/".join(dict.fromkeys(k for _, k in used))
        raise ConfigError(f"encoder.batchnorm=batch with a {kinds} {'/'.join(w for w, _ in used)} backbone on {world_size} "
                          "processes: BatchNorm statistics would be per process; set encoder.batchnorm=frozen "
                          "(running statistics, e.g. those of encoder.backbone_weights)")


def hand_distillation_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
                           world_size: int = 1) -> torch.Tensor:
    """Masked L2 to per-frame teacher features (BeyondGloss's HaMeR loss).

    pred, target (B,T,2,D); mask (B,T,2) bool (frames that have that hand; padded frames false).
    Loss = sum over masked (frame, hand) of ||pred - target||^2 / D, divided by the number of
    masked (frame, hand) pairs over ALL ranks, times ``world_size``: the gradient averaged over
    ranks (DDP / DeepSpeed) then equals the one-process gradient of the global batch, even when
    ranks hold different numbers of hand frames. 0 (with a graph) when no frame has a hand.
    Cost O(B*T*D).
    """
    m = mask.to(pred.dtype)  # (B,T,2)
    sq = ((pred - target.to(pred.dtype)) ** 2).mean(-1)  # (B,T,2)
    total = (sq * m).sum()
    count = m.sum().detach()
    if world_size > 1:
        import torch.distributed as dist

        count = count.clone()
        dist.all_reduce(count)
    return total * float(world_size) / count.clamp_min(1.0)


def build_encoder(cfg: EncoderConfig, *, load_weights: bool = True) -> HandCentricEncoder:
    """HandCentricEncoder(cfg), then ``cfg.backbone_weights`` loaded if set."""
    enc = HandCentricEncoder(cfg)
    if load_weights and cfg.backbone_weights:
        enc.load_backbone_weights(cfg.backbone_weights)
    return enc
