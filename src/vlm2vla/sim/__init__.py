"""Simulators behind one small env interface, plus task lists and instruction splits.

    from vlm2vla.sim import SimConfig, make_env, env_fn, resolve_tasks, ScriptedExpert
    cfg = SimConfig(image_size=128)
    for task in resolve_tasks("easy"):
        env = make_env(task, cfg)
        obs, info = env.reset(seed=0)

Importing this package chooses MUJOCO_GL (see vlm2vla.sim.gl) before MuJoCo is imported;
simulator modules themselves are imported only when an env is built.
"""

from vlm2vla.sim.gl import configure_mujoco_gl

configure_mujoco_gl()

from vlm2vla.sim.base import SimConfig, available_simulators, env_fn, make_env, register_simulator  # noqa: E402
from vlm2vla.sim.experts import ScriptedExpert, expert_policy_name  # noqa: E402
from vlm2vla.sim.instructions import (  # noqa: E402
    TaskInstructions,
    get_instructions,
    instruction_split,
    sample_instruction,
)
from vlm2vla.sim.tasks import (  # noqa: E402
    ALL_TASKS,
    DIFFICULTY_GROUPS,
    MT10_TASKS,
    TASK_GROUPS,
    UnknownTaskError,
    resolve_task,
    resolve_tasks,
)

__all__ = [
    "ALL_TASKS",
    "DIFFICULTY_GROUPS",
    "MT10_TASKS",
    "TASK_GROUPS",
    "ScriptedExpert",
    "SimConfig",
    "TaskInstructions",
    "UnknownTaskError",
    "available_simulators",
    "configure_mujoco_gl",
    "env_fn",
    "expert_policy_name",
    "get_instructions",
    "instruction_split",
    "make_env",
    "register_simulator",
    "resolve_task",
    "resolve_tasks",
    "sample_instruction",
]
