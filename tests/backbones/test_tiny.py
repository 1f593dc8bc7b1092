"""The built-in tiny VLM: size, image tokens, atomic build, and that it can learn."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlm2vla.backbones import ChatExample, VLMBackbone, build_tiny_vlm

CORPUS = [f"pick up the {c} {o} and place it {w}" for c in ("red", "blue", "green")
          for o in ("cube", "ball", "block") for w in ("left", "right", "in the bin")] * 10


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "vlm", CORPUS, vocab_size=512)
    return VLMBackbone.from_pretrained(str(folder))


def test_tiny_size_and_image_tokens(tiny):
    assert tiny.family == "idefics3"
    assert 2e6 < tiny.model.num_parameters() < 8e6
    ex = ChatExample(images=[Image.new("RGB", (128, 128), "red")], messages=[{"role": "user", "content": "hi"}])
    batch = tiny.collate([ex], add_generation_prompt=True)
    assert (batch["input_ids"] == tiny.processor.image_token_id).sum() == 16


def test_tiny_build_is_atomic_and_refuses_to_clobber(tmp_path):
    out = build_tiny_vlm(tmp_path / "vlm", CORPUS[:5], vocab_size=300)
    assert (out / "config.json").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(FileExistsError):
        build_tiny_vlm(out, CORPUS[:5])
    with pytest.raises(ValueError, match="multiple of 32"):
        build_tiny_vlm(tmp_path / "bad", CORPUS[:5], image_size=100)


def test_tiny_loss_falls_when_overfitting(tiny):
    colors = ("red", "blue", "green", "yellow")
    examples = [ChatExample(images=[Image.new("RGB", (128, 128), c)],
                            messages=[{"role": "user", "content": "what color is the image?"},
                                      {"role": "assistant", "content": c}]) for c in colors]
    batch = tiny.collate(examples)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(tiny.parameters(), lr=3e-3)
    tiny.train()
    losses = []
    for _ in range(30):
        loss = tiny(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
