"""Success-rate tables with confidence intervals, per task, task group, instruction split and overall.

Intervals are Wilson score intervals: with 10 episodes a task, the normal approximation gives bounds
outside [0, 1] at 0% and 100% success, which is where most Meta-World tasks sit.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class EpisodeRecord:
    """One evaluated episode, flat so it can go straight into a CSV row."""

    task: str
    group: str
    split: str
    episode: int
    seed: int
    instruction: str
    success: bool
    length: int
    reward: float
    # the named candidate (suites with several per scene; "" for Meta-World)
    target: str = ""
    # a distractor reached its goal instead of the named target
    wrong_target: bool = False


@dataclass(frozen=True)
class SuccessSummary:
    """Success and wrong-target rates of a set of episodes with 95% Wilson intervals, and mean length."""

    n: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_length: float
    wrong_targets: int = 0
    wrong_target_rate: float = 0.0
    wrong_ci_low: float = 0.0
    wrong_ci_high: float = 0.0


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(episodes: Sequence[EpisodeRecord]) -> SuccessSummary:
    """Success rate, interval and mean length of `episodes`."""
    n = len(episodes)
    k = sum(e.success for e in episodes)
    w = sum(e.wrong_target for e in episodes)
    low, high = wilson_interval(k, n)
    wrong_low, wrong_high = wilson_interval(w, n)
    mean_len = sum(e.length for e in episodes) / n if n else float("nan")
    # Rounded: the interval's float noise (5e-17 for 0%) would otherwise clutter every CSV.
    return SuccessSummary(n=n, successes=k, success_rate=round(k / n, 6) if n else float("nan"),
                          ci_low=round(low, 6), ci_high=round(high, 6), mean_length=round(mean_len, 3),
                          wrong_targets=w, wrong_target_rate=round(w / n, 6) if n else float("nan"),
                          wrong_ci_low=round(wrong_low, 6), wrong_ci_high=round(wrong_high, 6))


def group_by(episodes: Iterable[EpisodeRecord], key: Callable[[EpisodeRecord], str]) -> dict[str, SuccessSummary]:
    """Summaries of the episodes grouped by `key`, in first-seen order."""
    groups: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for e in episodes:
        groups[key(e)].append(e)
    return {name: summarize(members) for name, members in groups.items()}


def success_tables(episodes: Sequence[EpisodeRecord]) -> dict[str, dict]:
    """All the tables an evaluation reports, as plain dicts ready for JSON."""
    tables = {
        "overall": asdict(summarize(episodes)),
        "per_group": group_by(episodes, lambda e: e.group),
        "per_split": group_by(episodes, lambda e: e.split),
        "per_task": group_by(episodes, lambda e: e.task),
        "per_task_split": group_by(episodes, lambda e: f"{e.task}/{e.split}"),
    }
    return {name: (table if name == "overall" else {k: asdict(v) for k, v in table.items()})
            for name, table in tables.items()}


def format_table(rows: dict[str, dict], title: str) -> str:
    """A fixed-width text table of summaries (for logs and the terminal)."""
    width = max([len(title), *(len(k) for k in rows)])
    wrong = any(s.get("wrong_targets") for s in rows.values())
    lines = [f"{title:<{width}}  {'n':>4}  {'success':>7}  {'95% CI':>13}  {'mean len':>8}"
             + (f"  {'wrong target':>12}  {'95% CI':>13}" if wrong else "")]
    for name, s in rows.items():
        line = (f"{name:<{width}}  {s['n']:>4}  {s['success_rate']:>7.1%}  "
                f"[{s['ci_low']:>4.0%}, {s['ci_high']:>4.0%}]  {s['mean_length']:>8.1f}")
        if wrong:
            line += f"  {s['wrong_target_rate']:>12.1%}  [{s['wrong_ci_low']:>4.0%}, {s['wrong_ci_high']:>4.0%}]"
        lines.append(line)
    return "\n".join(lines)
