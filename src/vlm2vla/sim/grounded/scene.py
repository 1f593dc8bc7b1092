"""MJCF scenes of the language-grounded suite, built on Meta-World's Sawyer, table and assets.

Every scene holds ``NUM_TARGETS`` candidate objects (balls, pucks or blocks) and, for the families
that move an object somewhere, a flat goal marker. Objects are placed at reset (positions are not
baked into the file), so one file serves every layout.

MuJoCo resolves a file's <include>s and the mesh/texture paths inside them relative to the main
file, and Meta-World's includes climb out of ``sawyer_xyz/`` with "../objects/...". A generated
scene therefore has to live in a folder shaped like ``metaworld/assets``: we write it to
``<cache>/sawyer_xyz/<family>.xml`` next to symlinks to Meta-World's ``objects``, ``scene`` and
``textures`` folders (written once per process tree, atomically, so parallel workers can race).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_TARGETS = 3
# Colours of the colour-named targets. Not red: the Sawyer arm is red. Chosen to stay apart in
# hue after rendering at 128 px (tests/sim/test_grounded.py measures it).
COLOURS: dict[str, tuple[float, float, float]] = {
    "blue": (0.12, 0.32, 0.95),
    "green": (0.10, 0.75, 0.18),
    "yellow": (0.98, 0.85, 0.08),
}
# The spatial family's identical balls: colour must not tell them apart.
PLAIN = (0.92, 0.92, 0.92)
GOAL_RGBA = (0.15, 0.15, 0.15, 1.0)
# The suite's own camera: in front of the table, facing the robot and looking down at the
# workspace, so the candidates fill more of a 128 px frame than from corner2 (and no part of
# the arm hides them). Image right is world -x.
CAMERA = "front"
CAMERA_POS = (0.0, 1.3, 0.8)
CAMERA_XYAXES = "-1 0 0 0 -0.741 0.672"
CAMERA_FOVY = 42


# observation.environment_state: hand xyz, gripper opening, the candidates' xyz, goal xyz, one-hot of the named one.
ENV_STATE_DIM = 4 + 3 * NUM_TARGETS + 3 + NUM_TARGETS


@dataclass(frozen=True)
class SceneState:
    """The privileged state of one frame, unpacked (see ``pack_state`` for the layout)."""

    hand: np.ndarray  # [3]
    gripper: float
    objects: np.ndarray  # [NUM_TARGETS, 3], scene order
    goal: np.ndarray  # [3]
    named: int


def pack_state(hand_and_gripper: np.ndarray, objects: np.ndarray, goal: np.ndarray, named: int) -> np.ndarray:
    """observation.environment_state [ENV_STATE_DIM] float32 of one frame."""
    onehot = np.zeros(NUM_TARGETS, np.float32)
    onehot[named] = 1.0
    return np.concatenate([hand_and_gripper[:4], np.ravel(objects), goal, onehot]).astype(np.float32)


def unpack_state(state: np.ndarray) -> SceneState:
    """Inverse of ``pack_state``."""
    k = 4 + 3 * NUM_TARGETS
    return SceneState(hand=state[:3], gripper=float(state[3]), objects=state[4:k].reshape(NUM_TARGETS, 3),
                      goal=state[k:k + 3], named=int(np.argmax(state[k + 3:])))


@dataclass(frozen=True)
class SceneSpec:
    """What one family's scene holds: object kind and size, and whether there is a goal marker."""

    kind: str  # "ball" (no collisions, fixed in place), "puck" or "block" (free bodies)
    size: float  # ball radius, puck radius, block half-width (metres)
    coloured: bool  # True: COLOURS in order; False: PLAIN for every object
    goal: bool


def object_name(i: int) -> str:
    """Body name of candidate ``i`` (its geom is ``<name>_geom``)."""
    return f"target{i}"


