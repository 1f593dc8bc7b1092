"""The EmbodiedMidtrain proximity estimator: how robot-like a VLM sample's features are.

    est, info = fit_estimator(robot_X, pool_X, EstimatorConfig(seed=0))
    scores = est.score(pool_X)          # [n] in (0, 1); higher = closer to the robot data
    est.save("runs/select/estimator"); est = ProximityEstimator.load("runs/select/estimator")

As in the paper: one linear layer + sigmoid on standardised features, BCE loss, robot (VLA)
samples labelled 1 and pool (VLM) samples 0, balanced batches (half robot, half pool), early
stop once the held-out balanced accuracy reaches 90%. With balanced classes the Bayes-optimal
output is p_VLA(x) / (p_VLA(x) + p_VLM(x)), so ranking by the score ranks by the density ratio.
`hidden > 0` swaps the linear layer for a one-hidden-layer MLP.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vlm2vla.engine.scoring import check_features
from vlm2vla.fileio import atomic_path, atomic_write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EstimatorConfig:
    """Training settings of the proximity estimator."""

    # samples per batch, half robot and half pool (the paper uses 128)
    batch_size: int = 128
    # hidden units of an MLP variant; 0 = the paper's single linear layer
    hidden: int = 0
    # AdamW learning rate
    lr: float = 1e-3
    # AdamW weight decay
    weight_decay: float = 1e-4
    # stop once the held-out balanced accuracy reaches this (the paper: 0.9); > 1 never stops early
    target_val_acc: float = 0.9
    # optimizer steps between validation checks
    eval_every: int = 50
    # hard cap on optimizer steps
    max_steps: int = 5000
    # fraction of each class held out for validation
    val_fraction: float = 0.1
    # seed of the split, the batches and the initial weights
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.batch_size % 2:
            raise ValueError(f"batch_size must be an even number >= 2, got {self.batch_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.max_steps < 1 or self.eval_every < 1:
            raise ValueError(f"max_steps and eval_every must be >= 1, got {self.max_steps}, {self.eval_every}")
        if self.hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {self.hidden}")


class ProximityEstimator:
    """A fitted estimator: feature standardisation + a linear (or MLP) logit + sigmoid."""

    def __init__(self, net: nn.Module, mean: np.ndarray, std: np.ndarray, info: dict | None = None) -> None:
        self.net = net.eval()
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.info = dict(info or {})

    @property
    def dim(self) -> int:
        """Feature dimension the estimator expects."""
        return int(self.mean.shape[0])

    @torch.no_grad()
    def logits(self, X: np.ndarray, batch_rows: int = 65536) -> np.ndarray:
        """Logits [n] float32 of features X [n, D] (any float dtype), in batches."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"the estimator takes {self.dim}-dim features, got an array of shape {X.shape}")
        out = np.empty(len(X), dtype=np.float32)
        for start in range(0, len(X), batch_rows):
            chunk = (X[start:start + batch_rows].astype(np.float32) - self.mean) / self.std
            out[start:start + len(chunk)] = self.net(torch.from_numpy(chunk)).squeeze(-1).numpy()
        return out

    def score(self, X: np.ndarray, batch_rows: int = 65536) -> np.ndarray:
        """Proximity scores [n] in (0, 1): the sigmoid output, an estimate of p_VLA / (p_VLA + p_VLM)."""
        return (1.0 / (1.0 + np.exp(-self.logits(X, batch_rows).astype(np.float64)))).astype(np.float32)

    def save(self, directory: str | Path) -> None:
        """Write model.safetensors (weights, mean, std) and estimator.json (architecture, training info)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}
        tensors["mean"] = torch.from_numpy(self.mean)
        tensors["std"] = torch.from_numpy(self.std)
        with atomic_path(directory / "model.safetensors") as tmp:
            save_file(tensors, str(tmp))
        atomic_write_json(directory / "estimator.json", {"dim": self.dim, "hidden": _hidden_of(self.net),
                                                         **self.info})

    @classmethod
    def load(cls, directory: str | Path) -> ProximityEstimator:
        """Read an estimator written by `save`."""
        directory = Path(directory)
        info = json.loads((directory / "estimator.json").read_text())
        tensors = load_file(str(directory / "model.safetensors"))
        net = build_net(int(info["dim"]), int(info["hidden"]))
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        return cls(net, tensors["mean"].numpy(), tensors["std"].numpy(), info)


def build_net(dim: int, hidden: int = 0) -> nn.Module:
    """The logit network: Linear(dim, 1), or Linear -> GELU -> Linear(1) when hidden > 0."""
    if hidden <= 0:
        return nn.Sequential(nn.Linear(dim, 1))
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))


def fit_estimator(robot_X: np.ndarray, pool_X: np.ndarray, cfg: EstimatorConfig) -> tuple[ProximityEstimator, dict]:
    """Train the proximity estimator (robot = 1, pool = 0) until the validation target or max_steps.

    Args:
        robot_X: robot features [n_r, D] (positives).
        pool_X: pool features [n_p, D] (negatives); a seeded subsample is fine for a huge pool.
        cfg: training settings.

    Returns:
        (estimator, info): info holds steps, val_acc (balanced accuracy), stopped_early and the
        validation curve [(step, acc), ...].
    """
    _check_inputs(robot_X, pool_X)
    rng = np.random.default_rng(cfg.seed)
    r_train, r_val = _split(len(robot_X), cfg.val_fraction, rng)
    p_train, p_val = _split(len(pool_X), cfg.val_fraction, rng)
    # Standardise on the training rows of both classes together (Welford-free: float64 sums).
    train_rows = np.concatenate([np.asarray(robot_X[r_train], np.float64), np.asarray(pool_X[p_train], np.float64)])
    mean = train_rows.mean(0).astype(np.float32)
    std = np.maximum(train_rows.std(0), 1e-6).astype(np.float32)
    del train_rows
    R = torch.from_numpy((np.asarray(robot_X[r_train], np.float32) - mean) / std)
    P = torch.from_numpy((np.asarray(pool_X[p_train], np.float32) - mean) / std)
    val = _val_set(robot_X, pool_X, r_val, p_val, mean, std)
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        net = build_net(R.shape[1], cfg.hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # 64+64-row steps are too small to gain from intra-op threads; on a loaded CPU the threads'
    # synchronisation dominated (18 s vs 3 s for 450 steps on 100k x 512), so train single-threaded.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        step, acc, curve = _train(net, opt, R, P, val, cfg, gen)
    finally:
        torch.set_num_threads(threads)
    info = {"steps": step, "val_acc": acc, "stopped_early": acc >= cfg.target_val_acc, "curve": curve,
            "config": asdict(cfg), "n_robot": len(robot_X), "n_pool": len(pool_X)}
    log.info("Proximity estimator: %d steps, validation balanced accuracy %.3f%s", step, acc,
             " (early stop)" if info["stopped_early"] else "")
    return ProximityEstimator(net, mean, std, info), info


def _train(net, opt, R, P, val, cfg: EstimatorConfig, gen: torch.Generator) -> tuple[int, float, list]:
    """The optimisation loop; returns (steps taken, last validation accuracy, validation curve)."""
    half = cfg.batch_size // 2
    labels = torch.cat([torch.ones(half), torch.zeros(half)])
    curve: list[tuple[int, float]] = []
    step, acc = 0, 0.0
    for step in range(1, cfg.max_steps + 1):
        # Both halves are drawn with replacement, so the smaller side is oversampled to balance.
        r_idx = torch.randint(len(R), (half,), generator=gen)
        p_idx = torch.randint(len(P), (half,), generator=gen)
        logits = net(torch.cat([R[r_idx], P[p_idx]])).squeeze(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            acc = _balanced_accuracy(net, *val)
            curve.append((step, acc))
            if acc >= cfg.target_val_acc:
                break
    return step, acc, curve


def _check_inputs(robot_X: np.ndarray, pool_X: np.ndarray) -> None:
    check_features(pool_X, robot_X)
    if len(robot_X) < 2 or len(pool_X) < 2:
        raise ValueError(f"the estimator needs >= 2 robot and >= 2 pool samples; got {len(robot_X)} and "
                         f"{len(pool_X)}")


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) row indices, at least one of each."""
    perm = rng.permutation(n)
    n_val = min(max(1, round(n * fraction)), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _val_set(robot_X, pool_X, r_val, p_val, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    X = np.concatenate([np.asarray(robot_X[r_val], np.float32), np.asarray(pool_X[p_val], np.float32)])
    y = np.r_[np.ones(len(r_val)), np.zeros(len(p_val))]
    return torch.from_numpy((X - mean) / std), torch.from_numpy(y)


@torch.no_grad()
def _balanced_accuracy(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Mean of the per-class accuracies: a 99:1 pool/robot split cannot pass by predicting 'pool'."""
    pred = (net(X).squeeze(-1) > 0).double()
    pos, neg = y == 1, y == 0
    return float(0.5 * ((pred[pos] == 1).double().mean() + (pred[neg] == 0).double().mean()))


def _hidden_of(net: nn.Module) -> int:
    return 0 if len(net) == 1 else int(net[0].out_features)
