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
