"""Pool building: unique ids, the held-out split, the pool.parquet round trip, and VLMChatDataset."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from vlm_data_helpers import make_image, record, source_dir, write_jsonl, write_parquet

from vlm2vla.config import load_config
from vlm2vla.runs import Run
from vlm2vla.training.next_token_config import TrainConfig
from vlm2vla.vlm_data import (
    PoolConfig,
    VLMChatDataset,
    VLMSample,
    build_pool,
    drop_none,
    heldout_split,
    load_pool,
    read_pool,
)
from vlm2vla.vlm_data.embedded.config import EmbeddedPoolConfig
from vlm2vla.vlm_data.sources import SourceSpec

NO_EMBEDDED = EmbeddedPoolConfig(enabled=False)


def _two_sources(tmp_path):
    folder, records = source_dir(tmp_path / "a", n=50)
    make_image(tmp_path / "b" / "img0.png", (0, 0, 255))
    # Both sources use ids 0..49; source b also has a multi-turn record.
    b_records = [record(i, answer="blue") for i in range(50)]
    b_records[0]["conversations"] += [{"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "yes"}]
    return (SourceSpec(name="a", path=str(write_jsonl(folder / "d.jsonl", records))),
            SourceSpec(name="b", path=str(write_parquet(tmp_path / "b" / "d.parquet", b_records))))


def _build(tmp_path, sources, **kw) -> PoolConfig:
    cfg = PoolConfig(run_dir=str(tmp_path / "run"), sources=sources, embedded=NO_EMBEDDED, progress=False, **kw)
    build_pool(cfg, Run.open(cfg.run_dir, "pool", cfg))
    return cfg


def test_ids_are_unique_across_sources_and_round_trip(tmp_path):
    sources = _two_sources(tmp_path)
    cfg = _build(tmp_path, sources, heldout_fraction=0.2)
    samples = load_pool(tmp_path / "run" / "pool.parquet")
    assert len(samples) == 100 and len({s.id for s in samples}) == 100
    assert {s.id for s in samples if s.source == "a"} == {f"a/{i}" for i in range(50)}
    b0 = next(s for s in samples if s.id == "b/0")
    assert b0.conversations[-1] == ("gpt", "yes") and b0.images == (str(tmp_path / "b" / "img0.png"),)
    assert list(read_pool(tmp_path / "run")) == samples  # a run directory works too
    assert Run.open(cfg.run_dir, "pool", cfg).manifest["metrics"]["samples"] == 100


def test_heldout_split_is_deterministic_and_disjoint(tmp_path):
    sources = _two_sources(tmp_path)
    _build(tmp_path, sources, heldout_fraction=0.3, seed=7)
    train, heldout = load_pool(tmp_path / "run", "train"), load_pool(tmp_path / "run", "heldout")
    assert {s.id for s in train}.isdisjoint({s.id for s in heldout})
    assert len(train) + len(heldout) == 100 and 15 <= len(heldout) <= 45
    assert all(s.split == "heldout" for s in heldout)
    # Same ids -> same split, whatever else is in the pool; another seed -> another split.
    assert all(heldout_split(s.id, 0.3, 7) == "heldout" for s in heldout)
    ids = [f"x/{i}" for i in range(1000)]
    assert [heldout_split(i, 0.3, 7) for i in ids] == [heldout_split(i, 0.3, 7) for i in ids]
    assert [heldout_split(i, 0.3, 7) for i in ids] != [heldout_split(i, 0.3, 8) for i in ids]
    assert 0.25 < sum(heldout_split(i, 0.3, 7) == "heldout" for i in ids) / 1000 < 0.35


def test_repeated_source_name_is_rejected_and_cli_style_sources_parse(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        PoolConfig(sources=(SourceSpec(name="a", path="a.jsonl"), SourceSpec(name="a", path="b.jsonl")),
                   embedded=NO_EMBEDDED)
    with pytest.raises(ValueError, match="embedded sources count too"):
        PoolConfig(sources=(SourceSpec(name="ocr", path="a.jsonl"),))
    cfg = load_config(PoolConfig, None, ["sources=[{name: a, path: a.jsonl}, {name: b, path: b.parquet}]",
                                         "embedded.enabled=false"])
    assert cfg.sources == (SourceSpec(name="a", path="a.jsonl"), SourceSpec(name="b", path="b.parquet"))


def test_chat_dataset_items_and_corrupt_image_substitution(tmp_path):
    make_image(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    turns = (("human", "<image>\nWhat colour?"), ("gpt", "red"))
    samples = [VLMSample(f"s/{i}", "s", (str(tmp_path / ("bad.png" if i == 1 else "ok.png")),), turns)
               for i in range(3)]
    ds = VLMChatDataset(samples)
    item = ds[0]
    assert item["id"] == "s/0" and isinstance(item["images"][0], Image.Image) and item["images"][0].mode == "RGB"
    assert item["messages"] == [{"role": "user", "content": "What colour?"}, {"role": "assistant", "content": "red"}]
    assert ds[1]["id"] == "s/2" and ds.bad_images == 1  # the bad sample is replaced by the next one

    lenient = VLMChatDataset(samples, on_bad_image="none")
    assert lenient[1] is None
    loader = torch.utils.data.DataLoader(lenient, batch_size=3, collate_fn=drop_none(lambda b: [x["id"] for x in b]))
    assert next(iter(loader)) == ["s/0", "s/2"]


def test_shipped_tiny_recipe_pool_feeds_the_pretrain_recipe():
    pool = load_config(PoolConfig, "pool_tiny")
    pretrain = load_config(TrainConfig, "pretrain_tiny")
    assert pretrain.data == pool.run_dir and pretrain.model == "tiny"
    # OCR (learnt last) gets the most samples; every embedded source is generated
    sizes = {s: pool.embedded.sizes.get(s, pool.embedded.samples_per_source) for s in pool.embedded.sources}
    assert max(sizes, key=sizes.get) == "ocr" and len(sizes) == 8
