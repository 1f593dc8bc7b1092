"""Settings of the embedded (generated) pool; kept apart so `PoolConfig` imports no generator code."""

from __future__ import annotations

from dataclasses import dataclass, field

GENERAL_SOURCES = ("captions", "shapes_vqa", "ocr", "chart_qa")
EMBODIED_SOURCES = ("spatial", "pointing", "robot_state", "robot_action")
ALL_SOURCES = GENERAL_SOURCES + EMBODIED_SOURCES
# Tasks whose scripted experts provide the simulator frames (each has one clearly visible object).
DEFAULT_SIM_TASKS = ("push-v3", "pick-place-v3", "reach-v3", "drawer-close-v3", "button-press-topdown-v3",
                     "door-open-v3")


@dataclass(frozen=True)
class EmbeddedPoolConfig:
    """The built-in pool: 4 general + 4 embodied generated sources, deterministic by seed."""

    # generate the embedded sources and add them to the pool
    enabled: bool = True
    # which sources to generate (see ALL_SOURCES)
    sources: tuple[str, ...] = ALL_SOURCES
    # samples per source
    samples_per_source: int = 1000
    # per-source overrides of samples_per_source, e.g. {ocr: 2000}
    sizes: dict[str, int] = field(default_factory=dict)
    # seed of everything generated (same seed -> same records and identical image bytes)
    seed: int = 0
    # side of the square images in pixels (the simulator's default size)
    image_size: int = 128
    # a LeRobot dataset (from `vlm2vla collect`) whose frames feed robot_state / robot_action;
    # empty = generate frames by running scripted experts in the simulator
    robot_dataset: str = ""
    # simulator tasks whose expert rollouts give the frames: Meta-World tasks, or the grounded suite's
    # (e.g. [grounded]: its scenes, front camera, and every coloured candidate to point at and relate)
    sim_tasks: tuple[str, ...] = DEFAULT_SIM_TASKS
    # expert episodes per task for the frame bank
    sim_episodes_per_task: int = 4
    # std of Gaussian noise on the expert's actions (varied poses and gripper states)
    sim_action_noise: float = 0.3

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sources) - set(ALL_SOURCES))
        if unknown:
            raise ValueError(f"embedded.sources has unknown names {unknown}; choose from {list(ALL_SOURCES)}.")
        bad_sizes = {k: v for k, v in self.sizes.items() if k not in ALL_SOURCES or v < 1}
        if self.samples_per_source < 1 or bad_sizes:
            raise ValueError(f"embedded sizes must be >= 1 and name known sources; got samples_per_source="
                             f"{self.samples_per_source}, sizes={bad_sizes or dict(self.sizes)}.")
        if self.image_size < 32:
            raise ValueError(f"embedded.image_size must be >= 32 pixels, got {self.image_size}.")
        if self.sim_episodes_per_task < 1:
            raise ValueError(f"embedded.sim_episodes_per_task must be >= 1, got {self.sim_episodes_per_task}.")

    def size(self, source: str) -> int:
        """Number of samples to generate for `source`."""
        return int(self.sizes.get(source, self.samples_per_source))

    @staticmethod
    def kind(source: str) -> str:
        """"general" or "embodied"."""
        return "general" if source in GENERAL_SOURCES else "embodied"
