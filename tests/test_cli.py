import pytest

from vlm2vla.cli import main


def test_stage_help_lists_nested_fields(capsys):
    assert main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    for field in ("episodes_per_task", "policy.type", "sim.image_size", "n_action_steps"):
        assert field in out


def test_print_config_applies_overrides(capsys):
    assert main(["collect", "--print-config", "episodes_per_task=7", "sim.image_size=64"]) == 0
    out = capsys.readouterr().out
    assert "episodes_per_task: 7" in out and "image_size: 64" in out


def test_unknown_key_is_reported_with_suggestion(caplog):
    assert main(["eval", "--print-config", "episodes_per_tsk=3"]) == 2
    assert "episodes_per_task" in caplog.text


def test_demo_config_is_shipped(capsys):
    assert main(["demo", "--config", "demo", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "eval_policies" in out and "episodes_per_task: 5" in out


def test_unknown_stage_exits_with_usage():
    with pytest.raises(SystemExit):
        main(["colect"])
