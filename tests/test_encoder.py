"""HandCentricEncoder: token shapes/mask, padding invariance, resnet18 state dicts, projector."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from slt_llm.config import EncoderConfig, ProjectorConfig
from slt_llm.errors import ConfigError, InputError
from slt_llm.models.encoder import HandCentricEncoder, ResNet18
from slt_llm.models.projector import Projector

SMALL = dict(dim=32, hand_channels=[8, 16], full_channels=[8, 16], keypoint_hidden=16, num_layers=1, num_heads=2)


def make_batch(B, T, hand=32, full=48, lengths=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = {
        "left": torch.randint(0, 256, (B, T, 3, hand, hand), dtype=torch.uint8, generator=g),
        "right": torch.randint(0, 256, (B, T, 3, hand, hand), dtype=torch.uint8, generator=g),
        "full": torch.randint(0, 256, (B, T, 3, full, full), dtype=torch.uint8, generator=g),
        "keypoints": torch.randn(B, T, 53, 3, generator=g),
    }
    lengths = torch.tensor(lengths if lengths is not None else [T] * B)
    b["frame_mask"] = torch.arange(T)[None] < lengths[:, None]
    b["lengths"] = lengths
    return b


@pytest.mark.parametrize("stride,kernel", [(4, 5), (4, 4), (2, 3), (1, 1)])
def test_token_count_and_mask(stride, kernel):
    enc = HandCentricEncoder(EncoderConfig(temporal_stride=stride, temporal_kernel=kernel, **SMALL)).eval()
    lengths = [13, 7, 1]
    tokens, mask = enc(make_batch(3, 13, lengths=lengths))
    assert tokens.shape == (3, math.ceil(13 / stride), 32)
    assert mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [math.ceil(L / stride) for L in lengths]
    assert torch.all(tokens[~mask] == 0)


def test_padded_frames_do_not_change_valid_tokens():
    enc = HandCentricEncoder(EncoderConfig(**SMALL)).eval()
    batch = make_batch(2, 14, lengths=[14, 9], seed=1)
    # garbage in the padded frames must not matter
    batch["full"][1, 9:] = 255
    batch["keypoints"][1, 9:] = 1e3
    tokens, mask = enc(batch)
    alone = {k: v[1:2, :9] if torch.is_tensor(v) and v.dim() > 1 else v[1:2] for k, v in batch.items()}
    t1, m1 = enc(alone)
    assert m1.sum() == mask[1].sum() == 3
    torch.testing.assert_close(t1[0], tokens[1, :3], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("toggle", ["use_hands", "use_full", "use_keypoints"])
def test_stream_toggles(toggle):
    enc = HandCentricEncoder(EncoderConfig(**{**SMALL, toggle: False}))
    tokens, _ = enc(make_batch(1, 8))
    assert tokens.shape == (1, 2, 32)
    tokens.sum().backward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if "fuse" in n)


def test_hands_share_weights_and_side_embedding_matters():
    enc = HandCentricEncoder(EncoderConfig(**SMALL)).eval()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in enc.modules()) == 2 * 3  # one hand CNN + one full CNN
    b = make_batch(1, 4)
    b["right"] = b["left"].clone()
    feats = enc.frame_features(b, b["frame_mask"])
    with torch.no_grad():
        enc.side_embed.zero_()
    feats0 = enc.frame_features(b, b["frame_mask"])
    assert not torch.allclose(feats, feats0)


def test_default_encoder_is_small():
    n = sum(p.numel() for p in HandCentricEncoder(EncoderConfig()).parameters())
    assert 1_000_000 < n < 3_500_000


def test_bad_configs():
    with pytest.raises(ConfigError, match="all false"):
        HandCentricEncoder(EncoderConfig(use_hands=False, use_full=False, use_keypoints=False))
    with pytest.raises(ConfigError, match="unknown backbone"):
        HandCentricEncoder(EncoderConfig(hand_backbone="vit"))


def test_resnet18_keys_and_weight_loading(tmp_path):
    from safetensors.torch import save_file

    ref = ResNet18()
    keys = set(ref.state_dict())
    # torchvision naming: conv1, bn1 (+num_batches_tracked), layerN.M.{conv,bn}{1,2}, downsample.{0,1}
    assert "layer2.0.downsample.0.weight" in keys and "layer4.1.bn2.running_var" in keys and "bn1.num_batches_tracked" in keys
    assert sum(v.numel() for k, v in ref.state_dict().items() if "running" not in k and "num_batches" not in k) == 11_176_512
    torch.manual_seed(3)
    src = ResNet18()
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    sd["fc.weight"], sd["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)  # classifier ignored
    torch.save(sd, tmp_path / "r18.pth")
    save_file(sd, str(tmp_path / "r18.safetensors"))
    cfg = EncoderConfig(**{**SMALL, "hand_backbone": "resnet18", "full_backbone": "resnet18"})
    for f in ("r18.pth", "r18.safetensors"):
        enc = HandCentricEncoder(cfg)
        assert enc.load_backbone_weights(tmp_path / f) == ["hand", "full"]
        for k, v in src.state_dict().items():
            assert torch.equal(enc.hand_backbone.state_dict()[k], v) and torch.equal(enc.full_backbone.state_dict()[k], v)
    tokens, mask = enc.eval()(make_batch(1, 5, hand=64, full=64))
    assert tokens.shape == (1, 2, 32)
    # strict: a missing key and a wrong shape are errors naming the file
    bad = dict(sd)
    del bad["layer3.0.conv1.weight"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="bad.pth.*missing"):
        enc.load_backbone_weights(tmp_path / "bad.pth")
    bad = dict(sd)
    bad["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(InputError, match="shape mismatch for conv1.weight"):
        enc.load_backbone_weights(tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pth"):
        enc.load_backbone_weights(tmp_path / "junk.pth")
    with pytest.raises(ConfigError, match="no resnet18 backbone"):
        HandCentricEncoder(EncoderConfig(**SMALL)).load_backbone_weights(tmp_path / "r18.pth")


def test_projector():
    x = torch.randn(2, 5, 32)
    mlp = Projector(ProjectorConfig(type="mlp", num_layers=3, hidden=48), 32, 64)
    assert mlp(x).shape == (2, 5, 64)
    assert [m.out_features for m in mlp.modules() if isinstance(m, torch.nn.Linear)] == [48, 48, 64]
    lin = Projector(ProjectorConfig(type="linear"), 32, 64)
    assert sum(isinstance(m, torch.nn.Linear) for m in lin.modules()) == 1
    with pytest.raises(ConfigError, match="projector.type"):
        Projector(ProjectorConfig(type="qformer"), 32, 64)


def test_hand_local_features_see_handshape_not_place():
    """Wrist-relative, extent-normalised hand points: moving or scaling the hand
    changes nothing, changing a finger does, a missing hand gives zeros."""
    from slt_llm.models.encoder import hand_local

    g = torch.Generator().manual_seed(0)
    hand = torch.cat([torch.rand(4, 21, 2, generator=g) * 0.3, torch.ones(4, 21, 1)], -1)
    moved = hand.clone()
    moved[..., :2] = hand[..., :2] * 1.7 + torch.tensor([0.5, -0.2])
    assert torch.allclose(hand_local(hand), hand_local(moved), atol=1e-5)
    bent = hand.clone()
    bent[:, 8, :2] += 0.05  # index fingertip
    assert (hand_local(bent) - hand_local(hand)).abs().amax() > 0.05
    gone = hand.clone()
    gone[..., 2] = 0
    assert torch.count_nonzero(hand_local(gone)) == 0
    assert hand_local(hand).shape == (4, 42)


def test_frozen_batchnorm_makes_a_sample_independent_of_its_batch_and_batch_bn_is_refused_under_dp():
    """resnet18 BatchNorm policy: ``frozen`` (running statistics) gives each sample the same output
    whatever else is in its batch (so W processes x b == 1 x W*b); ``batch`` does not, and is
    refused for more than one process with a one-line error."""
    from slt_llm.models.encoder import ResNet18, build_backbone, check_data_parallel

    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    frozen = build_backbone("resnet18", [], "hand", "frozen").train()
    with torch.no_grad():  # statistics as if from pretrained weights
        for m in frozen.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    whole, halves = frozen(x), torch.cat([frozen(x[:2]), frozen(x[2:])])
    torch.testing.assert_close(whole, halves, rtol=1e-5, atol=1e-6)
    before = frozen.bn1.running_mean.clone()
    frozen(x)
    assert torch.equal(frozen.bn1.running_mean, before)  # never updated
    whole.sum().backward()
    assert frozen.bn1.weight.grad is not None  # the affine part trains
    batch = ResNet18().train()
    batch.load_state_dict(frozen.state_dict())  # same keys
    assert not torch.allclose(batch(x), torch.cat([batch(x[:2]), batch(x[2:])]), atol=1e-4)

    # data parallelism as DDP / DeepSpeed compute it: 2 "ranks" x 2 samples, each rank's gradient
    # of its own mean loss, averaged == 1 process x 4 samples (frozen); not with batch statistics
    def grads(net, parts):
        net.zero_grad()
        for p in parts:
            (net(p).pow(2).sum(1).mean() / len(parts)).backward()
        return [q.grad.clone() for q in net.parameters()]

    for net, same in ((frozen, True), (batch, False)):
        one, two = grads(net, [x]), grads(net, [x[:2], x[2:]])
        close = all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(one, two))
        assert close == same, net.bn1

    cfg = EncoderConfig(hand_backbone="resnet18", full_backbone="cnn")
    check_data_parallel(cfg, 1)
    with pytest.raises(ConfigError, match="encoder.batchnorm=batch with a resnet18 hand backbone on 2 processes"):
        check_data_parallel(cfg, 2)
    check_data_parallel(dataclasses.replace(cfg, batchnorm="frozen"), 2)
    check_data_parallel(EncoderConfig(), 8)  # the small cnn uses GroupNorm
    with pytest.raises(ConfigError, match="encoder.batchnorm must be"):
        build_backbone("resnet18", [], "hand", "sync")


def test_backbone_weights_reach_the_stage1_encoder(tmp_path):
    """encoder.backbone_weights is honoured by the stage-1 model (VLPModel builds through
    build_encoder), and a saved stage-1 folder reloads its own trained weights, not the file."""
    from safetensors.torch import save_file

    from slt_llm.config import VLPConfig
    from slt_llm.models.vlp import VLPModel

    torch.manual_seed(3)
    src = ResNet18()
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    cfg = EncoderConfig(hand_backbone="resnet18", full_backbone="cnn", full_channels=[4, 8], dim=16,
                        keypoint_hidden=8, num_layers=1, num_heads=2, backbone_weights=str(path), batchnorm="frozen")
    m = VLPModel(cfg, VLPConfig(embed_dim=8), 12)
    for k, v in src.state_dict().items():
        assert torch.equal(m.encoder.hand_backbone.state_dict()[k], v), k
    with torch.no_grad():
        m.encoder.hand_backbone.conv1.weight.add_(1.0)  # "trained"
    m.save_pretrained(tmp_path / "s1")
    again = VLPModel.from_pretrained(tmp_path / "s1")
    assert torch.equal(again.encoder.hand_backbone.conv1.weight, m.encoder.hand_backbone.conv1.weight)


def test_backbones_come_from_one_registry():
    """encoder.*_backbone names a registered builder; an unknown name is one ConfigError listing
    the registered ones; a new backbone registers once and is built, checked and loaded from there."""
    from slt_llm.models import encoder as E

    assert {"cnn", "resnet18"} <= set(E.BACKBONES)
    with pytest.raises(ConfigError, match=r"encoder.full_backbone: unknown backbone 'vit' \(registered: cnn, resnet18"):
        HandCentricEncoder(EncoderConfig(full_backbone="vit"))
    with pytest.raises(ConfigError, match="unknown backbone 'vit'"):
        E.check_data_parallel(EncoderConfig(hand_backbone="vit"), 2)

    seen = []

    def build(channels, norm):
        seen.append(norm)
        net = E.SmallCNN(channels)
        net.extra_bn = norm(4)
        return net

    E.register_backbone("test_bn", E.BackboneSpec(build=build, uses_batchnorm=True))
    try:
        enc = HandCentricEncoder(EncoderConfig(hand_backbone="test_bn", full_backbone="cnn", batchnorm="frozen",
                                               hand_channels=[8, 8], full_channels=[8, 8]))
        assert seen == [E.FrozenStatsBatchNorm2d] and enc.hand_backbone.out_dim == 8
        with pytest.raises(ConfigError, match="batchnorm=batch with a test_bn hand backbone on 2 processes"):
            E.check_data_parallel(EncoderConfig(hand_backbone="test_bn"), 2)
        with pytest.raises(ConfigError, match="no resnet18 backbone"):
            enc.load_backbone_weights("/nonexistent.pth")
    finally:
        del E.BACKBONES["test_bn"]
