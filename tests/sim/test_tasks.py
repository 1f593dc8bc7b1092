import pytest

from vlm2vla.sim.tasks import (
    ALL_TASKS,
    DIFFICULTY_GROUPS,
    MT10_TASKS,
    UnknownTaskError,
    resolve_task,
    resolve_tasks,
)


def test_fifty_unique_tasks():
    assert len(ALL_TASKS) == 50 == len(set(ALL_TASKS))
    assert all(t.endswith("-v3") for t in ALL_TASKS)


def test_difficulty_groups_partition_all_tasks():
    sizes = {name: len(tasks) for name, tasks in DIFFICULTY_GROUPS.items()}
    assert sizes == {"easy": 28, "medium": 11, "hard": 6, "very_hard": 5}
    grouped = [t for tasks in DIFFICULTY_GROUPS.values() for t in tasks]
    assert len(grouped) == len(set(grouped)) == 50
    assert set(grouped) == set(ALL_TASKS)


def test_mt10_is_a_subset():
    assert len(MT10_TASKS) == 10 and set(MT10_TASKS) <= set(ALL_TASKS)


def test_resolve_names_groups_and_suffixless():
    assert resolve_tasks("reach-v3") == ["reach-v3"]
    assert resolve_tasks("reach") == ["reach-v3"]
    assert resolve_tasks(" Reach-V3 ") == ["reach-v3"]
    assert resolve_tasks("hard") == list(DIFFICULTY_GROUPS["hard"])
    assert resolve_tasks("all") == list(ALL_TASKS)
    assert resolve_tasks("mt10") == list(MT10_TASKS)
    assert resolve_task("peg-insert-side") == "peg-insert-side-v3"


def test_resolve_comma_lists_and_sequences_deduplicate_in_order():
    assert resolve_tasks("push, reach-v3,push-v3") == ["push-v3", "reach-v3"]
    assert resolve_tasks(["reach", "hard,reach"])[:2] == ["reach-v3", "assembly-v3"]
    assert len(resolve_tasks("easy,medium,hard,very_hard,all")) == 50


def test_unknown_task_suggests_close_names():
    with pytest.raises(UnknownTaskError) as err:
        resolve_tasks("reach,pick-plce-v3")
    message = str(err.value)
    assert "pick-place-v3" in message and "very_hard" in message
    assert isinstance(err.value, ValueError)


def test_group_name_is_not_a_single_task():
    with pytest.raises(UnknownTaskError):
        resolve_task("easy")


def test_empty_spec_rejected():
    with pytest.raises(ValueError, match="Empty task spec"):
        resolve_tasks(" , ")
