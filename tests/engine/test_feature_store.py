"""Feature store: float16 shards + index parts; round trip, streaming, resume markers, clear errors."""

import numpy as np
import pytest

from vlm2vla.engine.feature_store import (
    FeatureStore,
    FeatureStoreError,
    FeatureWriter,
    completed_shards,
    write_shard,
)


def _rows(n, dim, seed=0, prefix="s"):
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}{i}" for i in range(n)]
    sources = ["a" if i % 3 else "b" for i in range(n)]
    return ids, sources, rng.normal(size=(n, dim)).astype(np.float32)


def test_round_trip_ids_rows_features(tmp_path):
    ids, sources, x = _rows(25, 8)
    losses = np.linspace(0.5, 3.0, 25)
    with FeatureWriter(tmp_path / "features", rank=0, dim=8, shard_rows=10, meta={"model": "m", "layer": -1}) as w:
        w.add(ids[:7], sources[:7], "pool", x[:7], losses[:7])
        w.add(ids[7:], sources[7:], "pool", x[7:], losses[7:])
    assert w.shards_written == ["r000-00000", "r000-00001", "r000-00002"]
    store = FeatureStore.open(tmp_path)  # the run dir works as well as the features dir
    assert store.dim == 8 and store.meta["model"] == "m" and store.meta["dtype"] == "float16"
    assert np.load(tmp_path / "features/shards/r000-00000.npy").dtype == np.float16
    index = store.index()
    assert index.num_rows == 25 and index.column_names == ["id", "source", "kind", "shard", "row", "loss"]
    assert index["row"].to_pylist()[:12] == list(range(10)) + [0, 1]
    np.testing.assert_allclose(index["loss"].to_numpy(), losses, rtol=1e-3)
    got_ids, got_src, got_x = store.load()
    assert list(got_ids) == ids and list(got_src) == sources and got_x.dtype == np.float32
    np.testing.assert_allclose(got_x, x.astype(np.float16).astype(np.float32))


def test_load_filters_kind_and_source(tmp_path):
    ids, sources, x = _rows(6, 4)
    write_shard(tmp_path, "pool-00000", ids, sources, "pool", x)
    write_shard(tmp_path, "robot-00000", ["r0", "r1"], ["robot", "robot"], "robot", x[:2], [None, None])
    with FeatureWriter(tmp_path, rank=0, dim=4, meta={"model": "m"}):
        pass
    store = FeatureStore.open(tmp_path)
    r_ids, _, r_x = store.load(kind="robot")
    assert list(r_ids) == ["r0", "r1"] and r_x.shape == (2, 4)
    b_ids, b_src, _ = store.load(kind="pool", sources=["b"])
    assert set(b_src) == {"b"} and list(b_ids) == [i for i, s in zip(ids, sources, strict=True) if s == "b"]
    index = store.index()
    assert index["loss"].null_count == 8 and index["kind"].to_pylist()[-2:] == ["robot", "robot"]
    assert store.completed_shards() == {"pool-00000", "robot-00000"}


def test_iter_batches_covers_everything_once(tmp_path):
    ids, sources, x = _rows(37, 5)
    with FeatureWriter(tmp_path, rank=1, dim=5, shard_rows=8) as w:
        w.add(ids, sources, "pool", x)
    with FeatureWriter(tmp_path, rank=0, dim=5, meta={"model": "m"}):
        pass
    store = FeatureStore.open(tmp_path)
    batches = list(store.iter_batches(batch_rows=6))
    assert [len(b[0]) for b in batches] == [6] * 6 + [1]
    seen = np.concatenate([b[0] for b in batches])
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 37
    np.testing.assert_allclose(np.concatenate([b[2] for b in batches]), store.load()[2])


def test_appending_continues_shard_numbers(tmp_path):
    ids, sources, x = _rows(4, 3)
    with FeatureWriter(tmp_path, rank=0, dim=3, shard_rows=2, meta={"model": "m"}) as w:
        w.add(ids, sources, "pool", x)
    with FeatureWriter(tmp_path, rank=0, dim=3, shard_rows=2) as w:
        w.add(["x"], ["a"], "robot", x[:1])
    assert completed_shards(tmp_path) == {"r000-00000", "r000-00001", "r000-00002"}
    assert len(FeatureStore.open(tmp_path)) == 5


def test_mismatched_dim_on_append_is_a_clear_error(tmp_path):
    ids, sources, x = _rows(4, 3)
    with FeatureWriter(tmp_path, rank=0, dim=3, meta={"model": "m"}) as w:
        w.add(ids, sources, "pool", x)
        with pytest.raises(FeatureStoreError, match="dim 3"):
            w.add(["y"], ["a"], "pool", np.zeros((1, 5)))
    with pytest.raises(FeatureStoreError, match="meta.json.*dim 3.*dim 7"):
        FeatureWriter(tmp_path, rank=0, dim=7)


def test_inconsistent_shard_names_the_file(tmp_path):
    ids, sources, x = _rows(4, 3)
    with FeatureWriter(tmp_path, rank=0, dim=3, meta={"model": "m"}) as w:
        w.add(ids, sources, "pool", x)
    np.save(tmp_path / "shards/r000-00000.npy", np.zeros((3, 3), np.float16))
    with pytest.raises(FeatureStoreError, match=r"r000-00000\.npy: 3 feature rows, but its index part has 4"):
        FeatureStore.open(tmp_path).load()
    np.save(tmp_path / "shards/r000-00000.npy", np.zeros((4, 6), np.float16))
    with pytest.raises(FeatureStoreError, match="mixed feature sizes"):
        FeatureStore.open(tmp_path).index()


def test_open_without_features_says_what_to_do(tmp_path):
    with pytest.raises(FeatureStoreError, match="vlm2vla embed"):
        FeatureStore.open(tmp_path)
