"""Answer normalisation, the majority baseline and the per-source accuracy summary."""

from __future__ import annotations

from vlm2vla.training.evaluate_vlm import (
    HeldoutItem,
    format_eval_table,
    majority_baseline,
    normalise_answer,
    select_items,
    summarise,
)


def _item(source: str, answer: str, question: str = "q?") -> HeldoutItem:
    return HeldoutItem(source, [], [{"role": "user", "content": question}, {"role": "assistant", "content": answer}])


def test_normalise_answer():
    assert normalise_answer("  The Red  cube. ") == "red cube"
    assert normalise_answer("Open!") == "open"
    assert normalise_answer("(68, 40)") == "(68, 40)"  # coordinates keep their brackets
    assert normalise_answer("an apple") == "apple"


def test_prompt_is_everything_before_the_last_answer():
    item = HeldoutItem("s", [], [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                 {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}])
    assert item.answer == "d"
    assert [m["content"] for m in item.prompt] == ["a", "b", "c"]


def test_majority_baseline_and_summary():
    items = [_item("colour", a) for a in ("red", "Red.", "blue")] + [_item("size", "big")]
    base = majority_baseline(items)
    assert base["colour"] == {"answer": "red", "accuracy": 2 / 3}
    rows = [("colour", "red", "red"), ("colour", "Red.", "blue"), ("colour", "blue", "blue"), ("size", "big", "x")]
    result = summarise(rows, base, loss=1.5)
    assert result["per_source"]["colour"]["accuracy"] == 2 / 3
    assert result["per_source"]["size"]["accuracy"] == 0.0
    assert result["accuracy"] == 0.5 and result["majority_accuracy"] == 0.75
    table = format_eval_table({"0": result, "10": result})
    assert "colour" in table and "acc@10" in table and "majority" in table


def test_select_items_caps_each_source():
    items = [_item("a", str(i)) for i in range(5)] + [_item("b", str(i)) for i in range(2)]
    assert [(i.source, i.answer) for i in select_items(items, 2)] == [("a", "0"), ("a", "1"), ("b", "0"), ("b", "1")]
    assert len(select_items(items, 0)) == 7
