"""Feature extraction: pooling choices, padding invariance, robot prompts in the chat template, NLL."""

import numpy as np
import pytest
import torch
from PIL import Image

from vlm2vla.backbones.chat import ChatExample
from vlm2vla.engine.features import (
    answer_nll,
    check_layer,
    extract_features,
    pool_hidden,
    robot_example,
    sample_robot_frames,
)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    from vlm2vla.backbones import VLMBackbone
    from vlm2vla.backbones.random_models import build_family

    path = build_family("idefics3", tmp_path_factory.mktemp("tiny_vlm"), image_size=32)
    return VLMBackbone.from_pretrained(str(path))


def _image(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def _chat(seed, question, answer):
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return ChatExample([_image(seed)], messages)


SHORT = _chat(0, "what color is the cube?", "red")
LONG = _chat(1, "how many objects are there, a red cube left of a blue ball and what else?", "three objects")


def test_padding_does_not_change_a_samples_features(backbone):
    for pooling in ("mean", "last"):
        alone, _ = extract_features(backbone, [SHORT], pooling=pooling)
        batched, _ = extract_features(backbone, [LONG, SHORT], pooling=pooling)  # SHORT is left padded here
        np.testing.assert_allclose(batched[1], alone[0], atol=1e-4)


def test_mean_and_last_pooling_differ(backbone):
    mean, _ = extract_features(backbone, [SHORT, LONG], pooling="mean")
    last, _ = extract_features(backbone, [SHORT, LONG], pooling="last")
    assert mean.shape == last.shape == (2, backbone.hidden_size) and mean.dtype == np.float32
    assert np.abs(mean - last).max() > 1e-2


def test_layer_choice(backbone):
    last, _ = extract_features(backbone, [SHORT], layer=-1)
    explicit, _ = extract_features(backbone, [SHORT], layer=backbone.num_layers)
    first, _ = extract_features(backbone, [SHORT], layer=1)
    np.testing.assert_allclose(last, explicit)
    assert np.abs(last - first).max() > 1e-3
    with pytest.raises(ValueError, match="layer must be in"):
        check_layer(backbone.num_layers + 1, backbone.num_layers)


def test_robot_prompt_uses_the_chat_template(backbone):
    example = robot_example(np.zeros((32, 32, 3), np.uint8), "  pick up the red block ")
    assert example.messages == [{"role": "user", "content": "pick up the red block"}]
    pool_prompt = ChatExample(example.images, [{"role": "user", "content": "pick up the red block"},
                                               {"role": "assistant", "content": "ok"}])
    robot_ids = backbone.collate([example])["input_ids"][0].tolist()
    pool_ids = backbone.collate([pool_prompt])["input_ids"][0].tolist()
    assert pool_ids[:len(robot_ids)] == robot_ids  # same template: the robot prompt is the pool prompt's user turn
    feats, losses = extract_features(backbone, [example, SHORT], compute_loss=True)
    assert np.isnan(losses[0]) and np.isfinite(losses[1]) and losses[1] > 0


def test_answer_nll_matches_the_model_loss(backbone):
    batch = backbone.collate([SHORT])
    with torch.no_grad():
        out = backbone(batch)
    np.testing.assert_allclose(answer_nll(out.logits, batch["labels"]).numpy(), [out.loss.item()], rtol=1e-4)


def test_pool_hidden_ignores_padding():
    h = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3).repeat(2, 1, 1)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_allclose(pool_hidden(h, mask, "mean")[0], h[0, 2:].mean(0))
    np.testing.assert_allclose(pool_hidden(h, torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]), "last")[0], h[0, 1])


def test_robot_frames_are_deterministic():
    a = sample_robot_frames([10, 3, 20], frames_per_episode=4, seed=7)
    assert a == sample_robot_frames([10, 3, 20], 4, 7)
    assert [f.episode for f in a].count(1) == 3  # a short episode gives all its frames
    assert a != sample_robot_frames([10, 3, 20], 4, 8)
    assert sample_robot_frames([10, 3, 20, 5], 4, 7)[:11] == a  # adding episodes keeps earlier draws
    assert len({f.id for f in sample_robot_frames([10, 3], 0, 0)}) == 13


def test_prompt_tokens_make_a_conversation_look_like_its_prompt_alone(backbone):
    # A pool sample pooled over "prompt" tokens equals its question asked on its own, rendered the way
    # robot frames are (with the assistant header), so robot and pool features differ by content, not
    # by the presence of an answer.
    question = ChatExample(SHORT.images, SHORT.messages[:1])
    for pooling in ("mean", "last"):
        conversation, _ = extract_features(backbone, [SHORT, LONG], pooling=pooling, tokens="prompt")
        alone, _ = extract_features(backbone, [question], pooling=pooling, tokens="prompt", robot=True)
        np.testing.assert_allclose(conversation[0], alone[0], atol=1e-4)
        with_answer, _ = extract_features(backbone, [SHORT], pooling=pooling, tokens="all")
        assert np.abs(with_answer[0] - alone[0]).max() > 1e-3
    with pytest.raises(ValueError, match="tokens must be one of"):
        extract_features(backbone, [SHORT], tokens="answer")
