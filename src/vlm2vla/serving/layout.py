"""The messages a served policy reads and writes: openpi's flat layout, checked against the policy's inputs.

One observation per request, a msgpack map (serving/codec.py):

    "observation/images/<camera>"  uint8 [H, W, 3]      one per camera the policy reads (H, W: its training data's)
    "observation/state"            float [state_dim]    when the policy reads a state, in robot units
    "prompt"                       str                  the instruction
    "noise"                        float [chunk, A]     optional: the start sample of a flow-matching expert
                                                        (repeatable evaluations; drawn by the server otherwise)

One reply per request: {"actions": float32 [chunk, A] in robot units, "server_timing": {...}}. Two control
messages: {"reset": true} restarts the connection's noise stream and is answered with {"reset": true};
{"stats": true} is answered with the server's counts (requests, errors, forwards and their batch sizes).
A request that breaks the layout is answered with a text frame that says what was wrong (openpi's client
raises it as a RuntimeError); the connection stays open. Clients whose keys differ (e.g. LIBERO's
"observation/image") are served through `aliases` (their key -> the layout's key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

IMAGE_PREFIX = "observation/images/"
STATE = "observation/state"
PROMPT = "prompt"
NOISE = "noise"
RESET = "reset"
STATS = "stats"
ACTIONS = "actions"
MAX_PROMPT_CHARS = 4096


class RequestError(ValueError):
    """A request that does not fit the served policy's layout; the text goes back to the client."""


def image_key(camera: str) -> str:
    """The request key of a camera's image."""
    return f"{IMAGE_PREFIX}{camera}"


