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
# How much the VLA-adapted model lowers each source's answer loss (delta perplexity's signal).
VLA_GAIN = {"embodied": 2.0, "vqa": 1.0, "text": 0.1}
PER_SOURCE = 60
# A common offset of every feature (pool and robot) along one axis: real features are not centred at the
# origin, and the cosine-based strategies (nearest, centroid) are meaningless for data that is.
OFFSET = 6.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gap_select")
    image = root / "img.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(image)
    rng = np.random.default_rng(0)
    samples, feats, ids, srcs, losses, vla_losses = [], [], [], [], [], []
    for source, shift in SOURCES.items():
        for i in range(PER_SOURCE):
            sid = f"{source}/{i}"
            images = (str(image),) if source != "text" else ()
            prompt = "<image>\nWhat is shown?" if images else "Say something."
            samples.append(VLMSample(id=sid, source=source, images=images,
                                     conversations=(("human", prompt), ("gpt", f"answer {i}"))))
            x = rng.normal(size=D)
            x[0] += shift
            x[2] += OFFSET
            feats.append(x)
            ids.append(sid)
            srcs.append(source)
            losses.append(shift + rng.normal(scale=0.1))
            vla_losses.append(losses[-1] - VLA_GAIN[source] + rng.normal(scale=0.05))
    (root / "pool").mkdir()
    with open(root / "pool" / "pool.parquet", "wb") as f:
        write_pool(samples, f)
    robot = rng.normal(size=(80, D))
    robot[:, 2] += OFFSET
    # "embed": the base VLM's features and losses; "embed_vla": the same samples under a VLA-adapted VLM;
    # "embed_separable": the robot cluster moved 4 units off every pool source along a second axis, so a
    # linear estimator can tell them apart at >90% (its early-stop target).
    separable = robot.copy()
    separable[:, 1] += 4.0
    for name, loss, robot_x in (("embed", losses, robot), ("embed_vla", vla_losses, robot),
                                ("embed_separable", losses, separable)):
        features = root / name / "features"
        write_meta(features, {"dim": D, "model": "synthetic", "layer": -1, "pooling": "mean"})
        write_shard(features, "pool-00000", ids[:100], srcs[:100], "pool", np.array(feats[:100]), loss[:100])
        write_shard(features, "pool-00001", ids[100:], srcs[100:], "pool", np.array(feats[100:]), loss[100:])
        write_shard(features, "robot-00000", [f"robot/{i}" for i in range(80)], ["metaworld"] * 80, "robot",
                    robot_x)
    return root


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_gap_stage(inputs, tmp_path, method):
    out = tmp_path / "gap"
    assert main(["gap", f"run_dir={out}", f"features={inputs / 'embed'}", "permutations=50", "folds=3",
                 f"map={method}"]) == 0
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
        assert (out / "estimator" / "model.safetensors").is_file()
    if strategy != "random":  # every robot-directed strategy ranks the sources by their distance
        picked = {src: c["selected"] for src, c in report["composition"].items()}
        assert picked["embodied"] > picked["vqa"] > picked["text"], picked
    # The mixture loads back as an ordinary LLaVA source, images resolved as absolute paths.
    spec = SourceSpec(name="mixture", path=str(out / "mixture.jsonl"))
    source_report = SourceReport(name="mixture")
    samples = list(validate_source(spec, source_report, seen_ids=set(), workers=1, progress=False))
    assert len(samples) == 30 and source_report.bad == 0
    assert {s.source for s in samples} <= set(SOURCES)
    assert all(p.startswith("/") for s in samples for p in s.images)


def test_proximity_estimator_reaches_its_target_on_separable_data(inputs, tmp_path):
    out = tmp_path / "sep"
    assert main(["select", f"run_dir={out}", f"features={inputs / 'embed_separable'}", f"pool={inputs / 'pool'}",
                 "strategy=proximity", "k=30", "estimator.eval_every=10", "estimator.max_steps=400"]) == 0
    estimator = json.loads((out / "report.json").read_text())["estimator"]
    assert estimator["val_acc"] >= 0.9 and estimator["stopped_early"] and estimator["steps"] < 400, estimator


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
                     f"strategy={strategy}", "fraction=0.2", f"vla_features={inputs / 'embed_vla'}"]) == 0
        assert len((out / "mixture.jsonl").read_text().splitlines()) == 36
        # lowest VLA-adapted loss, and largest loss drop under VLA adaptation: both the embodied source
        composition = json.loads((out / "report.json").read_text())["composition"]
        assert composition["embodied"]["selected"] == 36, (strategy, composition)
    table = pq.read_table(tmp_path / "delta_perplexity" / "scores.parquet").group_by("source").aggregate(
        [("score", "mean")])
    mean = dict(zip(table["source"].to_pylist(), table["score_mean"].to_pylist(), strict=True))
    assert mean["embodied"] > mean["vqa"] > mean["text"]  # the score is the loss drop, base minus VLA-adapted
    assert mean == pytest.approx(VLA_GAIN, abs=0.05)
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
