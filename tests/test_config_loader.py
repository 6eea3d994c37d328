"""The generic typed-config loader: inherit trees, overrides, strict validation, save/hash/diff."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from omegaconf import MISSING

from ssvrl.config.loader import (
    ConfigError,
    build,
    config_diff,
    config_hash,
    load_config,
    parse_overrides,
    read_yaml_tree,
    save_config,
    to_yaml,
)
from ssvrl.config.overrides import deep_merge


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclass(frozen=True)
class Augment:
    scale: tuple[float, float] = (0.2, 1.0)
    flip: bool = True


@dataclass(frozen=True)
class Data:
    split: int = 1
    root: str = "data"
    augment: Augment = field(default_factory=Augment)


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    weight_decay: float = 0.0
    name: Literal["sgd", "adamw"] = "sgd"


@dataclass(frozen=True)
class Head:
    dim: int = MISSING
    dropout: float = 0.0


@dataclass(frozen=True)
class Experiment:
    name: str
    optim: Optim = field(default_factory=Optim)
    data: Data = field(default_factory=Data)
    plugins: list[str] = field(default_factory=list)
    heads: dict[str, Head] = field(default_factory=dict)
    checkpoint: str | None = None
    mode: Mode = Mode.FAST
    epochs: int = 10


@dataclass(frozen=True)
class LongExperiment(Experiment):
    warmup: int = 5


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(data: Mapping[str, Any], source: str = "config.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(Experiment, data, source=source)
    return info.value


# --- read_yaml_tree -----------------------------------------------------------------------------


def test_inherit_two_levels_with_relative_paths(tmp_path: Path) -> None:
    write(tmp_path / "base" / "base.yaml", "optim: {lr: 0.1, weight_decay: 0.5}\nplugins: [a, b]\n")
    mid = "inherit: ../base/base.yaml\noptim: {lr: 0.2}\nepochs: 3\n"
    write(tmp_path / "mid" / "mid.yaml", mid)
    exp = write(tmp_path / "exp.yaml", "inherit: mid/mid.yaml\nplugins: [c]\nname: x\n")
    tree = read_yaml_tree(exp)
    assert tree == {
        "optim": {"lr": 0.2, "weight_decay": 0.5},  # dicts merge recursively
        "plugins": ["c"],  # lists replace
        "epochs": 3,
        "name": "x",
    }
    assert "inherit" not in tree


def test_inherit_list_form_later_wins_and_file_wins_last(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "epochs: 1\nname: a\ndata: {split: 1, root: ra}\n")
    write(tmp_path / "b.yaml", "epochs: 2\ndata: {split: 2}\n")
    exp = write(tmp_path / "exp.yaml", "inherit: [a.yaml, b.yaml]\nepochs: 3\n")
    expected = {"epochs": 3, "name": "a", "data": {"split": 2, "root": "ra"}}
    assert read_yaml_tree(str(exp)) == expected


def test_inherit_cycle_names_the_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "inherit: b.yaml\n")
    write(tmp_path / "b.yaml", "inherit: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle") as info:
        read_yaml_tree(tmp_path / "a.yaml")
    chain = [Path(part).name for part in str(info.value).split("cycle: ")[1].split(" -> ")]
    assert chain == ["a.yaml", "b.yaml", "a.yaml"]


def test_diamond_inherit_is_not_a_cycle(tmp_path: Path) -> None:
    write(tmp_path / "root.yaml", "epochs: 1\n")
    write(tmp_path / "l.yaml", "inherit: root.yaml\nname: l\n")
    write(tmp_path / "r.yaml", "inherit: root.yaml\nmode: SLOW\n")
    exp = write(tmp_path / "exp.yaml", "inherit: [l.yaml, r.yaml]\n")
    assert read_yaml_tree(exp) == {"epochs": 1, "name": "l", "mode": "SLOW"}


def test_missing_inherited_file_names_path_and_parent(tmp_path: Path) -> None:
    exp = write(tmp_path / "exp.yaml", "inherit: nope/base.yaml\n")
    with pytest.raises(ConfigError) as info:
        read_yaml_tree(exp)
    assert str(tmp_path / "nope" / "base.yaml") in str(info.value)
    assert f"inherited by {exp}" in str(info.value)


def test_missing_top_file_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_yaml_tree(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        read_yaml_tree(write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        read_yaml_tree(write(tmp_path / "bad.yaml", "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="'inherit' must be"):
        read_yaml_tree(write(tmp_path / "inh.yaml", "inherit: 3\n"))
    assert read_yaml_tree(write(tmp_path / "empty.yaml", "")) == {}


def test_yaml_file_reads_exponent_floats(tmp_path: Path) -> None:
    tree = read_yaml_tree(write(tmp_path / "c.yaml", "lr: 3e-4\nbig: 1E5\ns: '3e-4'\nv: 1.0\n"))
    assert tree == {"lr": 3e-4, "big": 1e5, "s": "3e-4", "v": 1.0}
    assert isinstance(tree["lr"], float) and isinstance(tree["s"], str)


def test_deep_merge_does_not_mutate_inputs() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    top = {"a": {"b": 2}, "d": {"e": 3}}
    assert deep_merge(base, top) == {"a": {"b": 2, "c": [1]}, "d": {"e": 3}}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1} and top == {"a": {"b": 2}, "d": {"e": 3}}


# --- parse_overrides ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("optim.lr=3e-4", {"optim": {"lr": 3e-4}}),
        ("x=-2.5E-3", {"x": -2.5e-3}),
        ("x=1e5", {"x": 100000.0}),
        ('x="3e-4"', {"x": "3e-4"}),
        ("data.split=2", {"data": {"split": 2}}),
        ("objective.name=cvrl", {"objective": {"name": "cvrl"}}),
        ("plugins=[a.b,c.d]", {"plugins": ["a.b", "c.d"]}),
        ("x.y=null", {"x": {"y": None}}),
        ("flag=true", {"flag": True}),
        ("name=", {"name": ""}),
        ("a.b.c=x=y", {"a": {"b": {"c": "x=y"}}}),
    ],
)
def test_parse_overrides_values(item: str, expected: dict[str, Any]) -> None:
    parsed = parse_overrides([item])
    assert parsed == expected
    assert [type(v) for v in _leaf_values(parsed)] == [type(v) for v in _leaf_values(expected)]


def _leaf_values(tree: Any) -> list[Any]:
    if isinstance(tree, dict):
        return [v for value in tree.values() for v in _leaf_values(value)]
    return [tree]


def test_parse_overrides_nested_merge_later_wins() -> None:
    items = ["optim.lr=1", "optim.name=adamw", "optim.lr=0.5", "data.augment.flip=false"]
    assert parse_overrides(items) == {
        "optim": {"lr": 0.5, "name": "adamw"},
        "data": {"augment": {"flip": False}},
    }


@pytest.mark.parametrize("item", ["optim.lr", "a..b=1", "=3"])
def test_parse_overrides_rejects_malformed_item(item: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_overrides(["ok=1", item])
    assert repr(item) in str(info.value) and "command line" in str(info.value)


# --- build: success -----------------------------------------------------------------------------


def test_build_returns_real_frozen_dataclasses() -> None:
    cfg = build(
        Experiment,
        {
            "name": "x",
            "optim": {"lr": 1, "name": "adamw"},
            "data": {"augment": {"scale": [0.3, 1]}},
            "heads": {"main": {"dim": 128}},
            "mode": "SLOW",
            "plugins": ["a.b"],
        },
    )
    assert type(cfg) is Experiment and type(cfg.optim) is Optim
    assert type(cfg.data.augment) is Augment
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)  # int -> float accepted
    assert cfg.data.augment.scale == (0.3, 1.0) and isinstance(cfg.data.augment.scale, tuple)
    assert cfg.heads == {"main": Head(dim=128)} and cfg.mode is Mode.SLOW
    assert cfg.data.split == 1 and cfg.checkpoint is None and cfg.plugins == ["a.b"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]


def test_build_accepts_optional_values() -> None:
    assert build(Experiment, {"name": "x", "checkpoint": "c.ckpt"}).checkpoint == "c.ckpt"
    assert build(Experiment, {"name": "x", "checkpoint": None}).checkpoint is None


def test_build_accepts_dataclass_instances_as_values() -> None:
    cfg = build(Experiment, {"name": "x", "optim": Optim(lr=0.5), "heads": {"h": Head(dim=2)}})
    assert cfg.optim == Optim(lr=0.5) and cfg.heads == {"h": Head(dim=2)}


# --- build: errors ------------------------------------------------------------------------------


def test_unknown_top_level_key_suggests_closest() -> None:
    err = error_of({"name": "x", "epohcs": 3})
    assert err.key == "epohcs"
    assert str(err).startswith("config.yaml: unknown key 'epohcs'. Did you mean 'epochs'?")
    assert "Valid keys at the top level: name, optim, data," in str(err)


def test_unknown_nested_key_suggests_full_dotted_key() -> None:
    err = error_of({"name": "x", "optim": {"lrr": 0.1}})
    assert err.key == "optim.lrr"
    assert str(err) == (
        "config.yaml: unknown key 'optim.lrr'. Did you mean 'optim.lr'? "
        "Valid keys under 'optim': lr, weight_decay, name"
    )


def test_unknown_key_at_depth_three_and_inside_dict_values() -> None:
    err = error_of({"name": "x", "data": {"augment": {"scal": [0.1, 1.0]}}})
    assert err.key == "data.augment.scal"
    assert "Did you mean 'data.augment.scale'?" in str(err)
    assert "Valid keys under 'data.augment': scale, flip" in str(err)
    err = error_of({"name": "x", "heads": {"main": {"dimm": 3}}})
    assert err.key == "heads.main.dimm" and "Did you mean 'heads.main.dim'?" in str(err)


def test_unknown_key_without_close_match_has_no_suggestion() -> None:
    err = error_of({"name": "x", "optim": {"zzzzzz": 1}})
    assert "Did you mean" not in str(err) and "Valid keys under 'optim'" in str(err)


def test_wrong_type_names_key_value_and_type() -> None:
    err = error_of({"name": "x", "optim": {"lr": "abc"}})
    assert err.key == "optim.lr"
    assert str(err) == "config.yaml: 'optim.lr' must be float, got 'abc' (str)"


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"epochs": 2.5}, "epochs", "must be int, got 2.5 (float); use a whole number"),
        ({"epochs": "3"}, "epochs", "got '3' (str); write the number without quotes"),
        ({"epochs": True}, "epochs", "must be int, got True (bool)"),
        ({"optim": {"lr": False}}, "optim.lr", "must be float"),
        ({"name": 3}, "name", "must be str, got 3 (int)"),
        ({"checkpoint": 3}, "checkpoint", "must be str or null, got 3 (int)"),
        ({"epochs": None}, "epochs", "must be int, got null"),
        ({"plugins": ["a", 1]}, "plugins[1]", "must be str, got 1 (int)"),
        ({"plugins": "a"}, "plugins", "must be list[str]"),
        ({"data": {"augment": {"scale": [0.1]}}}, "data.augment.scale", "must have 2 items"),
        ({"data": {"augment": {"scale": [0.1, "x"]}}}, "data.augment.scale[1]", "must be float"),
        ({"optim": 3}, "optim", "must be a mapping of Optim fields"),
        ({"heads": {"main": 3}}, "heads.main", "must be a mapping of Head fields"),
    ],
)
def test_wrong_types_are_refused(data: dict[str, Any], key: str, fragment: str) -> None:
    err = error_of({"name": "x", **data})
    assert err.key == key
    assert fragment in str(err)


def test_literal_violation_lists_choices_and_suggests() -> None:
    err = error_of({"name": "x", "optim": {"name": "adamv"}})
    assert err.key == "optim.name"
    assert "'optim.name' must be one of 'sgd', 'adamw', got 'adamv' (str)" in str(err)
    assert "did you mean 'adamw'?" in str(err)


def test_enum_violation_lists_member_names() -> None:
    err = error_of({"name": "x", "mode": "medium"})
    assert err.key == "mode" and "must be one of FAST, SLOW (Mode)" in str(err)


def test_missing_required_values_are_named() -> None:
    err = error_of({"epochs": 2})
    assert err.key == "name" and "missing required value for 'name'" in str(err)
    err = error_of({"name": "x", "heads": {"main": {"dropout": 0.1}}})
    assert err.key == "heads.main.dim" and "'heads.main.dim'" in str(err)
    err = error_of({"name": "???"})
    assert err.key == "name"


def test_non_mapping_data_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        build(Experiment, [1, 2])  # type: ignore[arg-type]


# --- load_config --------------------------------------------------------------------------------


def test_load_config_merges_file_and_overrides_and_picks_schema(tmp_path: Path) -> None:
    exp = write(tmp_path / "exp.yaml", "name: x\noptim: {lr: 0.1, name: adamw}\n")
    seen: list[Mapping[str, Any]] = []

    def factory(raw: Mapping[str, Any]) -> type[Experiment]:
        seen.append(raw)
        return LongExperiment if "warmup" in raw else Experiment

    cfg = load_config(exp, ["optim.lr=3e-4", "warmup=7"], factory)
    assert type(cfg) is LongExperiment and cfg.warmup == 7
    assert cfg.optim == Optim(lr=3e-4, name="adamw")
    assert seen[-1] == {"name": "x", "optim": {"lr": 3e-4, "name": "adamw"}, "warmup": 7}
    assert type(load_config(exp, [], factory)) is Experiment
    with pytest.raises(ConfigError, match="unknown key 'kind'"):
        load_config(exp, ["kind=long"], factory)


def test_load_config_without_file_uses_defaults() -> None:
    cfg = load_config(None, ["name=y"], lambda raw: Experiment)
    assert cfg == Experiment(name="y")


def test_load_config_blames_the_override_or_the_file(tmp_path: Path) -> None:
    exp = write(tmp_path / "exp.yaml", "name: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(exp, ["epochs=2", "optim.lrr=0.1"], lambda raw: Experiment)
    assert str(info.value).startswith("command line 'optim.lrr=0.1': unknown key 'optim.lrr'.")
    bad = write(tmp_path / "bad.yaml", "name: x\nepochs: many\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad, ["optim.lr=0.1"], lambda raw: Experiment)
    assert str(info.value).startswith(f"{bad}: 'epochs' must be int")


def test_load_config_attributes_schema_factory_errors(tmp_path: Path) -> None:
    exp = write(tmp_path / "exp.yaml", "name: x\n")

    def factory(raw: Mapping[str, Any]) -> type[Experiment]:
        raise ConfigError(f"unknown objective {raw['name']!r}", key="name")

    with pytest.raises(ConfigError) as info:
        load_config(exp, [], factory)
    assert str(info.value) == f"{exp}: unknown objective 'x'"
    with pytest.raises(ConfigError) as info:
        load_config(exp, ["name=z"], factory)
    assert str(info.value) == "command line 'name=z': unknown objective 'z'"


# --- save / hash / diff -------------------------------------------------------------------------


def _sample(**optim: Any) -> Experiment:
    return build(
        Experiment,
        {
            "name": "x",
            "optim": {"lr": 3e-7, **optim},
            "data": {"augment": {"scale": [0.25, 1.0]}},
            "heads": {"main": {"dim": 64}, "aux": {"dim": 8, "dropout": 0.5}},
            "mode": "SLOW",
            "checkpoint": "3e-4",
            "plugins": ["a.b", "c"],
        },
    )


def test_save_config_round_trips_atomically(tmp_path: Path) -> None:
    cfg = _sample()
    target = tmp_path / "run" / "nested" / "config.yaml"
    save_config(cfg, target)
    text = target.read_text()
    assert text == to_yaml(cfg) and "mode: SLOW" in text
    assert build(Experiment, yaml.safe_load(text)) == cfg
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]  # no temp files left
    save_config(_sample(lr=0.5), target)
    assert build(Experiment, yaml.safe_load(target.read_text())).optim.lr == 0.5


def test_config_hash_is_stable_and_sensitive() -> None:
    digest = config_hash(_sample())
    assert len(digest) == 12 and int(digest, 16) >= 0
    assert config_hash(_sample()) == digest
    assert config_hash(_sample(lr=3e-6)) != digest
    assert config_hash(_sample(name="adamw")) != digest
    heads_reversed = dataclasses.replace(_sample(), heads=dict(reversed(_sample().heads.items())))
    assert config_hash(heads_reversed) == digest


def test_config_diff_lists_each_changed_leaf() -> None:
    a = build(Experiment, {"name": "x", "plugins": ["a"]})
    b = build(
        Experiment,
        {"name": "x", "optim": {"lr": 3e-4}, "data": {"split": 2}, "heads": {"h": {"dim": 4}}},
    )
    assert config_diff(a, a) == []
    assert config_diff(a, b) == [
        "optim.lr: 0.001 -> 0.0003",
        "data.split: 1 -> 2",
        "plugins: ['a'] -> []",
        "heads: {} -> <absent>",
        "heads.h.dim: <absent> -> 4",
        "heads.h.dropout: <absent> -> 0.0",
    ]
    assert config_diff(a, dataclasses.replace(a, mode=Mode.SLOW, checkpoint="c")) == [
        "checkpoint: null -> 'c'",
        "mode: 'FAST' -> 'SLOW'",
    ]


@dataclass
class Optionals:
    kind: Literal["a", "bb"] | None = None
    pair: tuple[int, int] | None = None
    sub: Head | None = None


def test_optional_fields_name_null_and_keep_nested_errors() -> None:
    assert build(Optionals, {"kind": "bb", "pair": [1, 2], "sub": {"dim": 1}}) == Optionals(
        kind="bb", pair=(1, 2), sub=Head(dim=1)
    )
    with pytest.raises(ConfigError) as info:
        build(Optionals, {"kind": "b"})
    assert "must be one of 'a', 'bb' or null, got 'b' (str); did you mean 'bb'?" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build(Optionals, {"pair": [1]})
    assert "'pair' must be tuple[int, int] or null, got [1] (list)" in str(info.value)
    with pytest.raises(ConfigError) as info:
        build(Optionals, {"sub": {"dim": 1.5}})
    assert info.value.key == "sub.dim" and "must be int, got 1.5" in str(info.value)


def test_interpolations_are_resolved_then_checked() -> None:
    cfg = build(Experiment, {"name": "x", "data": {"split": 3}, "epochs": "${data.split}"})
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    with pytest.raises(ConfigError) as info:
        build(Experiment, {"name": "x", "epochs": "${nowhere}"}, source="c.yaml")
    assert info.value.key == "epochs"
    assert str(info.value) == "c.yaml: 'epochs': Interpolation key 'nowhere' not found"


def test_value_refused_by_a_config_class_check_is_a_config_error() -> None:
    """A ``__post_init__`` check (a value of the right type but out of range) fails at load
    as a ConfigError naming the field, not as a traceback at the first step."""
    from ssvrl.cli import load_experiment

    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(ConfigError, match="queue_size"):
        load_experiment(str(repo / "experiments/moco/quickstart.yaml"), ["objective.queue_size=-5"])
    with pytest.raises(ConfigError, match="crop_size"):
        load_experiment(
            str(repo / "experiments/cvrl/quickstart.yaml"), ["objective.augment.crop_size=0"]
        )
