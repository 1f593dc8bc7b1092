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


def test_a_flat_name_of_a_nested_field_is_answered_with_its_place(tmp_path):
    with pytest.raises(ConfigError, match=r"no field 'size'; did you mean 'inner.size'\?"):
        load_config(Outer, None, ["size=3"])
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  sise: 3\n")
    with pytest.raises(ConfigError, match=rf"config file {path}.*'inner.sise'.*'inner.size'"):
        load_config(Outer, path)


@pytest.mark.parametrize("stage", ["pretrain", "midtrain", "train-policy"])
def test_training_stages_share_the_nested_optim_and_checkpoint_configs(stage):
    from vlm2vla.stages import stage_config
    from vlm2vla.training.checkpoint import CheckpointConfig
    from vlm2vla.training.optim import OptimConfig

    cls = stage_config(stage)
    cfg = load_config(cls, None, ["optim.lr=0.003", "optim.grad_accum=2", "checkpoint.keep=5"])
    assert isinstance(cfg.optim, OptimConfig) and isinstance(cfg.checkpoint, CheckpointConfig)
    assert (cfg.optim.lr, cfg.optim.grad_accum, cfg.checkpoint.keep) == (0.003, 2, 5)
    # The flat names these settings had before are answered with where they went.
    for old, new in [("lr", "optim.lr"), ("batch_size", "optim.batch_size"), ("max_steps", "optim.max_steps"),
                     ("save_interval", "checkpoint.interval"), ("keep_checkpoints", "checkpoint.keep")]:
        with pytest.raises(ConfigError, match=rf"no field '{old}'; did you mean '{new}'"):
            load_config(cls, None, [f"{old}=1"])
    with pytest.raises(ConfigError, match=r"optim.lr must be > 0"):
        load_config(cls, None, ["optim.lr=0"])
