"""The one registry idiom: lazy "module:attr" targets, duplicate checks, closest-name hints, and the
tables the pipeline's pluggable kinds are built from."""

import sys

import pytest

from vlm2vla.registry import Registry, UnknownNameError


def test_targets_are_imported_on_first_use_only(tmp_path, monkeypatch):
    (tmp_path / "late_plugin.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("widget")
    reg.register("late", "late_plugin:VALUE", note="x")
    assert "late_plugin" not in sys.modules  # registering and listing import nothing
    assert reg.names() == ["late"] and "late" in reg and reg.entry("late").info == {"note": "x"}
    assert reg.load("late") == 42 and "late_plugin" in sys.modules
    monkeypatch.delitem(sys.modules, "late_plugin")


def test_duplicates_are_refused_and_typos_answered_with_the_closest_names():
    reg = Registry("widget")
    reg.register("alpha", "json:dumps")
    reg.register("alpha", "json:dumps")  # the same target again: a no-op
    with pytest.raises(ValueError, match="widget 'alpha' is already registered as 'json:dumps'"):
        reg.register("alpha", "json:loads")
    with pytest.raises(ValueError, match="package.module:attribute"):
        reg.register("beta", "json.dumps")
    with pytest.raises(UnknownNameError, match=r"Unknown widget 'alpah'; did you mean 'alpha'\? Registered: alpha\."):
        reg.load("alpah")
    obj = object()
    reg.register("made-at-run-time", obj)
    assert reg.load("made-at-run-time") is obj


def test_every_registered_plugin_loads():
    from vlm2vla.engine.strategies import STRATEGIES
    from vlm2vla.evaluation.policy_interface import POLICIES
    from vlm2vla.policies.action_head import ActionHead
    from vlm2vla.policies.configuration import HEAD_TYPES, HEADS
    from vlm2vla.sim.base import SIMULATORS
    from vlm2vla.stages import STAGES, stage_config

    assert HEAD_TYPES == ("vlm4vla", "pi0", "gr00t")
    assert all(issubclass(HEADS.load(name), ActionHead) for name in HEADS.names())
    assert {"expert", "random", "vla"} <= set(POLICIES.names())
    for registry in (STRATEGIES, POLICIES, SIMULATORS, STAGES):
        assert all(callable(registry.load(name)) for name in registry.names())
    assert all(isinstance(stage_config(name), type) for name in STAGES.names())