def _object_xml(i: int, spec: SceneSpec) -> str:
    rgb = list(COLOURS.values())[i] if spec.coloured else PLAIN
    rgba = " ".join(f"{c:g}" for c in (*rgb, 1.0))
    name = object_name(i)
    if spec.kind == "ball":
        # Visual only: the hand reaching a ball must not knock it away, and a ball in the way of
        # the arm must not block it.
        return (f'<body name="{name}" pos="{0.15 * (i - 1)} 0.6 {spec.size}">'
                f'<geom name="{name}_geom" type="sphere" size="{spec.size}" rgba="{rgba}" '
                'contype="0" conaffinity="0"/></body>')
    shape = (f'type="cylinder" size="{spec.size} 0.02"' if spec.kind == "puck"
             else f'type="box" size="{spec.size} {spec.size} {spec.size}"')
    z = 0.02 if spec.kind == "puck" else spec.size
    # Mass, friction and contact softness of Meta-World's pick-place object (objGeom).
    return (f'<body name="{name}" pos="{0.15 * (i - 1)} 0.6 {z}">'
            f'<joint name="{name}_joint" type="free" limited="false" damping="0." armature="0."/>'
            '<inertial pos="0 0 0" mass=".75" diaginertia="8.80012e-04 8.80012e-04 8.80012e-04"/>'
            f'<geom name="{name}_geom" {shape} rgba="{rgba}" solimp="0.99 0.99 0.01" solref="0.01 1" '
            'contype="1" conaffinity="1" friction="1 0.1 0.002" condim="4"/></body>')


def scene_xml(spec: SceneSpec) -> str:
    """The MJCF text of a scene (see the module docstring for where it must be written)."""
    objects = "\n      ".join(_object_xml(i, spec) for i in range(NUM_TARGETS))
    camera = (f'<camera name="{CAMERA}" mode="fixed" pos="{" ".join(map(str, CAMERA_POS))}" '
              f'xyaxes="{CAMERA_XYAXES}" fovy="{CAMERA_FOVY}"/>')
    rgba = " ".join(f"{c:g}" for c in GOAL_RGBA)
    goal = (f'<site name="goal" pos="0 0.8 0.001" size="0.06 0.001" type="cylinder" rgba="{rgba}"/>'
            if spec.goal else '<site name="goal" pos="0 0.8 0.2" size="0.001" rgba="0 0 0 0"/>')
    return f"""<mujoco>
    <include file="../scene/basic_scene.xml"/>
    <include file="../objects/assets/xyz_base_dependencies.xml"/>
    <worldbody>
      <include file="../objects/assets/xyz_base.xml"/>
      {objects}
      {goal}
      {camera}
    </worldbody>
    <actuator>
        <position ctrllimited="true" ctrlrange="-1 1" joint="r_close" kp="400" user="1"/>
        <position ctrllimited="true" ctrlrange="-1 1" joint="l_close" kp="400" user="1"/>
    </actuator>
    <equality>
        <weld body1="mocap" body2="hand" solref="0.02 1"></weld>
    </equality>
</mujoco>
"""


def asset_root() -> Path:
    """The per-user folder generated scenes live in (shaped like metaworld/assets)."""
    import metaworld  # here, not at import: task names and colours must not pull in MuJoCo

    root = Path(tempfile.gettempdir()) / f"vlm2vla-grounded-{os.getuid()}"
    source = Path(metaworld.__file__).parent / "assets"
    (root / "sawyer_xyz").mkdir(parents=True, exist_ok=True)
    for sub in ("objects", "scene", "textures"):
        link = root / sub
        if link.is_symlink() and Path(os.readlink(link)) == source / sub:
            continue
        tmp = root / f".{sub}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(source / sub, target_is_directory=True)
        os.replace(tmp, link)  # atomic: a racing worker sees the old link or the new one
    return root


def write_scene(family: str, spec: SceneSpec) -> Path:
    """Write the scene of ``family`` (if its text changed) and return the file's path."""
    path = asset_root() / "sawyer_xyz" / f"grounded_{family}.xml"
    text = scene_xml(spec)
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path
