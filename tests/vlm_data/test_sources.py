"""Reading LLaVA sources: JSON, JSONL and parquet; multi-turn and multi-image records; chat messages."""

from __future__ import annotations

import json

import pytest
from vlm_data_helpers import make_image, record, write_jsonl, write_parquet

from vlm2vla.vlm_data.records import VLMSample, to_messages
from vlm2vla.vlm_data.sources import SourceSpec
from vlm2vla.vlm_data.validate import SourceReport, validate_source


def _read(spec: SourceSpec) -> tuple[list[VLMSample], SourceReport]:
    report = SourceReport(spec.name)
    return list(validate_source(spec, report, set(), workers=2, progress=False)), report


def _records(tmp_path):
    make_image(tmp_path / "a.png")
    make_image(tmp_path / "imgs" / "b.png", (0, 0, 255))
    multi_turn = {"id": "mt", "image": "a.png", "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"},
        {"from": "human", "value": "And the shape?"}, {"from": "gpt", "value": "square"}]}
    multi_image = record("mi", image=["a.png", "imgs/b.png"])
    text_only = record("txt", image=None, source="chat")
    return [record(0, image="a.png"), multi_turn, multi_image, text_only]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet"])
def test_reads_every_format_with_multi_turn_and_multi_image(tmp_path, fmt):
    records = _records(tmp_path)
    path = tmp_path / f"data.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(records))
    elif fmt == "jsonl":
        write_jsonl(path, records)
    else:
        write_parquet(path, records)
    samples, report = _read(SourceSpec(name="src", path=str(path)))
    assert report.total == 4 and report.kept == 4 and report.bad == 0
    by_id = {s.id: s for s in samples}
    assert set(by_id) == {"src/0", "src/mt", "src/mi", "chat/txt"}
    assert by_id["src/mi"].images == (str(tmp_path / "a.png"), str(tmp_path / "imgs" / "b.png"))
    assert by_id["chat/txt"].images == () and by_id["chat/txt"].source == "chat"
    assert len(by_id["src/mt"].conversations) == 5 and by_id["src/mt"].answer == "square"


def test_to_messages_maps_roles_and_strips_image_tokens(tmp_path):
    samples, _ = _read(SourceSpec(name="src", path=str(write_jsonl(tmp_path / "d.jsonl", _records(tmp_path)))))
    mt = next(s for s in samples if s.id == "src/mt")
    messages = to_messages(mt)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == "What colour?"
    assert to_messages(mt, keep_image_tokens=True)[1]["content"] == "<image>\nWhat colour?"


def test_image_root_overrides_source_folder(tmp_path):
    make_image(tmp_path / "images" / "img0.png")
    (tmp_path / "meta").mkdir()
    path = write_jsonl(tmp_path / "meta" / "d.jsonl", [record(0)])
    samples, report = _read(SourceSpec(name="s", path=str(path), image_root=str(tmp_path / "images")))
    assert report.kept == 1 and samples[0].images == (str(tmp_path / "images" / "img0.png"),)


def test_format_from_extension_and_errors(tmp_path):
    assert SourceSpec(name="a", path="x.ndjson").resolved_format == "jsonl"
    with pytest.raises(ValueError, match="cannot tell the format"):
        SourceSpec(name="a", path="x.txt")
    with pytest.raises(FileNotFoundError, match="no file"):
        _read(SourceSpec(name="a", path=str(tmp_path / "missing.jsonl")))
    (tmp_path / "bad.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="must hold a list"):
        _read(SourceSpec(name="a", path=str(tmp_path / "bad.json")))
