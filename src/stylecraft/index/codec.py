"""Arrays to bytes and back, without pickle: raw little-endian buffers and safetensors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def pack(array: np.ndarray, dtype: str) -> bytes:
    """Raw little-endian bytes of ``array`` as ``dtype`` (the shape is stored beside it)."""
    return np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def unpack(data: bytes | memoryview, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """The array :func:`pack` wrote (a copy, native byte order)."""
    return np.frombuffer(bytes(data), dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype)


def to_safetensors(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """Arrays and a JSON-serialisable ``meta`` dict as safetensors bytes."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={"json": json.dumps(meta)})


def from_safetensors(data: bytes | memoryview) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`to_safetensors`."""
    from safetensors.numpy import load

    raw = bytes(data)
    arrays = load(raw)
    # safetensors keeps metadata in the header: an 8-byte length, then JSON.
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    return arrays, json.loads(header.get("__metadata__", {}).get("json", "{}"))
