"""The wire format: what openpi's client packs we read, what we pack it reads, and nothing else gets in."""

import msgpack
import numpy as np
import pytest
from openpi_client import msgpack_numpy

from vlm2vla.serving import codec


def test_openpi_messages_round_trip_both_ways():
    message = {"observation/images/front": np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
               "observation/state": np.array([1.5, -2.0], dtype=np.float32), "prompt": "open the drawer",
               "step": np.int64(7), "flag": np.bool_(True), "nested": {"x": [1, 2.5, "a"]}}
    ours = codec.unpackb(msgpack_numpy.packb(message))
    theirs = msgpack_numpy.unpackb(codec.packb(message))
    for decoded in (ours, theirs):
        assert decoded.keys() == message.keys()
        for key in ("observation/images/front", "observation/state"):
            assert decoded[key].dtype == message[key].dtype
            np.testing.assert_array_equal(decoded[key], message[key])
        assert decoded["prompt"] == "open the drawer" and decoded["step"] == 7 and decoded["nested"]["x"][2] == "a"
    assert ours["observation/state"].flags.writeable  # a copy, not a view of the message buffer


def _array_message(**fields) -> bytes:
    entry = {b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "<f4", b"shape": [2]}
    entry.update({k.encode(): v for k, v in fields.items()})
    return msgpack.packb({"x": entry})


@pytest.mark.parametrize("fields, words", [
    ({"dtype": "|O"}, "refused"),             # object arrays would be pickles
    ({"dtype": "<c8"}, "refused"),
    ({"dtype": "|V8"}, "refused"),
    ({"dtype": "<z9"}, "unknown array dtype"),
    ({"dtype": 5}, "dtype"),
    ({"shape": [3]}, "needs 12 bytes"),       # shape and bytes disagree
    ({"shape": [-1]}, "non-negative"),
    ({"shape": [1] * 9}, "at most 8"),
    ({"data": "text"}, "must be bytes"),
])
def test_arrays_that_are_not_plain_numbers_are_refused(fields, words):
    with pytest.raises(codec.DecodeError, match=words):
        codec.unpackb(_array_message(**fields))


@pytest.mark.parametrize("data", [b"\xc1", b"\x81\xa1a", msgpack.packb({"a": 1}) + b"\x01", "a text frame"])
def test_bytes_that_are_not_one_msgpack_message_are_refused(data):
    with pytest.raises(codec.DecodeError):
        codec.unpackb(data)


def test_objects_that_cannot_travel_are_refused_when_packing():
    with pytest.raises(TypeError, match="dtype object"):
        codec.packb({"x": np.array([object()])})
