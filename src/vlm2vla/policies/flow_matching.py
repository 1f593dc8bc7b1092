"""Flow matching shared by the action experts (pi0's convention).

A noisy chunk at time t is x_t = t * noise + (1 - t) * actions, so t = 1 is pure noise and t = 0 is
data. The expert learns the velocity u = dx_t/dt = noise - actions; at inference an Euler solver walks
from t = 1 down to t = 0:

    t = sample_time(batch, flow_options, device)            # training
    x_t, u = noisy_actions(actions, noise, t)
    actions = euler_integrate(velocity_fn, noise, num_steps)  # inference
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vlm2vla.policies.configuration import FlowMatchingOptions

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_time(batch_size: int, options: FlowMatchingOptions, device: torch.device | str = "cpu") -> torch.Tensor:
    """Training times t ~ Beta(alpha, beta), squeezed into [min_time, 1].

    Args:
        batch_size: how many times to draw.
        options: the Beta parameters and the smallest time.
        device: where the result lives.

    Returns:
        [B] float32 times.
    """
    beta = torch.distributions.Beta(torch.tensor(options.time_alpha), torch.tensor(options.time_beta))
    t = beta.sample((batch_size,)).to(device)
    # keep t away from 0 (pure data) so every sample still carries some noise
    return t * (1.0 - options.min_time) + options.min_time


def noisy_actions(actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The point on the straight path from data to noise, and the velocity along it.

    Args:
        actions: [B, T, A] clean chunk.
        noise: [B, T, A] Gaussian sample.
        t: [B] times in [0, 1].

    Returns:
        x_t [B, T, A] and the target velocity u = noise - actions [B, T, A].
    """
    t = t.view(-1, 1, 1).to(actions.dtype)
    return t * noise + (1.0 - t) * actions, noise - actions


def euler_integrate(velocity: VelocityFn, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from t = 1 (noise) to t = 0 (actions) with fixed Euler steps.

    Args:
        velocity: maps (x [B, T, A], t [B]) to the velocity [B, T, A].
        noise: [B, T, A] starting point at t = 1.
        num_steps: number of equal steps (>= 1).

    Returns:
        [B, T, A] the sample at t = 0.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    dt = -1.0 / num_steps
    x = noise
    for step in range(num_steps):
        t = torch.full((x.shape[0],), 1.0 + step * dt, device=x.device, dtype=x.dtype)
        x = x + dt * velocity(x, t)
    return x


def time_embedding(t: torch.Tensor, width: int, min_period: float = 4e-3, max_period: float = 4.0) -> torch.Tensor:
    """Sinusoidal embedding of flow times, periods spaced geometrically (pi0's choice of periods).

    Args:
        t: [B] times in [0, 1].
        width: embedding width (even).
        min_period: shortest period, resolves small time differences.
        max_period: longest period, larger than the [0, 1] range so the embedding stays monotone there.

    Returns:
        [B, width] float32: sin features, then cos features.
    """
    if width % 2:
        raise ValueError(f"time embedding width must be even, got {width}")
    fraction = torch.linspace(0.0, 1.0, width // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = t.float()[:, None] * (2 * math.pi / period)[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)
