from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from affectkit.core.config import TrainConfig, apply_overrides, from_dict, help_field, resolve, to_yaml
from affectkit.core.errors import DataError, UsageError


@dataclass
class Inner:
    width: int = help_field(4, "layer width")
    names: list[str] = help_field(["a", "b"], "some names")
    mode: Literal["x", "y"] = help_field("x", "a mode")


@dataclass
class Outer:
    """A test config."""

    inner: Inner = field(default_factory=Inner)
    train: TrainConfig = field(default_factory=TrainConfig)
    ratio: float | None = help_field(None, "an optional ratio")


def test_overrides_are_parsed_and_type_checked():
    cfg = apply_overrides(Outer(), ["inner.width=8", "train.lr=1e-4", "ratio=0.5", "inner.names=[c, d]"])
    assert cfg.inner.width == 8
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.ratio == 0.5
    assert cfg.inner.names == ["c", "d"]
    assert Outer().inner.width == 4  # defaults untouched


def test_int_accepts_integral_float_but_not_bool_or_text():
    assert apply_overrides(Outer(), ["inner.width=3.0"]).inner.width == 3
    for bad in ("inner.width=true", "inner.width=abc", "inner.width=2.5"):
        with pytest.raises(UsageError, match="expected an integer"):
            apply_overrides(Outer(), [bad])


def test_literal_and_optional():
    with pytest.raises(UsageError, match="expected one of 'x', 'y'"):
        apply_overrides(Outer(), ["inner.mode=z"])
    assert apply_overrides(Outer(), ["ratio=null"]).ratio is None


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(UsageError) as exc:
        apply_overrides(Outer(), ["inner.widht=3"])
    assert "unknown config key 'inner.widht'" in exc.value.message
    assert "inner.width" in exc.value.hint
    with pytest.raises(UsageError) as exc:
        from_dict(Outer, {"train": {"learning_rate": 1}})
    assert "train.learning_rate" in exc.value.message


def test_malformed_override():
    with pytest.raises(UsageError, match="KEY=VALUE"):
        apply_overrides(Outer(), ["inner.width"])


def test_yaml_round_trip_with_comments(tmp_path):
    cfg = apply_overrides(Outer(), ["inner.width=7", "inner.mode=y"])
    text = to_yaml(cfg)
    assert "# layer width" in text and "# A test config." in text
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert resolve(Outer, path) == cfg
    assert yaml.safe_load(text)["inner"]["width"] == 7


def test_precedence_file_then_set_then_explicit(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  width: 5\ntrain:\n  lr: 0.5\n  max_steps: 9\n")
    cfg = resolve(Outer, path, ["train.lr=0.25"], {"train.max_steps": 3})
    assert (cfg.inner.width, cfg.train.lr, cfg.train.max_steps) == (5, 0.25, 3)


def test_config_file_errors(tmp_path):
    with pytest.raises(DataError, match="config file not found"):
        resolve(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("inner: [unclosed\n")
    with pytest.raises(DataError, match="invalid YAML"):
        resolve(Outer, bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(DataError, match="mapping"):
        resolve(Outer, scalar)
