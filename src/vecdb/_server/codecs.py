"""Binary codecs for pgvector's ``vector`` and ``halfvec`` types, numpy in and out.

pgvector's binary format is ``int16 dim, int16 unused`` followed by big-endian
float32 (``vector``) or float16 (``halfvec``) values. Decoding straight into a
numpy array costs one copy, where a Python list per vector would cost one
object per element; on the COPY path this is most of the client's work.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._typing import Connection

__all__ = ["decode_halfvec", "decode_vector", "encode_halfvec", "encode_vector", "register"]

_HEADER = struct.Struct(">HH")
_BIG_F4 = np.dtype(">f4")
_BIG_F2 = np.dtype(">f2")


def _as_array(value: Any) -> npt.NDArray[Any]:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"a vector must be one-dimensional, got shape {array.shape}")
    return array


def encode_vector(value: Sequence[float] | npt.NDArray[Any]) -> bytes:
    """Encode a 1-d sequence or array as pgvector's binary ``vector``."""
    array = _as_array(value)
    return _HEADER.pack(array.shape[0], 0) + array.astype(_BIG_F4, copy=False).tobytes()


def encode_halfvec(value: Sequence[float] | npt.NDArray[Any]) -> bytes:
    """Encode a 1-d sequence or array as pgvector's binary ``halfvec``."""
    array = _as_array(value)
    return _HEADER.pack(array.shape[0], 0) + array.astype(_BIG_F2, copy=False).tobytes()


def decode_vector(data: bytes) -> npt.NDArray[np.float32]:
    """Decode pgvector's binary ``vector`` into a float32 array."""
    (dim, _) = _HEADER.unpack_from(data)
    return np.frombuffer(data, dtype=_BIG_F4, count=dim, offset=4).astype(np.float32)


def decode_halfvec(data: bytes) -> npt.NDArray[np.float32]:
    """Decode pgvector's binary ``halfvec`` into a float32 array."""
    (dim, _) = _HEADER.unpack_from(data)
    return np.frombuffer(data, dtype=_BIG_F2, count=dim, offset=4).astype(np.float32)


async def register(conn: Connection, *, schema: str = "public") -> None:
    """Register the codecs on a connection (the pool's ``init`` hook calls this).

    Args:
        conn: The connection.
        schema: The schema the ``vector`` extension was created in.
    """
    await conn.set_type_codec(
        "vector", schema=schema, encoder=encode_vector, decoder=decode_vector, format="binary"
    )
    await conn.set_type_codec(
        "halfvec", schema=schema, encoder=encode_halfvec, decoder=decode_halfvec, format="binary"
    )
