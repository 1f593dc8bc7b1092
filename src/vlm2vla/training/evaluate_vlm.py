"""Held-out evaluation of a VLM: next-token loss and answer accuracy per source, next to a baseline.

For each held-out sample the model is prompted with the conversation up to its LAST assistant turn
and answers greedily; the answer counts as correct when it equals the reference after normalisation
(lower case, collapsed spaces, outer punctuation and a leading article removed). The baseline of a
source always gives that source's most frequent held-out answer: a model that has only learnt the
answer distribution, not to look at the image, scores about that.

Work is split across processes by sample and the per-sample results are gathered, so every process
returns the same figures.
"""

from __future__ import annotations

import collections
import logging
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

log = logging.getLogger(__name__)

_ARTICLE = re.compile(r"^(a|an|the)\s+")
_SPACES = re.compile(r"\s+")
_OUTER = string.punctuation.replace("(", "").replace(")", "").replace("[", "").replace("]", "") + " \t\n"


@dataclass(frozen=True)
class HeldoutItem:
    """One held-out question: the full conversation, and the prompt/answer split of its last turn."""

    source: str
    images: list  # list[PIL.Image.Image]
    messages: list[dict[str, str]]

    @property
    def prompt(self) -> list[dict[str, str]]:
        """The messages before the last assistant turn."""
        last = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
        return self.messages[:last]

    @property
    def answer(self) -> str:
        """The last assistant turn's text."""
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "assistant")


def normalise_answer(text: str) -> str:
    """Canonical form for exact-match scoring ("The Red cube." -> "red cube")."""
    text = _SPACES.sub(" ", text.strip().lower()).strip(_OUTER)
    return _ARTICLE.sub("", text)


def select_items(items: Sequence[HeldoutItem], max_per_source: int) -> list[HeldoutItem]:
    """The first `max_per_source` items of each source (all when 0), in their original order."""
    counts: collections.Counter[str] = collections.Counter()
    kept = []
    for item in items:
        if max_per_source and counts[item.source] >= max_per_source:
            continue
        counts[item.source] += 1
        kept.append(item)
    return kept


def majority_baseline(items: Sequence[HeldoutItem]) -> dict[str, dict[str, Any]]:
    """Per source: the most frequent normalised answer and the accuracy of always giving it."""
    by_source: dict[str, list[str]] = collections.defaultdict(list)
    for item in items:
        by_source[item.source].append(normalise_answer(item.answer))
    out = {}
    for source, answers in sorted(by_source.items()):
        answer, count = collections.Counter(answers).most_common(1)[0]
        out[source] = {"answer": answer, "accuracy": count / len(answers)}
    return out


def evaluate_heldout(accelerator: Accelerator, items: Sequence[HeldoutItem],
                     loss_fn: Callable[[list[HeldoutItem]], tuple[float, int]],
                     generate_fn: Callable[[list[HeldoutItem]], list[str]], batch_size: int) -> dict[str, Any]:
    """Held-out loss and per-source accuracy, the same on every process.

    Args:
        accelerator: for the process split and the gather.
        items: the held-out questions (already limited per source).
        loss_fn: (summed answer-token loss, answer-token count) of a batch of full conversations.
        generate_fn: greedy answers to a batch of prompts.
        batch_size: items per call.

    Returns:
        {"loss", "accuracy", "majority_accuracy", "num_samples", "per_source": {source: {"n",
        "accuracy", "majority_accuracy", "majority_answer", "examples"}}}.
    """
    mine = list(items)[accelerator.process_index::accelerator.num_processes]
    rows, loss_sum, tokens = [], 0.0, 0
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            chunk = mine[start:start + batch_size]
            batch_loss, batch_tokens = loss_fn(chunk)
            loss_sum, tokens = loss_sum + batch_loss, tokens + batch_tokens
            for item, pred in zip(chunk, generate_fn(chunk), strict=True):
                rows.append((item.source, item.answer, pred))
    totals = gather_object([(loss_sum, tokens)])
    rows = gather_object(rows)
    loss = sum(t[0] for t in totals) / max(1, sum(t[1] for t in totals))
    return summarise(rows, majority_baseline(items), loss)


def summarise(rows: Sequence[tuple[str, str, str]], baseline: dict[str, dict[str, Any]],
              loss: float) -> dict[str, Any]:
    """Accuracy per source from (source, reference, prediction) rows, next to the baseline."""
    per_source: dict[str, dict[str, Any]] = {}
    for source in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == source]
        correct = sum(normalise_answer(ref) == normalise_answer(pred) for _, ref, pred in mine)
        per_source[source] = {
            "n": len(mine), "accuracy": correct / len(mine),
            "majority_accuracy": baseline[source]["accuracy"], "majority_answer": baseline[source]["answer"],
            # a few predictions make a wrong-looking accuracy easy to diagnose
            "examples": [{"reference": ref, "prediction": pred} for _, ref, pred in mine[:3]],
        }
    n = len(rows)
    return {
        "loss": loss, "num_samples": n,
        "accuracy": sum(s["accuracy"] * s["n"] for s in per_source.values()) / max(1, n),
        "majority_accuracy": sum(s["majority_accuracy"] * s["n"] for s in per_source.values()) / max(1, n),
        "per_source": per_source,
    }


def format_eval_table(evals: dict[str, dict[str, Any]]) -> str:
    """A text table: one row per source, accuracy under each named evaluation, then the baseline."""
    names = list(evals)
    sources = sorted({s for e in evals.values() for s in e["per_source"]})
    header = ["source", "n", *[f"acc@{n}" for n in names], "majority"]
    lines = [header]
    for source in [*sources, "ALL"]:
        first = next(e for e in evals.values() if source == "ALL" or source in e["per_source"])
        ref = first if source == "ALL" else first["per_source"][source]
        accs = [_acc(evals[n], source) for n in names]
        lines.append([source, str(ref.get("n", first["num_samples"])), *accs, f"{ref['majority_accuracy']:.3f}"])
    lines.append(["loss", "", *[f"{evals[n]['loss']:.3f}" for n in names], ""])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines)


def _acc(result: dict[str, Any], source: str) -> str:
    if source == "ALL":
        return f"{result['accuracy']:.3f}"
    entry = result["per_source"].get(source)
    return f"{entry['accuracy']:.3f}" if entry else "-"
