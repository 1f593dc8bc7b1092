"""The embedded pool: generated LLaVA-format sources that mirror the structure of real VLM pools.

    specs = generate_embedded_pool(EmbeddedPoolConfig(samples_per_source=200), Path("runs/pool/embedded"))
    # -> [(SourceSpec(name="captions", path=".../captions/data.jsonl"), "general"), ...]

General sources (PIL-drawn): captions, shapes_vqa, ocr, chart_qa. Embodied sources (Meta-World
frames from scripted-expert rollouts, or a LeRobot dataset): spatial, pointing, robot_state,
robot_action. One module per source, each with `generate(writer, n, rng, image_size | bank)`.
Every answer is short (a word, a number, a colour, "(x, y)" or a short caption) so accuracy can be
measured by exact match. Each source draws from its own generator, seeded by (seed, source index):
the same seed gives the same records and identical image bytes, whichever sources are chosen.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

import numpy as np

from vlm2vla.vlm_data.embedded.common import DATA_FILE, SourceWriter
from vlm2vla.vlm_data.embedded.config import ALL_SOURCES, EMBODIED_SOURCES, GENERAL_SOURCES, EmbeddedPoolConfig
from vlm2vla.vlm_data.sources import SourceSpec

log = logging.getLogger(__name__)

__all__ = ["ALL_SOURCES", "EMBODIED_SOURCES", "GENERAL_SOURCES", "EmbeddedPoolConfig", "generate_embedded_pool"]
# Frames kept from a robot dataset for robot_state / robot_action.
MAX_DATASET_FRAMES = 5000


def generate_embedded_pool(cfg: EmbeddedPoolConfig, out_dir: Path, progress: bool = True) -> list[tuple[SourceSpec,
                                                                                                          str]]:
    """Generate the configured sources under out_dir/<source>/ (skipping finished ones) and describe them.

    Args:
        cfg: which sources, sizes, seed, image size, frame origin.
        out_dir: folder of the generated sources (<run_dir>/embedded).
        progress: show progress bars.

    Returns:
        (source spec, "general" | "embodied") per source, in ALL_SOURCES order.
    """
    out_dir = Path(out_dir)
    todo = [s for s in cfg.sources if not (out_dir / s / DATA_FILE).is_file()]
    start = time.perf_counter()
    # One process on purpose: the simulator's software GL (llvmpipe) already uses every core, and
    # drawing general sources beside it made the whole run twice as slow on 2 cores.
    for group in ([s for s in todo if s in GENERAL_SOURCES], [s for s in todo if s in EMBODIED_SOURCES]):
        if group:
            generate_group(group, cfg, out_dir, progress)
    if todo:
        log.info("Generated embedded sources %s in %.1f s", todo, time.perf_counter() - start)
    ordered = [s for s in ALL_SOURCES if s in cfg.sources]
    return [(SourceSpec(name=s, path=str(out_dir / s / DATA_FILE)), cfg.kind(s)) for s in ordered]


def generate_group(names: list[str], cfg: EmbeddedPoolConfig, out_dir: Path, progress: bool = True) -> None:
    """Generate some sources in this process (the embodied ones share one frame bank).

    Args:
        names: source names, all general or all embodied.
        cfg: the embedded-pool config.
        out_dir: folder of the generated sources.
        progress: show progress bars.
    """
    context = cfg.image_size if names[0] in GENERAL_SOURCES else _frame_banks(names, cfg, progress)
    for name in names:
        start = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, ALL_SOURCES.index(name)])
        writer = SourceWriter(out_dir / name, name)
        source_context = context if isinstance(context, int) else context[name]
        importlib.import_module(f"vlm2vla.vlm_data.embedded.{name}").generate(writer, cfg.size(name), rng,
                                                                               source_context)
        writer.close()
        log.info("Embedded source %s: %d samples in %.1f s", name, cfg.size(name), time.perf_counter() - start)


def _frame_banks(names: list[str], cfg: EmbeddedPoolConfig, progress: bool) -> dict:
    """The frame bank of each embodied source: a robot dataset's frames where they suffice, else sim frames.

    spatial and pointing always need simulator state and the camera; robot_state and robot_action
    take a LeRobot dataset's frames when `cfg.robot_dataset` is set.
    """
    from vlm2vla.vlm_data.embedded.frames import dataset_frame_bank, sim_frame_bank

    dataset = dataset_frame_bank(cfg.robot_dataset, MAX_DATASET_FRAMES) if cfg.robot_dataset else None
    banks = {name: dataset for name in names if dataset is not None and name in ("robot_state", "robot_action")}
    if any(name not in banks for name in names):
        sim = sim_frame_bank(cfg.sim_tasks, cfg.sim_episodes_per_task, cfg.sim_action_noise, cfg.seed,
                             cfg.image_size, progress=progress)
        log.info("Simulator frame bank: %d frames from %d tasks", len(sim), len(cfg.sim_tasks))
        banks.update({name: sim for name in names if name not in banks})
    return banks
