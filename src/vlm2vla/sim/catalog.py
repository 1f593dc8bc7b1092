"""What can be run: simulators, task groups, tasks and instruction splits, as text for `vlm2vla tasks`.

    vlm2vla tasks              # every simulator, group and task, and the instruction splits
    vlm2vla tasks mt10         # the tasks of a group (or a list: reach,push,hard)
    vlm2vla tasks reach        # one task with every instruction of each split
    vlm2vla tasks grounded     # the language-grounded suite: families, targets, templates, splits

The names printed here are what `tasks=[...]` and `splits=[...]` accept in collect and eval.
"""

from __future__ import annotations

import textwrap

from vlm2vla.sim.base import available_simulators
from vlm2vla.sim.instructions import NUM_UNSEEN, get_instructions
from vlm2vla.sim.tasks import ALL_TASKS, DIFFICULTY_GROUPS, TASK_GROUPS, resolve_tasks

SPLIT_HELP = {
    "canonical": "the one reference instruction of each task",
    "seen": "canonical + paraphrases that training data may use (collect instruction_split=seen)",
    "unseen": f"the last {NUM_UNSEEN} paraphrases of each task, held out for evaluation only",
}


def task_group(task: str) -> str:
    """The difficulty group (easy, medium, hard, very_hard) a task belongs to."""
    return next((g for g, members in DIFFICULTY_GROUPS.items() if task in members), "other")


def format_catalog(spec: str | None = None) -> str:
    """The catalog as text: everything when `spec` is None, else the tasks it names.

    Args:
        spec: a task, a group or a comma-separated mix (as `tasks=` takes them); one task prints every
            instruction of each split.

    Raises:
        UnknownTaskError: a name in `spec` is neither a task nor a group (with the closest names).
    """
    if spec is None:
        return "\n".join([*_simulators(), "", *_groups(), "", *_task_table(list(ALL_TASKS)), "", *_splits(), "",
                          *_grounded(None)])
    from vlm2vla.sim.grounded import tasks as gt

    key = spec.strip().lower()
    if key in gt.GROUPS or key.startswith(gt.PREFIX):
        return "\n".join(_grounded(spec))
    tasks = resolve_tasks(spec)
    if len(tasks) == 1:
        return "\n".join(_one_task(tasks[0]))
    return "\n".join(_task_table(tasks))


def _simulators() -> list[str]:
    return [f"Simulators (sim.name): {', '.join(available_simulators())}"]


def _groups() -> list[str]:
    lines = ["Task groups (tasks=[<group>]):"]
    width = max(map(len, TASK_GROUPS))
    for name, members in TASK_GROUPS.items():
        shown = textwrap.shorten(", ".join(t.removesuffix("-v3") for t in members), width=72, placeholder=" ...")
        lines.append(f"  {name:<{width}}  {len(members):>2} tasks  {shown}")
    return lines


def _task_table(tasks: list[str]) -> list[str]:
    width = max(map(len, tasks))
    lines = [f"Tasks ({len(tasks)}; \"reach\" and \"reach-v3\" both work):",
             f"  {'task':<{width}}  {'group':<9}  seen  unseen  canonical instruction"]
    for task in tasks:
        inst = get_instructions(task)
        lines.append(f"  {task:<{width}}  {task_group(task):<9}  {len(inst.seen):>4}  {len(inst.unseen):>6}  "
                     f"{inst.canonical}")
    return lines


def _splits() -> list[str]:
    lines = ["Instruction splits (eval splits=[...]):"]
    lines += [f"  {name:<9}  {text}" for name, text in SPLIT_HELP.items()]
    return lines


def _grounded(spec: str | None) -> list[str]:
    from vlm2vla.sim.grounded import tasks as gt

    lines = ["Language-grounded suite (sim.name=grounded sim.camera=front; tasks=[grounded] or a family):"]
    for task in gt.resolve_tasks(spec or "grounded"):
        family = gt.resolve_family(task)
        held = [a for a in family.attributes if (family.name, a) in gt.HELD_OUT]
        lines.append(f"  {task:<24} targets {', '.join(family.attributes)}"
                     + (f" ({', '.join(held)} held out: unseen_composition)" if held else ""))
        if spec is not None:
            lines += [f"    seen:   {t}" for t in family.seen_templates]
            lines += [f"    unseen: {t}" for t in family.unseen_templates]
    lines.append("Grounded splits (eval splits=[...]): " + ", ".join(gt.SPLITS)
                 + "; collect uses canonical or seen (others need allow_held_out=true)")
    return lines


def _one_task(task: str) -> list[str]:
    inst = get_instructions(task)
    lines = [f"{task} (group {task_group(task)})", f"  canonical: {inst.canonical}", "  seen:"]
    lines += [f"    {text}" for text in inst.seen]
    lines += ["  unseen:"] + [f"    {text}" for text in inst.unseen]
    return lines
