"""VLMBackbone on tiny random models of every tested family, saved and loaded back from folders."""

from __future__ import annotations

import time

import pytest
import torch
from PIL import Image

from vlm2vla.backbones import FREEZE_GROUPS, ChatExample, VLMBackbone, VLMLoadError
from vlm2vla.backbones.encoding import IGNORE
from vlm2vla.backbones.random_models import TESTED_FAMILIES, build_family


def _image(color: str) -> Image.Image:
    return Image.new("RGB", (32, 32), color)


def _examples() -> list[ChatExample]:
    return [
        ChatExample(images=[_image("red")], messages=[{"role": "user", "content": "<image>what color?"},
                                                      {"role": "assistant", "content": "red"}]),
        ChatExample(images=[_image("blue")], messages=[
            {"role": "user", "content": "what color is the cube?"}, {"role": "assistant", "content": "blue"},
            {"role": "user", "content": "how many objects?"}, {"role": "assistant", "content": "three"}]),
    ]


def _prompts() -> list[ChatExample]:
    return [ChatExample(images=[_image("green")], messages=[{"role": "user", "content": "pick up the cube"}]),
            ChatExample(images=[_image("red")], messages=[{"role": "user", "content": "open the drawer now please"}])]


@pytest.fixture(scope="module", params=TESTED_FAMILIES)
def folder(request, tmp_path_factory):
    return build_family(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def backbone(folder):
    return VLMBackbone.from_pretrained(str(folder))


def test_round_trip_gives_identical_logits(backbone, folder, tmp_path):
    batch = backbone.collate(_examples())
    backbone.save_pretrained(tmp_path / "copy")
    again = VLMBackbone.from_pretrained(str(tmp_path / "copy"))
    assert again.family == backbone.family in TESTED_FAMILIES
    with torch.no_grad():
        assert torch.equal(backbone(batch).logits, again(batch).logits)
    assert torch.equal(again.collate(_examples())["input_ids"], batch["input_ids"])


def test_labels_keep_only_answer_tokens(backbone):
    batch = backbone.collate(_examples())
    tok = backbone.processor.tokenizer
    answers = [["red"], ["blue", "three"]]
    for row, expected in enumerate(answers):
        kept = batch["labels"][row][batch["labels"][row] != IGNORE]
        assert torch.equal(kept, batch["input_ids"][row][batch["labels"][row] != IGNORE])
        text = tok.decode(kept, skip_special_tokens=True)
        assert text.split() == expected or "".join(text.split()) == "".join(expected)
        assert kept[-1].item() == _end_of_turn_id(backbone)  # each answer ends with its end-of-turn token
    out = backbone(batch)
    assert out.loss is not None and torch.isfinite(out.loss)


def _end_of_turn_id(backbone: VLMBackbone) -> int:
    """The family's end-of-turn token: what the answer segment closes with."""
    return backbone.processor.tokenizer.eos_token_id


def test_left_padding_and_image_placement(backbone):
    batch = backbone.collate(_prompts(), add_generation_prompt=True)
    assert batch["attention_mask"][:, -1].all()  # left padded: every row ends with a real token
    assert (batch["labels"] == IGNORE).all()
    marked = [ChatExample(images=ex.images, messages=[{"role": "user", "content": "<image>" + m["content"]}])
              for ex in _prompts() for m in ex.messages]
    assert torch.equal(backbone.collate(marked, add_generation_prompt=True)["input_ids"], batch["input_ids"])
    with pytest.raises(ValueError, match="images"):
        backbone.collate([ChatExample(images=[_image("red")] * 2, messages=[{"role": "user", "content": "<image>x"}])])


def test_hidden_states_shape(backbone):
    batch = backbone.collate(_examples())
    states = backbone.hidden_states(batch)
    assert len(states) == backbone.num_layers + 1
    for s in states:
        assert s.shape == (*batch["input_ids"].shape, backbone.hidden_size)


def test_query_slots(backbone):
    k = 3
    plain = backbone.collate(_prompts(), add_generation_prompt=True)
    batch = backbone.collate(_prompts(), add_generation_prompt=True, num_queries=k)
    mask = batch["query_mask"]
    assert mask.dtype == torch.bool and (mask.sum(1) == k).all() and mask[:, -k:].all()
    for row in range(2):  # the queries are the only new positions, right after the prompt
        before = plain["input_ids"][row][plain["attention_mask"][row].bool()]
        after = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        assert torch.equal(after[:-k], before) and len(after) == len(before) + k
    q = torch.randn(k, backbone.hidden_size, requires_grad=True)
    h = backbone.hidden_states(batch, query_embeds=q)[-1]
    h[:, -k:].pow(2).mean().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    with torch.no_grad():
        h2 = backbone.hidden_states(batch, query_embeds=torch.randn(2, k, backbone.hidden_size))[-1]
    assert not torch.allclose(h[:, -k:], h2[:, -k:])
    assert torch.allclose(h[:, :-k], h2[:, :-k], atol=1e-5)  # causal: the prompt never sees the queries


def test_freeze_vision_keeps_vision_weights(folder):
    backbone = VLMBackbone.from_pretrained(str(folder))
    backbone.freeze(["vision"])
    groups = backbone.parameter_groups()
    params = dict(backbone.model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.AdamW([p for p in params.values() if p.requires_grad], lr=1e-2)
    backbone.train()
    backbone(backbone.collate(_examples())).loss.backward()
    opt.step()
    assert all(torch.equal(params[n], before[n]) for n in groups["vision"])
    for group in ("connector", "language_model"):
        assert any(not torch.equal(params[n], before[n]) for n in groups[group]), group
    with pytest.raises(ValueError, match="word_embeddings"):
        backbone.freeze(["visual"])


def test_parameter_groups_cover_everything(backbone):
    groups = backbone.parameter_groups()
    names = [n for g in groups.values() for n in g]
    assert sorted(names) == sorted(n for n, _ in backbone.model.named_parameters())
    assert set(groups) == set(FREEZE_GROUPS)  # no "other" for a tested family
    assert all(groups[g] for g in FREEZE_GROUPS)


def test_generate_returns_strings(backbone):
    answers = backbone.generate(_prompts(), max_new_tokens=3)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_from_scratch_same_architecture_new_weights(backbone, folder):
    scratch = VLMBackbone.from_scratch(str(folder), seed=123)
    a, b = dict(backbone.model.named_parameters()), dict(scratch.model.named_parameters())
    assert {n: p.shape for n, p in a.items()} == {n: p.shape for n, p in b.items()}
    assert any(not torch.equal(a[n], b[n]) for n in a)
    assert torch.equal(scratch.collate(_examples())["input_ids"], backbone.collate(_examples())["input_ids"])


def test_missing_hub_id_fails_fast_and_plainly(monkeypatch):
    start = time.monotonic()
    with pytest.raises(VLMLoadError, match="not cached locally.*nothing\\s+can be downloaded"):
        VLMBackbone.from_pretrained("nobody-here/no-such-vlm", local_files_only=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VLMLoadError, match="pass its path"):
        VLMBackbone.from_pretrained("nobody-here/no-such-vlm")
    with pytest.raises(VLMLoadError, match="does not exist"):
        VLMBackbone.from_pretrained("./no/such/folder")
    assert time.monotonic() - start < 5


def test_tiny_by_name_says_that_pretraining_builds_it(tmp_path, monkeypatch, folder):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VLMLoadError) as err:
        VLMBackbone.from_pretrained("tiny")
    message = str(err.value)
    assert "vlm2vla pretrain model=tiny" in message and "model=runs/pretrain/model" in message
    assert "hf download" not in message
    # a missing run folder names the trained VLM folders that do exist beside it
    (tmp_path / "runs" / "midtrain").mkdir(parents=True)
    (tmp_path / "runs" / "midtrain" / "model").symlink_to(folder, target_is_directory=True)
    with pytest.raises(VLMLoadError, match=r"does not exist.*VLM folders found in runs: runs/midtrain/model"):
        VLMBackbone.from_pretrained("runs/pretrain/model")


def test_collator_is_picklable_and_equal_to_collate(backbone):
    import pickle

    collator = pickle.loads(pickle.dumps(backbone.collator()))
    a, b = collator(_examples(), num_queries=2), backbone.collate(_examples(), num_queries=2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_generate_is_greedy_and_batching_does_not_change_answers(backbone):
    prompts = _prompts()
    alone = [backbone.generate([p], max_new_tokens=4)[0] for p in prompts]
    assert backbone.generate(prompts, max_new_tokens=4) == alone  # padding a shorter prompt changes nothing
    tok = backbone.processor.tokenizer
    for prompt, answer in zip(prompts, alone, strict=True):
        batch = backbone.collate([prompt], add_generation_prompt=True)
        with torch.no_grad():
            logits = backbone({k: v for k, v in batch.items() if k != "labels"}).logits
        first = tok.decode([int(logits[0, -1].argmax())], skip_special_tokens=True).strip()
        assert backbone.generate([prompt], max_new_tokens=1)[0] == first  # greedy: the argmax token
        assert answer.startswith(first)
