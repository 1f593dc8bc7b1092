"""`vlm2vla embed` end to end on a tiny model, pool and robot dataset: store written, resume, bad images."""

import json

import numpy as np
import pytest
from PIL import Image

from vlm2vla.cli import main
from vlm2vla.engine.feature_store import FeatureStore
from vlm2vla.vlm_data.pool_io import write_pool
from vlm2vla.vlm_data.records import VLMSample

CAM = "observation.images.cam"
QUESTIONS = ["what color is the cube?", "how many objects are there?"]
TASKS = ["pick up the red block", "open the drawer"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny Idefics3, a 14-sample pool (12 train, 2 heldout; one broken image) and 3 robot episodes."""
    from vlm2vla.backbones.random_models import build_family
    from vlm2vla.robot_data.writer import LeRobotDatasetWriter

    root = tmp_path_factory.mktemp("embed_inputs")
    model = build_family("idefics3", root / "model", texts=[*QUESTIONS, *TASKS, "red", "three"], image_size=32)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(14):
        path = root / "images" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        samples.append(VLMSample(id=f"src{i % 2}/{i}", source=f"src{i % 2}", images=(str(path),),
                                 conversations=(("human", "<image>\n" + QUESTIONS[i % 2]), ("gpt", "red")),
                                 split="train" if i < 12 else "heldout"))
    (root / "images" / "5.png").write_bytes(b"not a png")
    (root / "pool").mkdir()
    with open(root / "pool" / "pool.parquet", "wb") as f:
        write_pool(samples, f)
    features = {CAM: {"dtype": "image", "shape": [32, 32, 3], "names": ["height", "width", "channels"]},
                "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "y"]},
                "action": {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]}}
    with LeRobotDatasetWriter.create(root / "dataset", fps=10, features=features, robot_type="toy") as writer:
        for ep, length in enumerate([6, 9, 4]):
            writer.add_episode({CAM: rng.integers(0, 255, (length, 32, 32, 3), dtype=np.uint8),
                                "observation.state": rng.normal(size=(length, 2)).astype(np.float32),
                                "action": rng.normal(size=(length, 2)).astype(np.float32)}, task=TASKS[ep % 2])
    return {"model": model, "pool": root / "pool", "dataset": root / "dataset"}


def _args(inputs, run_dir, *extra):
    return ["embed", f"run_dir={run_dir}", f"model={inputs['model']}", f"pool={inputs['pool']}",
            f"robot_dataset={inputs['dataset']}", "frames_per_episode=3", "batch_size=4", "shard_rows=5",
            "num_workers=0", "progress=false", "max_length=128", *extra]


def test_embed_writes_the_store(inputs, tmp_path):
    assert main(_args(inputs, tmp_path / "embed")) == 0
    store = FeatureStore.open(tmp_path / "embed")
    assert store.meta["pooling"] == "mean" and store.meta["layer"] == 2 and store.dim == 64
    ids, sources, x = store.load(kind="pool")
    assert len(ids) == 11 and "src1/5" not in ids  # 12 train samples, one unreadable image skipped
    assert set(sources) == {"src0", "src1"} and x.dtype == np.float32 and np.isfinite(x).all()
    r_ids, r_sources, r_x = store.load(kind="robot")
    assert len(r_ids) == 9 and set(r_sources) == {"robot"} and r_ids[0].startswith("robot/ep000000/")
    index = store.index()
    losses = index["loss"].to_numpy(zero_copy_only=False)
    kinds = np.array(index["kind"].to_pylist())
    assert np.isfinite(losses[kinds == "pool"]).all() and np.isnan(losses[kinds == "robot"]).all()
    assert sorted(store.completed_shards()) == ["pool-00000", "pool-00001", "pool-00002", "robot-00000",
                                                "robot-00001"]
    manifest = json.loads((tmp_path / "embed" / "manifest.json").read_text())
    m = manifest["metrics"]
    assert manifest["status"] == "complete" and m["skipped_images"] == 1 and m["samples_per_s"] > 0
    assert (m["layer"], m["pooling"], m["pool_samples"], m["robot_samples"]) == (2, "mean", 11, 9)


def test_same_sample_same_features_in_any_batch(inputs, tmp_path):
    assert main(_args(inputs, tmp_path / "a", "batch_size=1", "robot_dataset=''")) == 0
    assert main(_args(inputs, tmp_path / "b", "batch_size=5", "robot_dataset=''")) == 0
    ids_a, _, xa = FeatureStore.open(tmp_path / "a").load()
    ids_b, _, xb = FeatureStore.open(tmp_path / "b").load()
    assert list(ids_a) == list(ids_b)
    np.testing.assert_allclose(xa, xb, atol=2e-3)  # float16 on disk


def test_crashed_run_resumes_without_recomputing_finished_shards(inputs, tmp_path, monkeypatch):
    from vlm2vla.engine import embed as embed_mod
    from vlm2vla.engine.embed import EmbedConfig, embed
    from vlm2vla.runs import Run

    run_dir = tmp_path / "embed"
    real_write = embed_mod.write_shard
    written = []

    def crash_after_two(features_dir, shard, *args, **kwargs):
        if len(written) == 2:
            raise RuntimeError("simulated crash")
        written.append(shard)
        return real_write(features_dir, shard, *args, **kwargs)

    monkeypatch.setattr(embed_mod, "write_shard", crash_after_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(_args(inputs, run_dir))
    assert written == ["pool-00000", "pool-00001"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in (run_dir / "features" / "shards").glob("*.npy")}
    monkeypatch.setattr(embed_mod, "write_shard", lambda *a, **k: (written.append(a[1]), real_write(*a, **k))[1])
    assert main(_args(inputs, run_dir)) == 0
    assert written[2:] == ["pool-00002", "robot-00000", "robot-00001"]  # finished shards were not redone
    assert {p: (run_dir / "features" / "shards" / p).stat().st_mtime_ns for p in mtimes} == mtimes
    assert len(FeatureStore.open(run_dir).index()) == 20
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "complete"

    cfg = EmbedConfig(run_dir=str(tmp_path / "split"), model=str(inputs["model"]), pool=str(inputs["pool"]),
                      robot_dataset="", batch_size=4, shard_rows=5, num_workers=0, progress=False)
    metrics = embed(cfg, Run.open(cfg.run_dir, "embed", cfg), stop_after=1)
    assert (metrics["shards_done"], metrics["shards"]) == (1, 3)


def test_data_loader_workers_resume_to_the_same_features(inputs, tmp_path):
    from vlm2vla.engine.embed import EmbedConfig, embed
    from vlm2vla.runs import Run

    assert main(_args(inputs, tmp_path / "ref")) == 0  # num_workers=0
    cfg = EmbedConfig(run_dir=str(tmp_path / "workers"), model=str(inputs["model"]), pool=str(inputs["pool"]),
                      robot_dataset=str(inputs["dataset"]), frames_per_episode=3, batch_size=4, shard_rows=5,
                      max_length=128, num_workers=2, progress=False)
    assert embed(cfg, Run.open(cfg.run_dir, "embed", cfg), stop_after=2)["shards_done"] == 2
    embed(cfg, Run.open(cfg.run_dir, "embed", cfg))
    ids_ref, _, x_ref = FeatureStore.open(tmp_path / "ref").load()
    ids, _, x = FeatureStore.open(tmp_path / "workers").load()
    assert list(ids) == list(ids_ref) and len(ids) == 20
    np.testing.assert_allclose(x, x_ref, atol=2e-3)  # float16 on disk


def test_last_pooling_and_config_errors(inputs, tmp_path):
    assert main(_args(inputs, tmp_path / "last", "pooling=last", "layer=1", "robot_dataset=''",
                      "max_pool_samples=4", "compute_loss=false")) == 0
    store = FeatureStore.open(tmp_path / "last")
    skipped = json.loads((tmp_path / "last" / "manifest.json").read_text())["metrics"]["skipped_images"]
    assert (store.meta["pooling"], store.meta["layer"], len(store.index()) + skipped) == ("last", 1, 4)
    assert main(_args(inputs, tmp_path / "bad", "pooling=max")) == 2
