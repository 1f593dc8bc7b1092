"""`vlm2vla select`: score every pool sample, keep the best K, and write the curated mixture.

    vlm2vla select run_dir=runs/select features=runs/embed pool=runs/pool strategy=proximity fraction=0.1

The default strategy is EmbodiedMidtrain's proximity estimator (trained on robot vs pool features,
then scored over the pool shard by shard); the paper's baselines and DSIR are alternatives at the
same budget (see engine/strategies.py). `k` (a count) wins over `fraction` when both are set.

Outputs in the run directory:
    scores.parquet   id, source, score, rank (1 = best), selected -- one row per pool sample
    mixture.jsonl    the selected samples in LLaVA format (id, source, image, conversations), best first
    report.json      composition by source (selected vs pool), diversity (uniformity) of selected /
                     pool / robot, estimator validation accuracy
    score_hist.png   score histograms per source
    estimator/       the proximity estimator (safetensors + JSON), for strategy=proximity
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlm2vla.config import check_choices, choice
from vlm2vla.engine import scoring as sel
from vlm2vla.engine.feature_store import FeatureStore
from vlm2vla.engine.gap_metrics import subsample, uniformity
from vlm2vla.engine.proximity import EstimatorConfig
from vlm2vla.engine.strategies import NEEDS_VLA_FEATURES, STRATEGIES, ScoringInputs
from vlm2vla.fileio import atomic_path, atomic_write_json
from vlm2vla.runs import Run
from vlm2vla.vlm_data.pool_io import read_pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectConfig:
    """Settings of one selection run."""

    # where config, manifest and outputs go
    run_dir: str = "runs/select"
    # the embed run directory (or features/ folder) with pool and robot features
    features: str = "runs/embed"
    # the pool run directory (or its pool.parquet) the mixture's samples come from
    pool: str = "runs/pool"
    # how the pool is scored: the proximity estimator (EmbodiedMidtrain) or a baseline at the same budget
    strategy: str = choice(*STRATEGIES.names())
    # budget as a count of samples; wins over `fraction` when set; clamped (with a warning) to the pool size
    k: int | None = None
    # budget as a share of the pool, used when k is unset
    fraction: float = 0.1
    # optional per-source shares of the budget, e.g. {vqa: 0.5}; the rest goes to the global top
    quotas: dict[str, float] = field(default_factory=dict)
    # proximity estimator training settings
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    # pool rows (seeded subsample) the estimator trains on
    estimator_pool_samples: int = 200_000
    # embed run of the VLA-adapted model; its loss column drives perplexity and delta_perplexity
    vla_features: str | None = None
    # DSIR density: gaussian (PCA + Gaussians) or hashed (random-hyperplane buckets)
    dsir_method: str = choice("gaussian", "hashed")
    # DSIR reduced dims / hyperplanes
    dsir_dims: int = 32
    # rows per streamed feature batch
    batch_rows: int = 65536
    # rows per set used for the uniformity figures in the report
    report_samples: int = 2000
    # seed of every random choice (estimator, random strategy, DSIR noise, subsamples)
    seed: int = 0

    def __post_init__(self) -> None:
        check_choices(self)
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.k is None and not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.strategy in NEEDS_VLA_FEATURES and not self.vla_features:
            raise ValueError(f"strategy={self.strategy} needs vla_features=<embed run of the VLA-adapted model>")


def select(cfg: SelectConfig, run: Run) -> dict:
    """Score the pool with `cfg.strategy`, pick K samples, write scores, mixture and report."""
    store = FeatureStore.open(cfg.features)
    run.update(inputs={"features": str(Path(cfg.features).resolve()), "pool": str(Path(cfg.pool).resolve()),
                       **({"vla_features": cfg.vla_features} if cfg.vla_features else {})})
    ids, sources, scores, info = score_pool(cfg, store, run.dir)
    k = sel.resolve_k(cfg.k, None if cfg.k is not None else cfg.fraction, len(ids))
    chosen = sel.select_top_k(ids, sources, scores, k, quotas=cfg.quotas or None)
    rank = np.empty(len(ids), dtype=np.int64)
    rank[sel.rank_order(ids, scores)] = np.arange(1, len(ids) + 1)
    selected = np.zeros(len(ids), dtype=bool)
    selected[chosen] = True
    write_scores(run.dir / "scores.parquet", ids, sources, scores, rank, selected)
    n_written = write_mixture(run.dir / "mixture.jsonl", cfg.pool, ids[chosen])
    report = build_report(cfg, store, ids, sources, selected, info)
    report["k"] = n_written
    atomic_write_json(run.dir / "report.json", report)
    plot_histograms(run.dir / "score_hist.png", sources, scores, selected, cfg.strategy)
    log.info("Selected %d of %d pool samples with %s:\n%s", n_written, len(ids), cfg.strategy,
             _format_composition(report["composition"]))
    metrics = {"k": n_written, "pool_size": len(ids), **{f"uniformity/{k}": v for k, v in report["diversity"].items()},
               **{f"share/{s}": c["selected_share"] for s, c in report["composition"].items()}}
    if "val_acc" in info:
        metrics["estimator/val_acc"] = info["val_acc"]
    run.finish(metrics=metrics, outputs={"scores": run.dir / "scores.parquet", "mixture": run.dir / "mixture.jsonl",
                                         "report": run.dir / "report.json"})
    return report


def score_pool(cfg: SelectConfig, store, run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(ids, sources, scores, info) of every pool sample in index order under `cfg.strategy`."""
    index = store.index()
    pool_rows = np.asarray(index["kind"].to_pylist()) == "pool"
    ids = np.asarray(index["id"].to_pylist(), dtype=str)[pool_rows]
    sources = np.asarray(index["source"].to_pylist(), dtype=str)[pool_rows]
    if len(ids) == 0:
        raise ValueError(f"{cfg.features}: no pool features; run `vlm2vla embed` on a non-empty pool")
    inputs = ScoringInputs(cfg, store, ids, sources, run_dir, index, pool_rows)
    scores, info = STRATEGIES.load(cfg.strategy)(inputs)
    return ids, sources, scores, info


