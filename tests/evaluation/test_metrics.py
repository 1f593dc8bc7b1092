import pytest

from vlm2vla.evaluation.metrics import EpisodeRecord, success_tables, wilson_interval


def test_wilson_known_values():
    # 0/10: the upper bound is z^2 / (n + z^2) = 0.2775 (a value any stats table gives)
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_interval_narrows_with_more_episodes():
    small = wilson_interval(5, 10)
    large = wilson_interval(50, 100)
    assert large[1] - large[0] < small[1] - small[0]


def _ep(task, split, success, length=10, group="easy"):
    return EpisodeRecord(task=task, group=group, split=split, episode=0, seed=0, instruction="x",
                         success=success, length=length, reward=0.0)


def test_tables_group_by_task_split_and_group():
    eps = [_ep("a", "seen", True), _ep("a", "unseen", False), _ep("b", "seen", True, group="hard"),
           _ep("b", "unseen", True, length=30, group="hard")]
    t = success_tables(eps)
    assert t["overall"]["success_rate"] == 0.75 and t["overall"]["n"] == 4
    assert t["per_task"]["a"]["success_rate"] == 0.5
    assert t["per_split"]["unseen"]["success_rate"] == 0.5
    assert t["per_group"]["hard"]["mean_length"] == 20
    assert t["per_task_split"]["a/unseen"]["successes"] == 0
