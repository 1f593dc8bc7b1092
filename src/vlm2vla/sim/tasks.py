"""Meta-World MT50 task names, difficulty groups and a resolver for task specs.

The difficulty groups are LeRobot's (``src/lerobot/envs/metaworld_config.json``,
``DIFFICULTY_TO_TASKS``): easy (28), medium (11), hard (6), very_hard (5). ``mt10`` is
Meta-World's MT10 set and ``mt50``/``all`` are every task.

    >>> resolve_tasks("reach, button-press-v3, hard")[:3]
    ['reach-v3', 'button-press-v3', 'assembly-v3']
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

# All 50 tasks, in the order of LeRobot's TASK_NAME_TO_ID (index = LeRobot's task id).
ALL_TASKS: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3",
    "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-v3",
    "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3", "coffee-push-v3",
    "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3",
    "door-open-v3", "door-unlock-v3", "drawer-close-v3", "drawer-open-v3",
    "faucet-close-v3", "faucet-open-v3", "hammer-v3", "hand-insert-v3",
    "handle-press-side-v3", "handle-press-v3", "handle-pull-side-v3",
    "handle-pull-v3", "lever-pull-v3", "peg-insert-side-v3", "peg-unplug-side-v3",
    "pick-out-of-hole-v3", "pick-place-v3", "pick-place-wall-v3",
    "plate-slide-back-side-v3", "plate-slide-back-v3", "plate-slide-side-v3",
    "plate-slide-v3", "push-back-v3", "push-v3", "push-wall-v3", "reach-v3",
    "reach-wall-v3", "shelf-place-v3", "soccer-v3", "stick-pull-v3",
    "stick-push-v3", "sweep-into-v3", "sweep-v3", "window-open-v3",
    "window-close-v3",
)  # fmt: skip

# LeRobot's DIFFICULTY_TO_TASKS, same order.
DIFFICULTY_GROUPS: dict[str, tuple[str, ...]] = {
    "easy": (
        "button-press-v3", "button-press-topdown-v3", "button-press-topdown-wall-v3",
        "button-press-wall-v3", "coffee-button-v3", "dial-turn-v3", "door-close-v3",
        "door-lock-v3", "door-open-v3", "door-unlock-v3", "drawer-close-v3", "drawer-open-v3",
        "faucet-close-v3", "faucet-open-v3", "handle-press-v3", "handle-press-side-v3",
        "handle-pull-v3", "handle-pull-side-v3", "lever-pull-v3", "plate-slide-v3",
        "plate-slide-back-v3", "plate-slide-back-side-v3", "plate-slide-side-v3", "reach-v3",
        "reach-wall-v3", "window-close-v3", "window-open-v3", "peg-unplug-side-v3",
    ),
    "medium": (
        "basketball-v3", "bin-picking-v3", "box-close-v3", "coffee-pull-v3", "coffee-push-v3",
        "hammer-v3", "peg-insert-side-v3", "push-wall-v3", "soccer-v3", "sweep-v3", "sweep-into-v3",
    ),
    "hard": (
        "assembly-v3", "hand-insert-v3", "pick-out-of-hole-v3", "pick-place-v3", "push-v3",
        "push-back-v3",
    ),
    "very_hard": (
        "shelf-place-v3", "disassemble-v3", "stick-pull-v3", "stick-push-v3", "pick-place-wall-v3",
    ),
}  # fmt: skip

# Meta-World's MT10 benchmark (metaworld.env_dict.MT10_V3), same order.
MT10_TASKS: tuple[str, ...] = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
    "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3",
    "window-close-v3",
)  # fmt: skip

# Every name resolve_tasks() expands to several tasks.
TASK_GROUPS: dict[str, tuple[str, ...]] = {
    **DIFFICULTY_GROUPS,
    "mt10": MT10_TASKS,
    "mt50": ALL_TASKS,
    "all": ALL_TASKS,
}

_SUFFIX = "-v3"


class UnknownTaskError(ValueError):
    """A task or group name that is not a Meta-World v3 task or a known group."""


def _unknown(name: str) -> UnknownTaskError:
    candidates = list(ALL_TASKS) + [t.removesuffix(_SUFFIX) for t in ALL_TASKS] + list(TASK_GROUPS)
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownTaskError(
        f"Unknown Meta-World task or group {name!r}.{hint} Groups: {', '.join(TASK_GROUPS)}; "
        "`vlm2vla tasks` lists every task, group and instruction split."
    )


def resolve_task(name: str) -> str:
    """Return the canonical task name ("reach" or "Reach-V3" -> "reach-v3").

    Raises:
        UnknownTaskError: ``name`` is not a task (group names are not accepted here).
    """
    key = name.strip().lower()
    full = key if key.endswith(_SUFFIX) else key + _SUFFIX
    if full not in ALL_TASKS:
        raise _unknown(name)
    return full


def resolve_tasks(spec: str | Sequence[str]) -> list[str]:
    """Expand a task spec into a de-duplicated list of task names, in order of appearance.

    Args:
        spec: a task name (with or without "-v3"), a group name (see ``TASK_GROUPS``), a
            comma-separated mix of those, or a sequence of such strings.

    Returns:
        Canonical task names such as ``["reach-v3", "push-v3"]``.

    Raises:
        UnknownTaskError: an item is neither a task nor a group; the message suggests close names.
        ValueError: the spec names nothing at all.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    names = [part.strip() for item in items for part in item.split(",") if part.strip()]
    if not names:
        raise ValueError(f"Empty task spec {spec!r}: name tasks or groups ({', '.join(TASK_GROUPS)}).")
    tasks: list[str] = []
    for name in names:
        group = TASK_GROUPS.get(name.lower())
        tasks.extend(group if group is not None else [resolve_task(name)])
    return list(dict.fromkeys(tasks))