def write_scores(path: Path, ids, sources, scores, rank, selected) -> None:
    """scores.parquet: id, source, score, rank (1 = best), selected."""
    table = pa.table({"id": pa.array(ids.tolist(), pa.string()), "source": pa.array(sources.tolist(), pa.string()),
                      "score": pa.array(np.asarray(scores, np.float64)), "rank": pa.array(rank),
                      "selected": pa.array(selected)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_mixture(path: Path, pool: str, chosen_ids: np.ndarray) -> int:
    """Write the chosen pool samples (best first) as LLaVA JSONL; returns the number written.

    Raises:
        ValueError: naming ids that the features hold but the pool file does not (a different pool).
    """
    order = {str(i): n for n, i in enumerate(chosen_ids)}
    records: list[dict | None] = [None] * len(order)
    for sample in read_pool(pool):
        n = order.get(sample.id)
        if n is None:
            continue
        record = {"id": sample.id, "source": sample.source,
                  "conversations": [{"from": r, "value": t} for r, t in sample.conversations]}
        if sample.images:
            record["image"] = sample.images[0] if len(sample.images) == 1 else list(sample.images)
        records[n] = record
    missing = [str(chosen_ids[n]) for n, r in enumerate(records) if r is None]
    if missing:
        raise ValueError(f"{len(missing)} selected ids are not in the pool {pool} (e.g. {missing[:3]}); "
                         "select with the pool the features were embedded from")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(records)


def build_report(cfg: SelectConfig, store, ids, sources, selected, info: dict) -> dict:
    """Composition by source (selected vs pool), diversity of selected / pool / robot, estimator info."""
    names, pool_counts = np.unique(sources, return_counts=True)
    n_sel = int(selected.sum())
    composition = {}
    for name, count in zip(names.tolist(), pool_counts.tolist(), strict=True):
        picked = int(selected[sources == name].sum())
        composition[name] = {"pool": count, "pool_share": count / len(ids), "selected": picked,
                             "selected_share": picked / max(n_sel, 1), "selected_rate": picked / count}
    return {"strategy": cfg.strategy, "pool_size": len(ids), "settings": asdict(cfg),
            "composition": composition, "diversity": _diversity(cfg, store, ids, selected), "estimator": info}


def _diversity(cfg: SelectConfig, store, ids: np.ndarray, selected: np.ndarray) -> dict:
    """Uniformity of seeded subsamples of the selected set, the pool and the robot set (one streaming pass)."""
    rng = np.random.default_rng(cfg.seed + 1)
    cap = cfg.report_samples
    sel_ids = set(ids[selected].tolist())
    p_pool, p_sel = min(1.0, cap / len(ids)), min(1.0, cap / max(len(sel_ids), 1))
    pool_parts, sel_parts = [], []
    for batch_ids, _, X in store.iter_batches(kind="pool", batch_rows=cfg.batch_rows):
        u = rng.random(len(X))
        pool_parts.append(X[u < p_pool])
        in_sel = np.fromiter((i in sel_ids for i in batch_ids.tolist()), bool, len(batch_ids))
        sel_parts.append(X[in_sel & (u < p_sel)])
    _, _, robot = store.load(kind="robot")
    out = {}
    for name, parts in (("selected", sel_parts), ("pool", pool_parts), ("robot", [robot])):
        X = subsample(np.concatenate(parts), cap, cfg.seed)
        out[name] = uniformity(X, seed=cfg.seed) if len(X) >= 2 else float("nan")
    return out


def plot_histograms(path: Path, sources: np.ndarray, scores: np.ndarray, selected: np.ndarray, strategy: str) -> None:
    """Overlaid score histograms per source; the dashed line is the lowest selected score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = np.isfinite(scores)
    bins = np.linspace(scores[finite].min(), scores[finite].max() + 1e-12, 50) if finite.any() else 10
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for name in np.unique(sources).tolist():
        rows = (sources == name) & finite
        ax.hist(scores[rows], bins=bins, alpha=0.5, density=True, label=f"{name} ({rows.sum()})")
    if selected.any() and finite[selected].any():
        ax.axvline(scores[selected & finite].min(), color="black", linestyle="--", label="selection cut")
    ax.set_xlabel(f"{strategy} score")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _format_composition(composition: dict) -> str:
    lines = [f"{'source':<24}{'pool':>9}{'pool %':>8}{'selected':>10}{'sel %':>8}"]
    for name, c in composition.items():
        lines.append(f"{name[:23]:<24}{c['pool']:>9}{100 * c['pool_share']:>7.1f}%{c['selected']:>10}"
                     f"{100 * c['selected_share']:>7.1f}%")
    return "\n".join(lines)
