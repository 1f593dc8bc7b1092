"""`vlm2vla gap` and `vlm2vla select` end to end on a small synthetic feature store and pool."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlm2vla.cli import main
from vlm2vla.engine.feature_store import write_meta, write_shard
from vlm2vla.vlm_data.pool_io import write_pool
from vlm2vla.vlm_data.records import VLMSample
from vlm2vla.vlm_data.sources import SourceSpec
from vlm2vla.vlm_data.validate import SourceReport, validate_source

D = 12
SOURCES = {"embodied": 0.5, "vqa": 2.0, "text": 5.0}  # distance of each source from the robot cluster
PER_SOURCE = 60


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gap_select")
    image = root / "img.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(image)
    rng = np.random.default_rng(0)
    samples, feats, ids, srcs, losses = [], [], [], [], []
    for source, shift in SOURCES.items():
        for i in range(PER_SOURCE):
            sid = f"{source}/{i}"
            images = (str(image),) if source != "text" else ()
            prompt = "<image>\nWhat is shown?" if images else "Say something."
            samples.append(VLMSample(id=sid, source=source, images=images,
                                     conversations=(("human", prompt), ("gpt", f"answer {i}"))))
            x = rng.normal(size=D)
            x[0] += shift
            feats.append(x)
            ids.append(sid)
            srcs.append(source)
            losses.append(shift + rng.normal(scale=0.1))
    (root / "pool").mkdir()
    with open(root / "pool" / "pool.parquet", "wb") as f:
        write_pool(samples, f)
    features = root / "embed" / "features"
    write_meta(features, {"dim": D, "model": "synthetic", "layer": -1, "pooling": "mean"})
    write_shard(features, "pool-00000", ids[:100], srcs[:100], "pool", np.array(feats[:100]), losses[:100])
    write_shard(features, "pool-00001", ids[100:], srcs[100:], "pool", np.array(feats[100:]), losses[100:])
    robot = rng.normal(size=(80, D))
    write_shard(features, "robot-00000", [f"robot/{i}" for i in range(80)], ["metaworld"] * 80, "robot", robot)
    return root


def test_gap_stage(inputs, tmp_path):
    out = tmp_path / "gap"
    assert main(["gap", f"run_dir={out}", f"features={inputs / 'embed'}", "permutations=50", "folds=3",
                 "map=pca"]) == 0
    for name in ("gap.json", "gap.csv", "gap_map.png", "manifest.json"):
        assert (out / name).is_file(), name
    rows = {r["set"]: r for r in json.loads((out / "gap.json").read_text())["sets"]}
    assert set(rows) == {*SOURCES, "pool (all)"}
    for key in ("mmd2", "frechet", "auc"):
        assert rows["embodied"][key] < rows["vqa"][key] < rows["text"][key], key
    assert rows["text"]["mmd_p"] < 0.05
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("strategy", ["proximity", "random", "nearest", "centroid", "dsir"])
def test_select_stage(inputs, tmp_path, strategy):
    out = tmp_path / strategy
    assert main(["select", f"run_dir={out}", f"features={inputs / 'embed'}", f"pool={inputs / 'pool'}",
                 f"strategy={strategy}", "k=30", "estimator.eval_every=10", "estimator.max_steps=200"]) == 0
    for name in ("scores.parquet", "mixture.jsonl", "report.json", "score_hist.png", "manifest.json"):
        assert (out / name).is_file(), name
    scores = pq.read_table(out / "scores.parquet")
    assert scores.num_rows == 3 * PER_SOURCE
    assert sorted(scores["rank"].to_pylist()) == list(range(1, 3 * PER_SOURCE + 1))
    assert sum(scores["selected"].to_pylist()) == 30
    report = json.loads((out / "report.json").read_text())
    assert sum(c["selected"] for c in report["composition"].values()) == 30
    assert set(report["diversity"]) == {"selected", "pool", "robot"}
    if strategy == "proximity":
        assert report["estimator"]["val_acc"] >= 0.5 and (out / "estimator" / "model.safetensors").is_file()
        assert report["composition"]["embodied"]["selected"] > report["composition"]["text"]["selected"]
    # The mixture loads back as an ordinary LLaVA source, images resolved as absolute paths.
    spec = SourceSpec(name="mixture", path=str(out / "mixture.jsonl"))
    source_report = SourceReport(name="mixture")
    samples = list(validate_source(spec, source_report, seen_ids=set(), workers=1, progress=False))
    assert len(samples) == 30 and source_report.bad == 0
    assert {s.source for s in samples} <= set(SOURCES)
    assert all(p.startswith("/") for s in samples for p in s.images)


def test_select_quotas_and_clamp(inputs, tmp_path):
    out = tmp_path / "quota"
    assert main(["select", f"run_dir={out}", f"features={inputs / 'embed'}", f"pool={inputs / 'pool'}",
                 "strategy=centroid", "k=20", "quotas={text: 0.5}"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["composition"]["text"]["selected"] == 10
    big = tmp_path / "big"
    assert main(["select", f"run_dir={big}", f"features={inputs / 'embed'}", f"pool={inputs / 'pool'}",
                 "strategy=random", "k=100000"]) == 0
    assert json.loads((big / "report.json").read_text())["k"] == 3 * PER_SOURCE


def test_select_perplexity_strategies(inputs, tmp_path):
    for strategy in ("perplexity", "delta_perplexity"):
        out = tmp_path / strategy
        assert main(["select", f"run_dir={out}", f"features={inputs / 'embed'}", f"pool={inputs / 'pool'}",
                     f"strategy={strategy}", "fraction=0.2", f"vla_features={inputs / 'embed'}"]) == 0
        assert len((out / "mixture.jsonl").read_text().splitlines()) == 36
    # perplexity without a VLA-adapted store is a config error
    assert main(["select", f"run_dir={tmp_path / 'bad'}", "strategy=perplexity"]) == 2


def test_select_bad_inputs(inputs, tmp_path):
    # a store without robot features, and one without pool features: clear errors, exit code 2
    features = tmp_path / "mixed" / "features"
    write_meta(features, {"dim": D})
    write_shard(features, "pool-00000", ["vqa/0", "vqa/1"], ["vqa", "vqa"], "pool", np.zeros((2, D)))
    write_meta(tmp_path / "empty" / "features", {"dim": D})
    assert main(["select", f"run_dir={tmp_path / 'norobot'}", f"features={features.parent}",
                 f"pool={inputs / 'pool'}", "strategy=centroid", "k=1"]) == 2
    assert main(["select", f"run_dir={tmp_path / 'nopool'}", f"features={tmp_path / 'empty'}",
                 f"pool={inputs / 'pool'}", "strategy=random", "k=1"]) == 2
    assert main(["gap", f"run_dir={tmp_path / 'gapnopool'}", f"features={tmp_path / 'empty'}"]) == 2
