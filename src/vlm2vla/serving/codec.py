"""openpi's wire format: msgpack maps whose NumPy arrays travel as {"__ndarray__", "data", "dtype", "shape"}.

    packb({"actions": chunk})        -> bytes an openpi client's `msgpack_numpy.unpackb` reads
    unpackb(message)                 -> the map an openpi client's `msgpack_numpy.Packer` wrote

Written here instead of imported from openpi-client because the server reads messages from the network:
openpi's decoder builds whatever dtype the sender names, while this one makes only numeric and boolean
arrays whose byte count matches their shape, and never unpickles anything. (openpi-client also pins
numpy<2, so it cannot be a dependency.)
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

# bool, signed and unsigned integers, floats: object, void and complex arrays are refused
ARRAY_KINDS = "biuf"
MAX_DIMS = 8


class DecodeError(ValueError):
    """A message that is not a msgpack map of plain values and numeric arrays; says what was wrong."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind not in ARRAY_KINDS:
        raise TypeError(f"cannot send an array of dtype {obj.dtype}: only {ARRAY_KINDS!r} kinds travel")
    if isinstance(obj, np.ndarray):
        obj = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send a {type(obj).__name__}")


def _dtype(name: Any) -> np.dtype:
    if not isinstance(name, str) or len(name) > 8:
        raise DecodeError(f"an array's dtype must be a short NumPy type string such as '<f4', got {name!r}")
    try:
        dtype = np.dtype(name)
    except TypeError as err:
        raise DecodeError(f"unknown array dtype {name!r}") from err
    if dtype.kind not in ARRAY_KINDS:
        raise DecodeError(f"array dtype {name!r} is refused: only bool, integer and float arrays are read")
    return dtype


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype, data, shape = _dtype(obj.get(b"dtype")), obj.get(b"data"), obj.get(b"shape")
        if not isinstance(data, bytes):
            raise DecodeError("an array's 'data' must be bytes")
        if (not isinstance(shape, list | tuple) or len(shape) > MAX_DIMS
                or not all(isinstance(n, int) and n >= 0 for n in shape)):
            raise DecodeError(f"an array's shape must be at most {MAX_DIMS} non-negative integers, got {shape!r}")
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
            raise DecodeError(f"an array of shape {list(shape)} and dtype {dtype.str} needs "
                              f"{int(np.prod(shape, dtype=np.int64)) * dtype.itemsize} bytes, the message has "
                              f"{len(data)}")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if b"__npgeneric__" in obj:
        dtype, value = _dtype(obj.get(b"dtype")), obj.get(b"data")
        if not isinstance(value, bool | int | float):
            raise DecodeError(f"a NumPy scalar's data must be a number, got {type(value).__name__}")
        return dtype.type(value)
    return obj


def packb(obj: Any) -> bytes:
    """Serialise `obj` (maps, lists, strings, numbers, NumPy arrays) in openpi's msgpack-numpy format."""
    return msgpack.packb(obj, default=_encode)


def unpackb(data: bytes) -> Any:
    """Read one openpi msgpack-numpy message.

    Raises:
        DecodeError: not msgpack, trailing bytes, or an array that is not a plain numeric array.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected a binary msgpack message, got {type(data).__name__}")
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError,
            msgpack.exceptions.StackError) as err:
        raise DecodeError(f"not a msgpack message ({type(err).__name__}: {err})") from err
