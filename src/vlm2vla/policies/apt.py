"""APT (Xu et al., 2026): a language-blind vision-action prior first, then new layers between its layers
that fuse VLM hidden states into the stream they read, through per-channel gates.

    stage 1   expert stack  P0  P1  ...  P(n-1)                 n = N/2 layers, language hidden
    stage 2   expert stack  P0 I0 P1 I1 ... P(n-1) I(n-1)        N layers, language seen
              inserted layer Ik reads  g_k * vl + (1 - g_k) * proj_k(h[d_k]),   g_k = sigmoid(w_k) [width]

`vl` is what the layer would read without fusion (pi0: the keys/values of its VLM layer; gr00t: the
projected features of options.feature_layer) and h[d_k] the VLM's hidden state after layer d_k, d_k
evenly spaced over the VLM as for N expert layers. Stage-1 layers keep the VLM layer they read, so
their weights keep their meaning. The experts build their stack from `layer_plan`, mix their inserted
layers' streams with `GatedFusion` once per observation (in encode_prefix), and `load_prior` moves a
stage-1 expert's weights into a stage-2 expert.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vlm2vla.policies.errors import PolicyCheckpointError


def vlm_layer_map(num_expert_layers: int, num_vlm_layers: int) -> list[int]:
    """Which VLM layer each expert layer reads: evenly spaced, first to last (one expert layer: the last).

    Args:
        num_expert_layers: n >= 1.
        num_vlm_layers: N >= 1.

    Returns:
        n VLM layer indices, e.g. n=2, N=4 -> [0, 3]; n=N -> [0, ..., N-1].
    """
    if num_expert_layers == 1:
        return [num_vlm_layers - 1]
    return [round(j * (num_vlm_layers - 1) / (num_expert_layers - 1)) for j in range(num_expert_layers)]


@dataclass(frozen=True)
class LayerSlot:
    """One layer of an expert's stack.

    Attributes:
        inserted: a stage-2 layer with no stage-1 counterpart (it reads a gated, fused stream).
        prior_index: its index in the stage-1 stack (None for inserted layers and for plain experts).
        vlm_layer: the VLM layer it reads (pi0's keys/values; for an inserted layer also the depth of the
            hidden state it fuses: hidden_states[vlm_layer + 1], that layer's output).
    """

    inserted: bool
    prior_index: int | None
    vlm_layer: int


def layer_plan(stage: int, num_layers: int, num_vlm_layers: int) -> list[LayerSlot]:
    """The stack of an expert whose final depth is `num_layers`, at APT stage `stage` (0 = plain expert).

    Raises:
        ValueError: APT (stage 1 or 2) with an odd number of layers.
    """
    if stage == 0:
        return [LayerSlot(False, None, m) for m in vlm_layer_map(num_layers, num_vlm_layers)]
    if num_layers % 2 or num_layers < 2:
        raise ValueError(f"APT needs an even expert depth N >= 2 (stage 1 has N/2 layers); the expert has "
                         f"{num_layers} layers: set pi0.num_layers / gr00t.num_layers to an even number")
    prior = [LayerSlot(False, k, m) for k, m in enumerate(vlm_layer_map(num_layers // 2, num_vlm_layers))]
    if stage == 1:
        return prior
    full = vlm_layer_map(num_layers, num_vlm_layers)
    return [slot for k, p in enumerate(prior) for slot in (p, LayerSlot(True, None, full[2 * k + 1]))]


class GatedFusion(nn.Module):
    """Gates (inserted layers, width) and one LayerNorm + Linear projection of the VLM width per inserted layer.

    `parts` projections of `width` channels each come out of one Linear (pi0 fuses keys and values under
    one gate); the gate of inserted layer k is sigmoid(gate_logits[k]).
    """

    def __init__(self, num_inserted: int, hidden_size: int, width: int, gate_init: float, parts: int = 1) -> None:
        super().__init__()
        self.width, self.parts = width, parts
        self.gate_logits = nn.Parameter(torch.full((num_inserted, width), float(gate_init)))
        self.proj = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, parts * width))
                                  for _ in range(num_inserted))

    def gate(self, k: int) -> torch.Tensor:
        """g_k = sigmoid(w_k): [width]."""
        return torch.sigmoid(self.gate_logits[k])

    def project(self, k: int, hidden: torch.Tensor) -> torch.Tensor:
        """proj_k(h): [B, L, hidden_size] -> [B, L, parts * width]."""
        return self.proj[k](hidden.to(self.gate_logits.dtype))

    def forward(self, k: int, vl: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """g_k * vl + (1 - g_k) * proj_k(hidden) for a [B, L, width] stream (parts == 1)."""
        g = self.gate(k)
        return g * vl + (1 - g) * self.project(k, hidden)


def zero_outputs(layer: nn.Module, names: tuple[str, ...]) -> None:
    """Zero the weights (and biases) of a layer's output projections, so its residual branches start at 0."""
    for name in names:
        module = layer.get_submodule(name)
        nn.init.zeros_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def load_prior(expert: nn.Module, stack: str, prior_state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy a stage-1 expert's weights into a stage-2 expert: `stack.k.*` -> `stack.<2k>.*`, the rest by name.

    Args:
        expert: the stage-2 expert (its `plan` says where each stage-1 layer goes).
        stack: the name of its layer list ("layers" for pi0, "blocks" for gr00t).
        prior_state: the stage-1 expert's state dict.
        source: where the stage-1 weights come from, for messages.

    Returns:
        The stage-2 parameter names left at their fresh initialisation (inserted layers and the fusion).

    Raises:
        PolicyCheckpointError: a stage-1 weight has no place or the wrong shape in the stage-2 expert.
    """
    where = {slot.prior_index: pos for pos, slot in enumerate(expert.plan) if slot.prior_index is not None}
    mapped = {}
    for name, value in prior_state.items():
        if name.startswith(f"{stack}."):
            index, rest = name[len(stack) + 1:].split(".", 1)
            if int(index) not in where:
                raise PolicyCheckpointError(f"{source} has {stack} layer {index}, but the stage-2 expert has only "
                                            f"{len(where)} stage-1 slots: its depth is not twice the stage-1 depth")
            name = f"{stack}.{where[int(index)]}.{rest}"
        mapped[name] = value
    own = expert.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} in {source}, {tuple(own[k].shape)} here" for k, v in mapped.items()
             if k in own and own[k].shape != v.shape]
    unknown = sorted(set(mapped) - set(own))
    if wrong or unknown:
        raise PolicyCheckpointError(f"the stage-1 expert in {source} does not fit this stage-2 expert: "
                                    f"{'; '.join(wrong + [f'{k} has no place here' for k in unknown])}")
    missing = expert.load_state_dict(mapped, strict=False).missing_keys
    inserted = {f"{stack}.{pos}." for pos, slot in enumerate(expert.plan) if slot.inserted}
    stray = [k for k in missing if not k.startswith(("fusion.", *inserted))]
    if stray:
        raise PolicyCheckpointError(f"the stage-1 expert in {source} lacks weights of its own layers: {stray}")
    return missing


def _tensor_difference(name: str, x: torch.Tensor, y: torch.Tensor, rtol: float, atol: float) -> str:
    """'' when x and y agree (compared in the lower-precision dtype of the two, so a bf16 copy of fp32
    weights matches), else what differs."""
    if x.shape != y.shape:
        return f"{name} has shape {tuple(x.shape)} vs {tuple(y.shape)}"
    dtype = x.dtype if x.element_size() <= y.element_size() else y.dtype
    if not torch.allclose(x.to("cpu", dtype).float(), y.to("cpu", dtype).float(), rtol=rtol, atol=atol):
        return f"{name} differs (max |difference| {float((x.float().cpu() - y.float().cpu()).abs().max()):.3g})"
    return ""


def first_difference(a: nn.Module, b: nn.Module, rtol: float = 1e-3, atol: float = 1e-5) -> str:
    """'' when two models have the same weights (names, shapes, values within tolerance), else the first difference."""
    sa, sb = a.state_dict(), b.state_dict()
    if set(sa) != set(sb):
        only_a, only_b = sorted(set(sa) - set(sb)), sorted(set(sb) - set(sa))
        return f"different weights: {only_a[:3]} only in the first, {only_b[:3]} only in the second"
    return next((d for name, x in sa.items() if (d := _tensor_difference(name, x, sb[name], rtol, atol))), "")


def first_difference_on_disk(folder: Path, model: nn.Module, rtol: float = 1e-3, atol: float = 1e-5) -> str | None:
    """`first_difference` between the weights saved in `folder` (*.safetensors) and `model`, read one tensor at
    a time, so a prior's VLM need not be loaded next to this run's (twice a 7B VLM's memory otherwise).

    Returns:
        '' when they agree, the first difference otherwise, or None when the files' tensor names are not
        the model's own (another saving convention: load the folder as a model and compare that instead).
        Weights the files leave out because they are tied to others (an lm_head tied to the embeddings)
        are not compared.
    """
    from safetensors import safe_open

    own = model.state_dict()
    files = sorted(folder.glob("*.safetensors"))
    handles = [safe_open(str(f), framework="pt") for f in files]
    names = {name: h for h in handles for name in h.keys()}
    if not files or not set(names) <= set(own):
        return None
    untied = {n for n in own if n not in names and not _tied_elsewhere(own, n, names)}
    if untied:
        return f"different weights: {sorted(untied)[:3]} only in this run's model"
    return next((d for name, h in names.items()
                 if (d := _tensor_difference(name, h.get_tensor(name), own[name], rtol, atol))), "")


def _tied_elsewhere(state: dict[str, torch.Tensor], name: str, saved: dict) -> bool:
    """Whether weight `name` of a state dict shares its storage with one saved under another name."""
    pointer = state[name].data_ptr()
    return any(other in saved for other, t in state.items() if other != name and t.data_ptr() == pointer)
