"""The one config system: nested typed dataclasses, YAML/JSON files, dotted overrides."""

import json

import pytest

from slt_llm.config import SLTConfig, Stage1Config, load_config, save_config, to_dict
from slt_llm.errors import ConfigError


def test_defaults_and_overrides_get_natural_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("encoder:\n  dim: 64\ntrain:\n  batch_size: 3\n")
    cfg = load_config(
        SLTConfig,
        str(path),
        ["train.max_steps=7", "llm.lora_targets=[q_proj, v_proj]", "optim.lr_lora=1e-4", "llm.load_in_4bit=true"],
    )
    assert cfg.encoder.dim == 64 and cfg.train.batch_size == 3
    assert cfg.train.max_steps == 7
    assert cfg.llm.lora_targets == ["q_proj", "v_proj"]
    assert cfg.optim.lr_lora == pytest.approx(1e-4)
    assert cfg.llm.load_in_4bit is True
    # untouched defaults survive
    assert cfg.encoder.temporal_stride == 4


def test_round_trip_yaml_and_json(tmp_path):
    cfg = load_config(Stage1Config, None, ["selection.top_m=16", "vlp.pooling=last"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(Stage1Config, str(tmp_path / "c.yaml"))
    assert to_dict(again) == to_dict(cfg)
    (tmp_path / "c.json").write_text(json.dumps(to_dict(cfg)))
    assert to_dict(load_config(Stage1Config, str(tmp_path / "c.json"))) == to_dict(cfg)


@pytest.mark.parametrize(
    "text,overrides,fragment",
    [
        ("encoder:\n  dimm: 3\n", [], "encoder.dimm"),
        ("", ["train.nope=1"], "train.nope"),
        ("", ["nokey"], "not key=value"),
        ("encoder: [1, 2\n", [], "not valid YAML"),
        ("", ["train.batch_size=3.5"], "train.batch_size: 3.5 is not a valid int"),
        ("", ["train.batch_size=3.0"], "train.batch_size: 3.0 is not a valid int"),
        ("train:\n  epochs: 2.5\n", [], "train.epochs: 2.5 is not a valid int"),
        ("", ["data.clip.max_frames=\"3.5\""], "data.clip.max_frames: '3.5' is not a valid int"),
        ("", ["train.max_steps=true"], "train.max_steps: True is not a valid int"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, text, overrides, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(SLTConfig, str(path), overrides)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(SLTConfig, str(tmp_path / "missing.yaml"))


def test_translate_clip_overrides_share_the_config_coercion(tmp_path):
    """``translate --clip`` goes through config.apply_overrides: same types, same one-line errors."""
    from slt_llm.config import ClipConfig, write_clip_settings
    from slt_llm.inference.translate import clip_config_of

    write_clip_settings(tmp_path, ClipConfig(max_frames=40, fps=None))
    cfg = clip_config_of(tmp_path, ["max_frames=16", "fps=12", "max_fps=1e1", "smooth_window=3"])
    assert (cfg.max_frames, cfg.fps, cfg.max_fps, cfg.smooth_window) == (16, 12.0, 10.0, 3)
    assert isinstance(cfg.fps, float) and isinstance(cfg.max_frames, int)
    for bad, fragment in (["max_frames=3.5", "data.clip.max_frames: 3.5 is not a valid int"],
                          ["max_frames=many", "data.clip.max_frames: 'many' is not a valid int"],
                          ["nope=1", "unknown config key 'data.clip.nope'"], ["max_frames", "not key=value"]):
        with pytest.raises(ConfigError) as e:
            clip_config_of(tmp_path, [bad])
        assert fragment in str(e.value) and "\n" not in str(e.value)


def test_clip_settings_one_file_for_both_model_folders(tmp_path):
    """Stage-1 and stage-2 model folders record the training ClipConfig the same way (clip.yaml);
    folders from before (meta.json / vlp_config.yaml ``clip``) are still read."""
    import yaml

    from slt_llm.config import CLIP_FILE, ClipConfig, EncoderConfig, VLPConfig, read_clip_settings
    from slt_llm.models.vlp import VLPModel

    clip = ClipConfig(max_frames=20, full_size=48)
    m = VLPModel(EncoderConfig(dim=16, hand_channels=[4, 8], full_channels=[4, 8], keypoint_hidden=8, num_layers=1,
                               num_heads=2), VLPConfig(embed_dim=8), 12)
    m.clip_cfg = clip
    m.save_pretrained(tmp_path / "s1")
    assert (tmp_path / "s1" / CLIP_FILE).is_file()
    assert "clip" not in yaml.safe_load((tmp_path / "s1" / "vlp_config.yaml").read_text())
    assert VLPModel.from_pretrained(tmp_path / "s1").clip_cfg == clip == read_clip_settings(tmp_path / "s1")
    old = tmp_path / "old"
    old.mkdir()
    (old / "meta.json").write_text(json.dumps({"adapter": "lora", "clip": {"max_frames": 9}}))
    assert read_clip_settings(old).max_frames == 9
    assert read_clip_settings(tmp_path) is None


def test_yaml_booleans_for_string_fields_keep_their_meaning(tmp_path):
    """YAML 1.1 reads no/off/yes as booleans: ``train.mixed_precision=no`` (the documented value)
    must stay "no", from an override and from a config file, while bool fields still take them."""
    cfg = load_config(SLTConfig, None, ["train.mixed_precision=no", "llm.use_lora=no"])
    assert cfg.train.mixed_precision == "no" and cfg.llm.use_lora is False
    f = tmp_path / "c.yaml"
    f.write_text("train: {mixed_precision: no}\nllm: {use_lora: yes}\n")
    cfg = load_config(SLTConfig, str(f))
    assert cfg.train.mixed_precision == "no" and cfg.llm.use_lora is True
    assert load_config(SLTConfig, str(f), ["train.mixed_precision=bf16"]).train.mixed_precision == "bf16"
