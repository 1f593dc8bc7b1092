"""Per-sample features of a frozen VLM: one layer's hidden states, pooled over the sample's tokens.

EmbodiedMidtrain represents every sample by the frozen VLM's last hidden state. Here:

- Pool samples are the whole conversation (user turn with its image(s) + assistant answer) in the
  model's own chat template, exactly as the trainer sees them.
- Robot samples are one camera frame plus the episode's instruction, formatted as a user turn in the
  same chat template (image first, then the instruction text), with no answer.

    feats, losses = extract_features(backbone, examples, layer=-1, pooling="mean", compute_loss=True)
    # feats: float32 [B, D]; losses: float32 [B] answer-token mean NLL (NaN without an answer)

Which tokens count (`tokens`):
- "prompt" (default): the tokens before the first answer token — template, image tokens, question and
  the assistant header. Robot samples are rendered with the same assistant header (generation prompt)
  and have no answer, so both kinds are pooled over the same kind of tokens; with "all", every pool
  sample would carry answer tokens no robot sample has, and a classifier could tell the two kinds
  apart by the template alone. Causal attention makes these features equal to embedding the prompt
  on its own, while the same forward pass still yields the answer loss.
- "all": every non-padding token, answers included.
"mean" averages the counted tokens; "last" takes the last counted one. Padding never reaches a
feature: pad positions are excluded from both poolings and masked out of attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from vlm2vla.backbones.chat import ChatExample
from vlm2vla.training.loss import IGNORE_INDEX

POOLINGS = ("mean", "last")


@dataclass(frozen=True)
class RobotFrame:
    """One robot sample to embed: which frame of which episode, and its instruction.

    Attributes:
        id: "robot/ep<episode:06d>/f<frame:06d>" (unique within a dataset).
        episode: episode index in the dataset.
        frame: frame index within the episode.
    """

    id: str
    episode: int
    frame: int


def robot_example(image: np.ndarray | Image.Image, instruction: str) -> ChatExample:
    """A robot frame + instruction as a VLM input: one user turn (image, then the instruction), no answer."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    return ChatExample(images=[image.convert("RGB")], messages=[{"role": "user", "content": instruction.strip()}])


def sample_robot_frames(episode_lengths: Sequence[int], frames_per_episode: int, seed: int) -> list[RobotFrame]:
    """Which frames of each episode to embed: `frames_per_episode` distinct frames drawn per episode.

    Deterministic given (lengths, frames_per_episode, seed); episode e draws from its own generator
    seeded by (seed, e), so adding episodes never changes the frames chosen for the earlier ones.

    Args:
        episode_lengths: frames per episode, in episode order.
        frames_per_episode: frames per episode (0 = every frame; more than an episode has = all of it).
        seed: sampling seed.

    Returns:
        Frames ordered by episode, then frame index.
    """
    if frames_per_episode < 0:
        raise ValueError(f"frames_per_episode must be >= 0, got {frames_per_episode}")
    out = []
    for ep, length in enumerate(episode_lengths):
        if frames_per_episode == 0 or frames_per_episode >= length:
            frames = np.arange(length)
        else:
            rng = np.random.default_rng([seed, ep])
            frames = np.sort(rng.choice(length, size=frames_per_episode, replace=False))
        out.extend(RobotFrame(f"robot/ep{ep:06d}/f{int(f):06d}", ep, int(f)) for f in frames)
    return out


