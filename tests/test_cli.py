import pytest

from vlm2vla.cli import main
from vlm2vla.config import describe_fields
from vlm2vla.stages import STAGES, stage_config


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


@pytest.mark.parametrize("stage", sorted(STAGES.names()))
def test_every_field_of_every_stage_has_help(stage):
    rows = describe_fields(stage_config(stage))
    assert rows and [row.name for row in rows if not row.help.strip()] == []


def test_stage_help_shows_comments_and_choices(capsys):
    assert main(["train-policy", "--help"]) == 0
    out = capsys.readouterr().out
    assert "init: str = 'pretrained'" in out and "random init (VLM4VLA" in out
    assert "choices: pretrained, scratch" in out
    assert "choices: vision, connector, language_model, word_embeddings, vlm" in out  # freeze
    assert "held-out episodes for validation" in out  # val_episodes
    assert main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Meta-World: canonical, seen, unseen" in out and "unseen_composition, position" in out


def test_tasks_lists_simulators_groups_tasks_and_splits(capsys):
    from vlm2vla.sim import ALL_TASKS, TASK_GROUPS, get_instructions

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "metaworld" in out and all(task in out for task in ALL_TASKS)
    assert all(f"  {group} " in out for group in TASK_GROUPS)
    assert all(f"  {split} " in out for split in ("canonical", "seen", "unseen"))
    assert main(["tasks", "reach"]) == 0
    out = capsys.readouterr().out
    assert all(text in out for text in get_instructions("reach").unseen)
    assert main(["tasks", "mt10"]) == 0
    assert "Tasks (10;" in capsys.readouterr().out


def test_unknown_task_points_to_the_tasks_command(caplog):
    assert main(["tasks", "rech"]) == 2
    assert "Did you mean 'reach'" in caplog.text and "`vlm2vla tasks`" in caplog.text
    caplog.clear()
    assert main(["eval", "--print-config", "tasks=[rech]"]) == 2
    assert "`vlm2vla tasks`" in caplog.text and "resolve_tasks(" not in caplog.text
