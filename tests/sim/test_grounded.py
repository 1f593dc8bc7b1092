"""The language-grounded suite: layouts, splits, visibility, experts, wrong-target, bad names."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vlm2vla.sim import SimConfig, make_env
from vlm2vla.sim.grounded import tasks as gt
from vlm2vla.sim.grounded.expert import GroundedExpert
from vlm2vla.sim.grounded.scene import COLOURS, NUM_TARGETS
from vlm2vla.sim.suites import get_suite

CFG = SimConfig(name="grounded", camera="front", image_size=128)
SMALL = SimConfig(name="grounded", camera="front", image_size=32)
TASKS = [f.task for f in gt.FAMILIES.values()]


@pytest.fixture(scope="module")
def envs():
    made = {task: make_env(task, CFG) for task in TASKS}
    yield made
    for env in made.values():
        env.close()


def _run_expert(env, seed: int, options: dict, target: int | None = None, noise: float = 0.0) -> dict:
    expert = GroundedExpert(env.task, noise_std=noise, seed=seed)
    obs, _ = env.reset(seed=seed, options=options)
    for _ in range(env.max_episode_steps):
        obs, _, terminated, truncated, info = env.step(expert(obs["observation.environment_state"], target=target))
        if terminated or truncated:
            break
    return info


# ---------------------------------------------------------------- layouts
@pytest.mark.parametrize("task", TASKS)
def test_layout_is_reproducible_by_seed_and_shuffled_across_seeds(envs, task):
    env = envs[task]
    obs_a, _ = env.reset(seed=7, options={"target": env.family.attributes[1]})
    pos_a = env.object_positions()
    obs_b, _ = env.reset(seed=7, options={"target": env.family.attributes[1]})
    np.testing.assert_array_equal(pos_a, env.object_positions())
    np.testing.assert_array_equal(obs_a["observation.images.front"], obs_b["observation.images.front"])
    # Every candidate takes every slot of the row at some seed: the scene alone never tells the target.
    slots = set()
    for seed in range(30):
        env.reset(seed=seed)
        order = np.argsort(env.object_positions()[:, 0])
        slots |= {(int(obj), rank) for rank, obj in enumerate(order)}
    assert slots == set(itertools.product(range(NUM_TARGETS), range(NUM_TARGETS)))


def test_target_changes_the_goal_not_the_layout(envs):
    env = envs["grounded-reach"]
    env.reset(seed=3, options={"target": "blue"})
    layout, named_blue = env.object_positions(), env.named_index()
    env.reset(seed=3, options={"target": "yellow"})
    np.testing.assert_array_equal(layout, env.object_positions())
    assert (named_blue, env.named_index()) == (0, 2)


def test_spatial_words_name_the_ball_at_that_place_in_the_image(envs):
    env = envs["grounded-reach-spatial"]
    for seed in range(5):
        image_x = {}
        for word in gt.SPATIAL:
            env.reset(seed=seed, options={"target": word})
            image_x[word] = _image_column(env, env.named_index())
        assert image_x["left"] < image_x["middle"] < image_x["right"]


def test_shifted_layouts_come_from_a_region_training_never_uses():
    rng = np.random.default_rng(0)
    family = gt.FAMILIES["push"]
    train = np.concatenate([gt.draw_layout(family, "train", rng)[0][:, 1] for _ in range(200)])
    shifted = np.concatenate([gt.draw_layout(family, "shifted", rng)[0][:, 1] for _ in range(200)])
    assert train.max() < shifted.min()


# ---------------------------------------------------------------- splits
def test_splits_are_disjoint_and_stable():
    for family in gt.FAMILIES.values():
        assert not set(family.seen_templates) & set(family.unseen_templates)
        assert family.templates[0] in family.seen_templates
        seen_pairs = set(family.attributes_in("seen"))
        held = set(family.attributes_in("unseen_composition"))
        assert not seen_pairs & held and seen_pairs | held == set(family.attributes)
    # Each held-out colour is seen with another family, and each colour family keeps two seen colours.
    for family_name, colour in gt.HELD_OUT:
        assert any(colour in f.attributes_in("seen") for f in gt.FAMILIES.values() if f.name != family_name)
        assert len(gt.FAMILIES[family_name].attributes_in("seen")) == 2
    suite = get_suite("grounded")
    draws = [suite.episode(t, s, np.random.default_rng(5)) for t in TASKS for s in gt.SPLITS]
    assert draws == [suite.episode(t, s, np.random.default_rng(5)) for t in TASKS for s in gt.SPLITS]


@pytest.mark.parametrize("split", gt.SPLITS)
def test_episodes_of_a_split_use_only_its_templates_pairs_and_layouts(split):
    suite = get_suite("grounded")
    rng = np.random.default_rng(0)
    for task in TASKS:
        family = gt.resolve_family(task)
        for _ in range(40):
            spec = suite.episode(task, split, rng)
            if spec is None:
                assert split == "unseen_composition" and family.name == "reach-spatial"
                break
            target = spec.metadata["target"]
            assert (family.name, target) in gt.HELD_OUT if split == "unseen_composition" else \
                (family.name, target) not in gt.HELD_OUT
            expected = "unseen_paraphrase" if split == "unseen_paraphrase" else "seen"
            assert gt.instruction_split(task, spec.instruction) == expected
            assert target in spec.instruction
            assert spec.options == {"target": target, "layout": "shifted" if split == "position" else "train"}
            assert spec.metadata["split"] == split and spec.metadata["family"] == family.name


# ---------------------------------------------------------------- visibility
def _image_column(env, index: int) -> float:
    """Mean image column of the pixels candidate `index` covers (found by hiding it under the table)."""
    return float(np.nonzero(_covered(env, index))[1].mean())


def _covered(env, index: int) -> np.ndarray:
    sawyer = env._env
    image = env._render_image()
    kept = sawyer.positions.copy()
    sawyer.positions[index] = [0.6, 0.4, -0.5]  # below the table top: out of every camera's sight
    sawyer.reset_model()
    hidden = env._render_image()
    sawyer.positions[:] = kept
    sawyer.reset_model()
    return np.abs(image.astype(int) - hidden.astype(int)).sum(-1) > 30


@pytest.mark.parametrize("task", TASKS)
def test_every_candidate_is_clearly_visible_and_colours_are_distinct(envs, task):
    env = envs[task]
    for seed, layout in ((0, "train"), (1, "shifted")):
        obs, _ = env.reset(seed=seed, options={"layout": layout})
        image = obs["observation.images.front"].astype(float)
        means = []
        for i in range(NUM_TARGETS):
            mask = _covered(env, i)
            # At 128 px a candidate covers 125-350 pixels (measured); 80 leaves room for the hand in front.
            assert mask.sum() >= 80, f"{task} {layout}: candidate {i} covers {mask.sum()} px"
            means.append(image[mask].mean(0))
        if env.family.scene.coloured:
            for (i, a), (j, b) in itertools.combinations(enumerate(means), 2):
                assert np.abs(a - b).max() > 60, f"{task}: {list(COLOURS)[i]} and {list(COLOURS)[j]} look alike"


# ---------------------------------------------------------------- experts and wrong targets
@pytest.mark.parametrize("task", ["grounded-reach", "grounded-lift"])
def test_aiming_at_a_distractor_is_recorded_as_wrong_target(task):
    env = make_env(task, SMALL)
    try:
        info = _run_expert(env, seed=0, options={"target": env.family.attributes[0]}, target=1)
        assert info["wrong_target"] and not info["is_success"]
        info = _run_expert(env, seed=0, options={"target": env.family.attributes[0]})
        assert info["is_success"] and not info["wrong_target"]
    finally:
        env.close()


def test_random_target_expert_scores_about_one_in_k():
    env = make_env("grounded-reach", SMALL)
    rng = np.random.default_rng(0)
    try:
        wins = sum(_run_expert(env, seed=s, options={"target": "green"}, target=int(rng.integers(3)))["is_success"]
                   for s in range(45))
    finally:
        env.close()
    assert 0.15 < wins / 45 < 0.55  # 1/3; the Wilson interval of n=45 around it is [0.21, 0.48]


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("layout", gt.LAYOUTS)
def test_every_family_expert_succeeds_90_percent(task, layout):
    env = make_env(task, SMALL)
    try:
        wins = sum(_run_expert(env, seed=s, options={"target": env.family.attributes[s % 3], "layout": layout},
                               noise=0.1)["is_success"] for s in range(20))
    finally:
        env.close()
    assert wins >= 18, f"{task} ({layout}): {wins}/20"


# ---------------------------------------------------------------- bad names
def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="grounded-push"):
        gt.resolve_tasks("grounded-pushh")
    with pytest.raises(ValueError, match="blue, green, yellow"):
        gt.check_attribute(gt.FAMILIES["reach"], "red")
    with pytest.raises(ValueError, match="unseen_paraphrase"):
        gt.check_split("unseen")
    with pytest.raises(ValueError, match="Did you mean 'left'"):
        gt.check_attribute(gt.FAMILIES["reach-spatial"], "lef")
    env = make_env("grounded-reach", SMALL)
    try:
        with pytest.raises(ValueError, match="'red'.*Valid: blue, green, yellow"):
            env.reset(seed=0, options={"target": "red"})
        with pytest.raises(ValueError, match="layout 'far'.*Valid: train, shifted"):
            env.reset(seed=0, options={"layout": "far"})
    finally:
        env.close()