def pool_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Pool one layer's hidden states over each row's non-padding tokens.

    Args:
        hidden: [B, L, D] hidden states.
        attention_mask: [B, L], 1 on real tokens, 0 on padding.
        pooling: "mean" (average of real tokens) or "last" (the last real token).

    Returns:
        [B, D] float32.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    mask = attention_mask.to(hidden.device).bool()
    hidden = hidden.float()
    if pooling == "last":
        # position of the last real token per row (works for left and right padding)
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = torch.where(mask, positions, -1).max(dim=1).values
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).float()  # [B, L, 1]
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample mean next-token NLL over answer tokens.

    Args:
        logits: [B, L, V].
        labels: [B, L], IGNORE_INDEX outside the answers.

    Returns:
        [B] float32; NaN for rows without answer tokens (robot prompts).
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    nll = torch.nn.functional.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE_INDEX,
                                            reduction="none")  # [B, L-1], 0 on ignored positions
    counts = (shift_labels != IGNORE_INDEX).sum(dim=1)
    return torch.where(counts > 0, nll.sum(dim=1) / counts.clamp(min=1), torch.nan)


def check_layer(layer: int, num_layers: int) -> int:
    """Index into `hidden_states` ((num_layers + 1) entries: embeddings, then each layer); negative from the end.

    Returns:
        The non-negative index.

    Raises:
        ValueError: out of range.
    """
    n = num_layers + 1
    if not -n <= layer < n:
        raise ValueError(f"layer must be in [{-n}, {n - 1}] for a model with {num_layers} layers "
                         f"(0 = embeddings, {num_layers} or -1 = last layer), got {layer}")
    return layer % n


TOKENS = ("prompt", "all")


def prompt_mask(attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B, L] bool: real tokens before each row's first answer token (all real tokens when it has none)."""
    answered = torch.cumsum((labels != IGNORE_INDEX).long(), dim=1) > 0
    return attention_mask.bool() & ~answered.to(attention_mask.device)


@torch.no_grad()
def batch_features(backbone, batch: dict, *, layer: int = -1, pooling: str = "mean", compute_loss: bool = False,
                   tokens: str = "prompt") -> tuple[np.ndarray, np.ndarray | None]:
    """Features (and optionally answer NLL) of an already collated batch.

    Args:
        backbone: a VLMBackbone.
        batch: output of `backbone.collate` (left padded, labels on answer tokens).
        layer: hidden-state index (0 = embeddings, -1 = last layer).
        pooling: "mean" or "last" (see the module docstring for which tokens count).
        compute_loss: also return the per-sample answer-token mean NLL.
        tokens: "prompt" or "all" (see the module docstring).

    Returns:
        feats float32 [B, D]; losses float32 [B] (NaN without answer tokens) or None.
    """
    if tokens not in TOKENS:
        raise ValueError(f"tokens must be one of {TOKENS}, got {tokens!r}")
    index = check_layer(layer, backbone.num_layers)
    inputs = batch if compute_loss else {k: v for k, v in batch.items() if k != "labels"}
    out = backbone(inputs, output_hidden_states=True)
    mask = prompt_mask(batch["attention_mask"], batch["labels"]) if tokens == "prompt" else batch["attention_mask"]
    feats = pool_hidden(out.hidden_states[index], mask, pooling)
    losses = answer_nll(out.logits, batch["labels"]).cpu().numpy() if compute_loss else None
    return feats.cpu().numpy().astype(np.float32), losses


def extract_features(backbone, examples: list[ChatExample], *, layer: int = -1, pooling: str = "mean",
                     max_length: int | None = None, compute_loss: bool = False, tokens: str = "prompt",
                     robot: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Collate `examples` with the backbone's chat template and return their pooled features.

    Args:
        backbone: a VLMBackbone (frozen; run under no_grad).
        examples: pool conversations or robot prompts (`robot_example`); batched together they are left padded.
        layer, pooling, compute_loss, tokens: see `batch_features`.
        max_length: cut rows to this many tokens (never cuts image tokens).
        robot: the examples are robot prompts (rendered with the assistant header when tokens="prompt").

    Returns:
        feats float32 [B, D]; losses float32 [B] or None.
    """
    batch = backbone.collate(examples, max_length=max_length, add_generation_prompt=robot and tokens == "prompt")
    return batch_features(backbone, batch, layer=layer, pooling=pooling, compute_loss=compute_loss, tokens=tokens)
