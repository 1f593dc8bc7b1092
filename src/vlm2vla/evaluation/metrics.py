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


@dataclass(frozen=True)
class SuccessSummary:
    """Success rate of a set of episodes with its 95% Wilson interval and mean episode length."""

    n: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_length: float


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
    low, high = wilson_interval(k, n)
    mean_len = sum(e.length for e in episodes) / n if n else float("nan")
    # Rounded: the interval's float noise (5e-17 for 0%) would otherwise clutter every CSV.
    return SuccessSummary(n=n, successes=k, success_rate=round(k / n, 6) if n else float("nan"),
                          ci_low=round(low, 6), ci_high=round(high, 6), mean_length=round(mean_len, 3))


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
    lines = [f"{title:<{width}}  {'n':>4}  {'success':>7}  {'95% CI':>13}  {'mean len':>8}"]
    for name, s in rows.items():
        lines.append(f"{name:<{width}}  {s['n']:>4}  {s['success_rate']:>7.1%}  "
                     f"[{s['ci_low']:>4.0%}, {s['ci_high']:>4.0%}]  {s['mean_length']:>8.1f}")
    return "\n".join(lines)
