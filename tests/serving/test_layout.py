"""The request layout: which requests a policy takes, and what a refusal says."""

import numpy as np
import pytest
from serving_helpers import FEATURES, IMAGE, observation

from vlm2vla.policies import VLAConfig
from vlm2vla.serving.layout import ObservationLayout, RequestError

LAYOUT = ObservationLayout.of_policy(VLAConfig(cameras=("front",), chunk_size=4), FEATURES)


def test_a_request_becomes_the_policy_item():
    request = observation(3, "push the button")
    item, noise = LAYOUT.check(request)
    assert noise is None and item["task"] == "push the button"
    np.testing.assert_array_equal(item["observation.images.front"], request["observation/images/front"])
    assert item["observation.state"].dtype == np.float32
    assert LAYOUT.image_shapes == {"front": (IMAGE, IMAGE, 3)}
    described = LAYOUT.describe()
    assert described["observation"]["observation/images/front"]["shape"] == [IMAGE, IMAGE, 3]
    assert described["actions"]["shape"] == [4, 4]


def test_eval_rows_become_requests_the_layout_accepts():
    batch = {"observation.images.front": np.zeros((2, IMAGE, IMAGE, 3), np.uint8),
             "observation.state": np.ones((2, 4), np.float32), "task": ["a", "b"]}
    noise = np.ones((4, 4), np.float32)
    item, got = LAYOUT.check(LAYOUT.request(batch, 1, noise))
    assert item["task"] == "b"
    np.testing.assert_array_equal(got, noise)


def test_aliases_rename_a_clients_keys():
    layout = ObservationLayout.of_policy(VLAConfig(cameras=("front",), chunk_size=4), FEATURES,
                                         {"observation/image": "observation/images/front"})
    request = observation()
    request["observation/image"] = request.pop("observation/images/front")
    layout.check(request)
    with pytest.raises(RequestError, match="observation/images/front"):
        LAYOUT.check(request)


def _broken(change):
    request = observation()
    change(request)
    return request


@pytest.mark.parametrize("change, words", [
    (lambda r: r.pop("observation/images/front"), "no 'observation/images/front'"),
    (lambda r: r.pop("observation/state"), "no 'observation/state'"),
    (lambda r: r.pop("prompt"), "'prompt' must be the instruction"),
    (lambda r: r.update(prompt=" "), "non-empty"),
    (lambda r: r.update({"observation/images/front": np.zeros((20, 20, 3), np.uint8)}), "is 20x20.*40x40"),
    (lambda r: r.update({"observation/images/front": np.zeros((IMAGE, IMAGE, 3), np.float32)}), "uint8"),
    (lambda r: r.update({"observation/images/front": np.zeros((IMAGE, IMAGE), np.uint8)}), r"\[H, W, 3\]"),
    (lambda r: r.update({"observation/state": np.zeros(5, np.float32)}), "must hold 4 numbers"),
    (lambda r: r.update({"observation/state": np.array([1, np.nan, 0, 0], np.float32)}), "NaN"),
    (lambda r: r.update({"observation/state": "1,2,3,4"}), "NumPy array"),
    (lambda r: r.update(noise=np.zeros((3, 4), np.float32)), r"float \[4, 4\]"),
])
def test_broken_requests_say_what_is_wrong(change, words):
    with pytest.raises(RequestError, match=words):
        LAYOUT.check(_broken(change))


def test_a_request_must_be_a_map():
    with pytest.raises(RequestError, match="msgpack map"):
        LAYOUT.check([1, 2])


def test_a_policy_without_recorded_sizes_takes_any_size():
    layout = ObservationLayout.of_policy(VLAConfig(cameras=("front",), chunk_size=4), None)
    layout.check(observation(size=17))
