"""`vlm2vla gap`: how far each pool source sits from the robot data in the frozen VLM's feature space.

    vlm2vla gap run_dir=runs/gap features=runs/embed

For each pool source, and for the pool as a whole, against the robot samples: unbiased MMD^2
(RBF kernel, median-heuristic bandwidth) with a permutation p-value, the Fréchet distance, a
cross-validated logistic-regression two-sample AUC, and the uniformity (diversity) of each set.
Every set is capped at `max_samples` rows (seeded subsample) so the stage takes seconds on 10^5
samples; the pool as a whole is a size-proportional draw from the per-source subsamples.

Outputs in the run directory:
    gap.json   settings, robot set size and uniformity, one row of metrics per set
    gap.csv    the rows as a table
    gap_map.png  a 2-D map (t-SNE / UMAP / PCA) coloured by source, robot data highlighted
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vlm2vla.config import check_choices, choice
from vlm2vla.engine import gap_metrics as gm
from vlm2vla.fileio import atomic_path, atomic_write_json, atomic_write_text
from vlm2vla.runs import Run

log = logging.getLogger(__name__)

POOL_ALL = "pool (all)"
MAP_METHODS = ("tsne", "umap", "pca", "none")


@dataclass(frozen=True)
class GapConfig:
    """Settings of one gap analysis."""

    # where config, manifest and outputs go
    run_dir: str = "runs/gap"
    # the embed run directory (or its features/ folder) holding pool and robot features
    features: str = "runs/embed"
    # rows per set used by the metrics (seeded subsample); kernel metrics cost O(max_samples^2)
    max_samples: int = 2000
    # label shuffles for the MMD p-value (0 = no test)
    permutations: int = 200
    # folds of the classifier two-sample AUC
    folds: int = 5
    # uniformity temperature (the paper: 2)
    uniformity_t: float = 2.0
    # 2-D map of the features (umap needs umap-learn)
    map: str = choice(*MAP_METHODS)
    # points on the map, split evenly over the robot set and the sources
    map_samples: int = 3000
    # seed of every subsample, shuffle, fold split and map
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(self)
        if self.max_samples < 10:
            raise ValueError(f"max_samples must be >= 10, got {self.max_samples}")
        if self.permutations < 0:
            raise ValueError(f"permutations must be >= 0, got {self.permutations}")
        if self.folds < 2:
            raise ValueError(f"folds must be >= 2, got {self.folds}")


def gap(cfg: GapConfig, run: Run) -> dict:
    """Compute the gap metrics of every pool source (and the whole pool) against the robot data."""
    from vlm2vla.engine.feature_store import FeatureStore

    store = FeatureStore.open(cfg.features)
    run.update(inputs={"features": str(Path(cfg.features).resolve())})
    robot = _robot_features(store, cfg)
    subsets, sizes = _pool_subsets(store, cfg)
    subsets[POOL_ALL] = _proportional_union(subsets, sizes, cfg.max_samples, cfg.seed)
    sizes[POOL_ALL] = sum(sizes.values())
    rows = [set_metrics(name, X, sizes[name], robot, cfg) for name, X in subsets.items()]
    robot_u = gm.uniformity(robot, t=cfg.uniformity_t, seed=cfg.seed)
    result = {"settings": asdict(cfg), "features_meta": dict(store.meta),
              "robot": {"n": int(store_count(store, "robot")), "n_used": len(robot), "uniformity": robot_u},
              "sets": rows}
    atomic_write_json(run.dir / "gap.json", result)
    _write_csv(run.dir / "gap.csv", rows)
    outputs = {"gap": run.dir / "gap.json", "table": run.dir / "gap.csv"}
    if cfg.map != "none":
        plot_map(run.dir / "gap_map.png", robot, {k: v for k, v in subsets.items() if k != POOL_ALL}, cfg)
        outputs["map"] = run.dir / "gap_map.png"
    log.info("Gap to the robot data (robot uniformity %.3f):\n%s", robot_u, format_rows(rows))
    metrics = {"uniformity/robot": robot_u}
    for row in rows:
        for key in ("mmd2", "frechet", "auc", "uniformity"):
            metrics[f"{key}/{row['set']}"] = row[key]
    run.finish(metrics=metrics, outputs=outputs)
    return result


def store_count(store, kind: str) -> int:
    """Rows of one kind in the store's index."""
    import pyarrow.compute as pc

    return int(pc.sum(pc.equal(store.index()["kind"], kind)).as_py() or 0)