@dataclass(frozen=True)
class ObservationLayout:
    """What one request must hold for a policy; checks requests and turns eval batches into requests.

    Attributes:
        cameras: the policy's cameras, in its order.
        image_shapes: camera -> (H, W, 3) its training frames had; a camera missing here takes any H, W.
        state_dim: state values per request (0 = no state).
        chunk_size: actions per reply.
        action_dim: values per action.
        aliases: client key -> layout key, applied to every request before it is checked.
    """

    cameras: tuple[str, ...]
    image_shapes: dict[str, tuple[int, int, int]]
    state_dim: int
    chunk_size: int
    action_dim: int
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_policy(cls, config: Any, input_features: dict[str, dict] | None,
                  aliases: dict[str, str] | None = None) -> ObservationLayout:
        """The layout of a VLAPolicy with `config` (VLAConfig) trained on data with `input_features`."""
        shapes = {}
        for camera in config.cameras:
            shape = (input_features or {}).get(f"observation.images.{camera}", {}).get("shape")
            if shape is not None and len(shape) == 3:
                # LeRobot stores [H, W, C]; some writers store channels first
                h, w = (shape[1], shape[2]) if shape[0] == 3 and shape[2] != 3 else (shape[0], shape[1])
                shapes[camera] = (int(h), int(w), 3)
        return cls(cameras=tuple(config.cameras), image_shapes=shapes, state_dim=config.state_dim,
                   chunk_size=config.chunk_size, action_dim=config.action_dim, aliases=dict(aliases or {}))

    def describe(self) -> dict[str, Any]:
        """The request and reply layout, for the metadata message a client gets on connect."""
        observation = {image_key(c): {"dtype": "uint8", "shape": list(self.image_shapes.get(c, ("H", "W", 3)))}
                       for c in self.cameras}
        if self.state_dim:
            observation[STATE] = {"dtype": "float32", "shape": [self.state_dim]}
        observation[PROMPT] = {"dtype": "str"}
        return {"observation": observation,
                "optional": {NOISE: {"dtype": "float32", "shape": [self.chunk_size, self.action_dim]}},
                "actions": {"key": ACTIONS, "dtype": "float32", "shape": [self.chunk_size, self.action_dim],
                            "units": "robot (the training data's action units)"},
                "aliases": self.aliases, "reset": {RESET: True}}

    def check(self, message: Any) -> tuple[dict[str, Any], np.ndarray | None]:
        """A request as the policy's item (LeRobot keys) and its optional start noise.

        Raises:
            RequestError: not a map, or a missing / misshapen / mistyped image, state, prompt or noise.
        """
        if not isinstance(message, dict):
            raise RequestError(f"a request must be a msgpack map of observation keys, got a "
                               f"{type(message).__name__}")
        message = {self.aliases.get(k, k): v for k, v in message.items()}
        item: dict[str, Any] = {}
        for camera in self.cameras:
            item[f"observation.images.{camera}"] = self._image(message, camera)
        if self.state_dim:
            state = self._array(message, STATE, "the robot state")
            if state.dtype.kind not in "iuf" or state.size != self.state_dim or state.ndim > 2:
                raise RequestError(f"{STATE!r} must hold {self.state_dim} numbers, got shape {list(state.shape)} "
                                   f"{state.dtype}")
            state = state.reshape(-1).astype(np.float32)
            if not np.isfinite(state).all():
                raise RequestError(f"{STATE!r} holds NaN or infinite values: {state.tolist()}")
            item["observation.state"] = state
        prompt = message.get(PROMPT)
        if not isinstance(prompt, str) or not prompt.strip():
            raise RequestError(f"{PROMPT!r} must be the instruction as a non-empty string, got "
                               f"{type(prompt).__name__ if prompt is not None else 'nothing'}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise RequestError(f"{PROMPT!r} has {len(prompt)} characters, at most {MAX_PROMPT_CHARS} are read")
        item["task"] = prompt
        noise = None
        if message.get(NOISE) is not None:
            noise = self._array(message, NOISE, "the start noise")
            if noise.dtype.kind != "f" or noise.shape != (self.chunk_size, self.action_dim):
                raise RequestError(f"{NOISE!r} must be float [{self.chunk_size}, {self.action_dim}], got "
                                   f"{list(noise.shape)} {noise.dtype}")
            if not np.isfinite(noise).all():
                raise RequestError(f"{NOISE!r} holds NaN or infinite values")
            noise = noise.astype(np.float32)
        return item, noise

    def request(self, batch: dict[str, Any], row: int, noise: np.ndarray | None = None) -> dict[str, Any]:
        """Row `row` of an eval observation batch (LeRobot keys, "task" list) as a request.

        Raises:
            RequestError: the batch lacks a camera or the state the served policy reads.
        """
        wanted = [f"observation.images.{c}" for c in self.cameras] + (["observation.state"] if self.state_dim else [])
        missing = [k for k in wanted if k not in batch]
        if missing:
            raise RequestError(f"the served policy reads {missing}, which the observations lack (they have "
                               f"{sorted(k for k in batch if k.startswith('observation.'))}): render the cameras "
                               f"it was trained on (e.g. sim.camera={self.cameras[0]})")
        message: dict[str, Any] = {image_key(c): np.ascontiguousarray(batch[f"observation.images.{c}"][row])
                                   for c in self.cameras}
        if self.state_dim:
            message[STATE] = np.asarray(batch["observation.state"][row], dtype=np.float32)
        message[PROMPT] = str(batch["task"][row])
        if noise is not None:
            message[NOISE] = np.asarray(noise, dtype=np.float32)
        return message

    def _array(self, message: dict, key: str, what: str) -> np.ndarray:
        if key not in message:
            raise RequestError(f"the request has no {key!r} ({what}); it has {sorted(map(str, message))}. "
                               f"Send the keys the metadata message lists")
        value = message[key]
        if not isinstance(value, np.ndarray):
            if isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
                return np.asarray(value, dtype=np.float32)
            raise RequestError(f"{key!r} ({what}) must be a NumPy array (openpi_client.msgpack_numpy packs them), "
                               f"got {type(value).__name__}")
        return value

    def _image(self, message: dict, camera: str) -> np.ndarray:
        key = image_key(camera)
        image = self._array(message, key, f"camera {camera!r}")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise RequestError(f"{key!r} must be a uint8 [H, W, 3] RGB image, got {list(image.shape)} {image.dtype}")
        want = self.image_shapes.get(camera)
        if want is not None and image.shape != want:
            raise RequestError(f"{key!r} is {image.shape[0]}x{image.shape[1]}, but the policy was trained on "
                               f"{want[0]}x{want[1]} frames of camera {camera!r}: resize it on the client")
        return image
