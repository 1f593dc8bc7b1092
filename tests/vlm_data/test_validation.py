"""Each bad-input case gives its documented outcome: skipped and counted with file:line, or a clear stop."""

from __future__ import annotations

import json

import pytest
from vlm_data_helpers import make_image, record, source_dir, write_jsonl

from vlm2vla.config import load_config
from vlm2vla.runs import Run
from vlm2vla.vlm_data.pool import PoolConfig, build_pool
from vlm2vla.vlm_data.sources import SourceSpec
from vlm2vla.vlm_data.validate import SourceReport, validate_source


def _validate(path, name="src"):
    report = SourceReport(name)
    samples = list(validate_source(SourceSpec(name=name, path=str(path)), report, set(), 2, progress=False))
    return samples, report


def test_malformed_jsonl_line_is_reported_with_file_and_line(tmp_path):
    folder, records = source_dir(tmp_path)
    path = write_jsonl(folder / "d.jsonl", records, raw_lines={7: '{"id": 6, "conversations": [', 9: "[1, 2]"})
    samples, report = _validate(path)
    assert report.total == 20 and report.kept == 18
    assert report.skipped["malformed_record"] == 2
    examples = report.examples["malformed_record"]
    assert examples[0].startswith(f"{path}:7: invalid JSON") and examples[1].startswith(f"{path}:9: ")


@pytest.mark.parametrize(("bad", "reason"), [
    (record(100, image="nope.png"), "missing_image"),
    (record(100, image="corrupt.png"), "unreadable_image"),
    (record(100, image="truncated.png"), "unreadable_image"),
    ({"id": "x", "conversations": [{"from": "robot", "value": "hi"}, {"from": "gpt", "value": "a"}]}, "unknown_role"),
    ({"id": "x", "conversations": []}, "empty_conversation"),
    ({"id": "x", "conversations": [{"from": "human", "value": "hi"}]}, "no_assistant_turn"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "a"}]}, "malformed_record"),
    ({"id": "x", "image": 5, "conversations": [{"from": "gpt", "value": "a"}]}, "malformed_record"),
    (record(3), "duplicate_id"),
])
def test_each_bad_record_is_skipped_and_counted(tmp_path, bad, reason):
    folder, records = source_dir(tmp_path)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    good = (folder / "img0.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    path = write_jsonl(folder / "d.jsonl", records[:5] + [bad] + records[5:])
    samples, report = _validate(path)
    assert report.total == 21 and report.kept == 20 and dict(report.skipped) == {reason: 1}
    assert report.examples[reason][0].startswith(f"{path}:6")
    assert len(samples) == 20


def test_too_many_bad_records_stop_the_run_with_a_clear_message(tmp_path):
    folder, records = source_dir(tmp_path)
    records[:3] = [record(i, image="missing.png") for i in range(3)]  # 3 of 20 = 15% > 10%
    path = write_jsonl(folder / "d.jsonl", records)
    cfg = load_config(PoolConfig, None, [f"run_dir={tmp_path / 'run'}", "embedded.enabled=false",
                                          "max_bad_fraction=0.1", "progress=false",
                                          f"sources=[{{name: mine, path: '{path}'}}]"])
    run = Run.open(cfg.run_dir, "pool", cfg)
    with pytest.raises(ValueError) as err:
        build_pool(cfg, run)
    message = str(err.value)
    assert "Source 'mine'" in message and "3 of 20 records are bad" in message and "missing_image: 3" in message
    assert "max_bad_fraction" in message
    assert not (tmp_path / "run" / "pool.parquet").exists()  # no half-made pool is left behind
    report = json.loads((tmp_path / "run" / "pool_report.json").read_text())
    assert report["sources"]["mine"]["skipped"] == {"missing_image": 3}


def test_under_the_threshold_the_pool_is_built_and_the_report_counts(tmp_path):
    folder, records = source_dir(tmp_path)
    records[0] = record(0, image="missing.png")
    path = write_jsonl(folder / "d.jsonl", records)
    make_image(folder / "x.png")
    cfg = PoolConfig(run_dir=str(tmp_path / "run"), sources=(SourceSpec(name="mine", path=str(path)),),
                     embedded=PoolConfig().embedded.__class__(enabled=False), progress=False)
    metrics = build_pool(cfg, Run.open(cfg.run_dir, "pool", cfg))
    assert metrics["samples"] == 19 and metrics["skipped"] == 1
    report = json.loads((tmp_path / "run" / "pool_report.json").read_text())
    assert report["sources"]["mine"]["kept"] == 19 and report["kinds"] == {"external": ["mine"]}