def _robot_features(store, cfg: GapConfig) -> np.ndarray:
    _, _, robot = store.load(kind="robot")
    if len(robot) < cfg.folds:
        raise ValueError(f"{cfg.features}: {len(robot)} robot feature rows; the gap needs at least {cfg.folds}. "
                         "Embed robot episodes with `vlm2vla embed` first.")
    return gm.subsample(robot, cfg.max_samples, cfg.seed)


def _pool_subsets(store, cfg: GapConfig) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per pool source: a seeded subsample of its features (one source in memory at a time) and its size."""
    index = store.index()
    pool_sources = [s for s, k in zip(index["source"].to_pylist(), index["kind"].to_pylist(), strict=True)
                    if k == "pool"]
    if not pool_sources:
        raise ValueError(f"{cfg.features}: no pool features; run `vlm2vla embed` on a pool first")
    names, counts = np.unique(np.asarray(pool_sources), return_counts=True)
    subsets, sizes = {}, {}
    for name, count in zip(names.tolist(), counts.tolist(), strict=True):
        _, _, X = store.load(kind="pool", sources=[name])
        if store.dim != X.shape[1]:
            raise ValueError(f"source {name}: {X.shape[1]}-dim features in a {store.dim}-dim store")
        subsets[name] = gm.subsample(X, cfg.max_samples, cfg.seed)
        sizes[name] = int(count)
    return subsets, sizes


def _proportional_union(subsets: dict[str, np.ndarray], sizes: dict[str, int], cap: int, seed: int) -> np.ndarray:
    """A draw of <= cap rows from the whole pool, each source contributing in proportion to its size."""
    total = sum(sizes.values())
    parts = [gm.subsample(X, max(1, round(cap * sizes[name] / total)), seed) if total > cap else X
             for name, X in subsets.items()]
    return np.concatenate(parts)


def set_metrics(name: str, X: np.ndarray, n_total: int, robot: np.ndarray, cfg: GapConfig) -> dict:
    """One row of gap metrics of set X against the robot features (NaN where the set is too small)."""
    row = {"set": name, "n": n_total, "n_used": len(X)}
    if len(X) < cfg.folds:
        log.warning("source %s has %d samples (< %d); its gap metrics are left empty", name, len(X), cfg.folds)
        return {**row, **dict.fromkeys(("mmd2", "mmd_p", "frechet", "auc", "uniformity"), float("nan"))}
    mmd2, p = gm.mmd_test(X, robot, permutations=cfg.permutations, seed=cfg.seed)
    return {**row, "mmd2": mmd2, "mmd_p": p, "frechet": gm.frechet_distance(X, robot),
            "auc": gm.classifier_auc(X, robot, folds=cfg.folds, seed=cfg.seed),
            "uniformity": gm.uniformity(X, t=cfg.uniformity_t, seed=cfg.seed)}


def format_rows(rows: list[dict]) -> str:
    """A fixed-width text table of the metric rows."""
    head = f"{'set':<24}{'n':>9}{'MMD^2':>11}{'p':>8}{'Frechet':>11}{'AUC':>7}{'unif':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['set'][:23]:<24}{r['n']:>9}{r['mmd2']:>11.4g}{r['mmd_p']:>8.3f}{r['frechet']:>11.4g}"
                     f"{r['auc']:>7.3f}{r['uniformity']:>7.3f}")
    return "\n".join(lines)


def plot_map(path: Path, robot: np.ndarray, subsets: dict[str, np.ndarray], cfg: GapConfig) -> None:
    """Scatter the 2-D map of robot + per-source samples; robot points drawn last, black-edged stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_set = max(3, cfg.map_samples // (len(subsets) + 1))
    parts = {"robot": gm.subsample(robot, per_set, cfg.seed),
             **{k: gm.subsample(v, per_set, cfg.seed) for k, v in subsets.items()}}
    xy = gm.embed_2d(np.concatenate(list(parts.values())), method=cfg.map, seed=cfg.seed)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    start = 0
    spans = {}
    for name, X in parts.items():
        spans[name] = slice(start, start + len(X))
        start += len(X)
    for name in subsets:
        ax.scatter(*xy[spans[name]].T, s=6, alpha=0.6, label=name)
    ax.scatter(*xy[spans["robot"]].T, s=28, marker="*", c="black", edgecolors="white", linewidths=0.3,
               label="robot", zorder=3)
    ax.set_title(f"Frozen-VLM features ({cfg.map})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=2, fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _write_csv(path: Path, rows: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())
