from dataclasses import dataclass, field

import pytest

from vlm2vla.config import ConfigError, check_choices, choice, describe_fields, load_config, save_config


@dataclass(frozen=True)
class Inner:
    size: int = 128
    name: str = "a"


@dataclass(frozen=True)
class Outer:
    run_dir: str = "runs/x"
    tasks: tuple[str, ...] = ("reach-v3",)
    inner: Inner = field(default_factory=Inner)
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.inner.size <= 0:
            raise ValueError(f"inner.size must be > 0, got {self.inner.size}")


def test_defaults_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tasks: [push-v3, reach-v3]\ninner:\n  size: 64\n")
    cfg = load_config(Outer, path, ["inner.name=b", "limit=7"])
    assert cfg == Outer(tasks=("push-v3", "reach-v3"), inner=Inner(size=64, name="b"), limit=7)
    # overrides win over the file
    assert load_config(Outer, path, ["inner.size=32"]).inner.size == 32


def test_typo_suggests_the_field():
    with pytest.raises(ConfigError, match="size"):
        load_config(Outer, None, ["inner.sise=3"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="inner.size"):
        load_config(Outer, None, ["inner.size=big"])


def test_post_init_checks_run():
    with pytest.raises(ValueError, match="inner.size must be > 0"):
        load_config(Outer, None, ["inner.size=0"])


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("run_dir: x\ntasks: [a, b\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+"):
        load_config(Outer, path)


def test_missing_config_lists_shipped_ones():
    with pytest.raises(ConfigError, match="Shipped configs"):
        load_config(Outer, "no/such/config")


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Outer, None, ["inner.size"])


def test_saved_config_loads_back_equal(tmp_path):
    cfg = Outer(tasks=("a", "b"), inner=Inner(size=5), limit=None)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(Outer, tmp_path / "config.yaml") == cfg


def test_describe_fields_flattens_nested():
    names = [row.name for row in describe_fields(Outer)]
    assert names == ["run_dir", "tasks", "inner.size", "inner.name", "limit"]


@dataclass(frozen=True)
class Documented:
    # the first line of a comment
    # and its second line
    mode: str = choice("fast", "exact")
    groups: tuple[str, ...] = choice("a", "b", default=())

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass(frozen=True)
class DocumentedChild(Documented):
    # the subclass's own words
    mode: str = choice("fast", "exact", default="exact")


def test_help_is_the_comment_above_the_field_and_its_choices():
    rows = {row.name: row for row in describe_fields(Documented)}
    assert rows["mode"].help == "the first line of a comment and its second line"
    assert rows["mode"].choices == ("fast", "exact") and rows["mode"].default == "'fast'"
    assert rows["groups"].help == "" and rows["groups"].choices == ("a", "b")
    child = {row.name: row for row in describe_fields(DocumentedChild)}
    assert child["mode"].help == "the subclass's own words" and child["mode"].default == "'exact'"


def test_choices_are_enforced_with_the_closest_name():
    assert load_config(Documented, None, ["mode=exact", "groups=[b,a]"]) == Documented("exact", ("b", "a"))
    with pytest.raises(ConfigError, match=r"mode='exat' is not one of fast, exact \(did you mean 'exact'\?\)"):
        load_config(Documented, None, ["mode=exat"])
    with pytest.raises(ConfigError, match="groups='c' is not one of a, b"):
        load_config(Documented, None, ["groups=[a,c]"])
