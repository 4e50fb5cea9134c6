"""Read TensorFlow checkpoints (tensor bundles) without TensorFlow.

A TensorFlow checkpoint ``<prefix>`` is two kinds of files:

* ``<prefix>.index``: an immutable sorted string table in the LevelDB format. Keys are variable
  names; each value is a serialised ``BundleEntryProto`` (dtype, shape, shard id, byte offset,
  byte size, masked CRC-32C of the bytes). The empty key holds the ``BundleHeaderProto``
  (number of shards, endianness).
* ``<prefix>.data-NNNNN-of-MMMMM``: the raw little-endian tensor bytes, back to back.

This module parses both with the standard library and numpy: the table's footer, index and data
blocks with their prefix-compressed keys, and the few protobuf fields it needs from the wire
format. Every tensor's CRC-32C is checked, so a truncated or altered data file is an error, not
silently wrong weights. Only what TensorFlow's ``BundleWriter`` produces is supported
(uncompressed blocks, unsliced variables, numeric dtypes); anything else is a ``CheckpointError``
that says what was found. Nothing in a checkpoint is executed: it is data only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np

from stylecraft.errors import CheckpointError

__all__ = ["TFCheckpoint", "TensorEntry", "find_checkpoint_prefix"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER = 5  # 1 byte compression type + 4 bytes masked crc32c
_CRC_MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto DataType -> numpy dtype (little endian).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
_DTYPE_NAMES = {7: "string", 14: "bfloat16", 8: "complex64", 18: "complex128", 20: "resource", 21: "variant"}


@dataclass(frozen=True)
class TensorEntry:
    """Where one variable lives in the data shards (a ``BundleEntryProto``)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int | None  # masked, as stored


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) of a serialised protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield field, wire, value
        elif wire == 1:
            yield field, wire, struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            yield field, wire, bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            yield field, wire, struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _shape(buf: bytes) -> tuple[int, ...]:
    dims: list[int] = []
    for field, _, value in _proto_fields(buf):
        if field == 2:  # repeated Dim dim
            if not isinstance(value, bytes):
                raise ValueError("malformed tensor shape")
            size = 0
            for f, _, v in _proto_fields(value):
                if f == 1:
                    if not isinstance(v, int):
                        raise ValueError("malformed tensor shape")
                    size = v
            dims.append(size)
        elif field == 3 and value:
            raise ValueError("tensor of unknown rank")
    return tuple(dims)


def _int_field(fields: dict[int, int | bytes], number: int, name: str) -> int:
    """A varint/fixed field of a parsed message (0 when absent, as protobuf defaults)."""
    v = fields.get(number, 0)
    if not isinstance(v, int):
        raise ValueError(f"variable {name!r}: field {number} has the wrong wire type")
    return v


def _masked_crc(data: bytes | memoryview) -> int:
    crc = google_crc32c.value(bytes(data)) if isinstance(data, memoryview) else google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size
    if end + _BLOCK_TRAILER > len(data):
        raise ValueError(f"{what} block runs past the end of the file")
    block = data[offset:end]
    compression = data[end]
    if compression != 0:
        raise ValueError(f"{what} block is compressed (type {compression}); TensorFlow bundles are not")
    (stored,) = struct.unpack_from("<I", data, end + 1)
    if _masked_crc(data[offset : end + 1]) != stored:
        raise ValueError(f"{what} block fails its CRC-32C check")
    return block


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Entries of one table block: keys share prefixes with the previous key."""
    if len(block) < 4:
        raise ValueError("block too short")
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * n_restarts
    if limit < 0:
        raise ValueError("bad restart array")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise ValueError("corrupt block entry")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _index_of(prefix: str) -> Path:
    return Path(f"{prefix}.index")


def _prefix_of(index: Path) -> str:
    """The prefix of an index file: its path without ``.index`` (``"<folder>/"`` for a bare ``.index``)."""
    return str(index)[: -len(".index")]


def find_checkpoint_prefix(path: Path) -> str:
    """Resolve a checkpoint prefix from a directory (its ``checkpoint`` file) or a prefix/index path.

    The prefix is text, not a path: a checkpoint saved under a prefix ending in ``/`` has files
    named ``.index`` and ``.data-*`` inside that folder, and its prefix is ``"<folder>/"``.

    Raises:
        CheckpointError: when no TensorFlow checkpoint is there, naming what was found.
    """
    path = Path(path)
    if path.name.endswith(".index") and path.is_file():
        return _prefix_of(path)
    if _index_of(str(path)).is_file():
        return str(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            for line in state.read_text(errors="replace").splitlines():
                if line.startswith("model_checkpoint_path:"):
                    name = line.split(":", 1)[1].strip().strip('"')
                    prefix = name if Path(name).is_absolute() else f"{path}/{name}"
                    # Checkpoints moved after training keep an absolute path of the old place: look for
                    # the last part of the prefix here ("" when it ends in "/").
                    if not _index_of(prefix).is_file():
                        prefix = f"{path}/{name.rsplit('/', 1)[-1]}"
                    if _index_of(prefix).is_file():
                        return prefix
        indexes = sorted(path.glob("*.index"), key=lambda p: (len(p.name), p.name))
        if len(indexes) == 1:
            return _prefix_of(indexes[0])
        if indexes:
            raise CheckpointError(
                f"{path} holds {len(indexes)} checkpoints and no 'checkpoint' file naming the latest; "
                "pass one '<prefix>.index' file"
            )
        found = ", ".join(sorted(p.name for p in path.iterdir())[:6]) or "nothing"
        raise CheckpointError(f"{path} is not a TensorFlow checkpoint directory (found: {found})")
    raise CheckpointError(f"{path} is not a TensorFlow checkpoint (expected a directory or '<prefix>.index')")


class TFCheckpoint:
    """A TensorFlow checkpoint opened for reading.

    Example:
        >>> ckpt = TFCheckpoint("pretrained_models/4stems")  # doctest: +SKIP
        >>> ckpt.names()[:2], ckpt.read("conv2d/kernel").shape  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.prefix = find_checkpoint_prefix(Path(path))
        index_path = _index_of(self.prefix)
        try:
            self._entries, self.num_shards = self._parse_index(index_path.read_bytes())
        except (ValueError, struct.error, IndexError) as exc:
            raise CheckpointError(
                f"{index_path} is not a readable TensorFlow checkpoint index: {exc}"
            ) from exc
        self._shards: dict[int, np.memmap] = {}

    @staticmethod
    def _parse_index(data: bytes) -> tuple[dict[str, TensorEntry], int]:
        if len(data) < _FOOTER_SIZE:
            raise ValueError("file shorter than a table footer")
        footer = data[-_FOOTER_SIZE:]
        (magic,) = struct.unpack_from("<Q", footer, _FOOTER_SIZE - 8)
        if magic != _TABLE_MAGIC:
            raise ValueError("no table magic number at the end")
        pos = 0
        _, pos = _varint(footer, pos)  # metaindex offset
        _, pos = _varint(footer, pos)  # metaindex size
        index_offset, pos = _varint(footer, pos)
        index_size, pos = _varint(footer, pos)
        entries: dict[str, TensorEntry] = {}
        num_shards = 1
        for _, handle in _block_entries(_read_block(data, index_offset, index_size, "index")):
            offset, p = _varint(handle, 0)
            size, _ = _varint(handle, p)
            for key, value in _block_entries(_read_block(data, offset, size, "data")):
                if key == b"":
                    for field, _, v in _proto_fields(value):
                        if field == 1:
                            if not isinstance(v, int) or v < 1:
                                raise ValueError("malformed bundle header")
                            num_shards = v
                        elif field == 2 and v != 0:
                            raise ValueError("big-endian checkpoints are not supported")
                    continue
                entries[key.decode("utf-8")] = TFCheckpoint._entry(key.decode("utf-8"), value)
        return entries, num_shards

    @staticmethod
    def _entry(name: str, value: bytes) -> TensorEntry:
        fields: dict[int, int | bytes] = {}
        for field, _, v in _proto_fields(value):
            if field == 7:
                raise ValueError(f"variable {name!r} is partitioned into slices, which is not supported")
            fields[field] = v
        dtype_code = _int_field(fields, 1, name)
        if dtype_code not in _DTYPES:
            kind = _DTYPE_NAMES.get(dtype_code, f"code {dtype_code}")
            raise ValueError(f"variable {name!r} has unsupported dtype {kind}")
        shape_bytes = fields.get(2, b"")
        if not isinstance(shape_bytes, bytes):
            raise ValueError(f"variable {name!r}: malformed shape field")
        crc = _int_field(fields, 6, name) if 6 in fields else None
        return TensorEntry(
            name,
            _DTYPES[dtype_code],
            _shape(shape_bytes),
            _int_field(fields, 3, name),
            _int_field(fields, 4, name),
            _int_field(fields, 5, name),
            crc,
        )

    def names(self) -> list[str]:
        """All variable names, sorted."""
        return sorted(self._entries)

    def entry(self, name: str) -> TensorEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise CheckpointError(f"{self.prefix}: no variable {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def _shard(self, shard: int) -> np.memmap:
        if shard not in self._shards:
            path = Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")
            if not path.is_file():
                raise CheckpointError(f"checkpoint data file missing: {path}")
            self._shards[shard] = np.memmap(path, dtype=np.uint8, mode="r")
        return self._shards[shard]

    def read(self, name: str) -> np.ndarray:
        """Read one variable as a numpy array (a copy), checking its size and CRC-32C.

        Raises:
            CheckpointError: unknown name, missing shard, short file or CRC mismatch.
        """
        e = self.entry(name)
        shard = self._shard(e.shard)
        expected = int(np.prod(e.shape, dtype=np.int64)) * e.dtype.itemsize
        if e.size != expected:
            raise CheckpointError(
                f"{self.prefix}: {name!r} records {e.size} bytes, its shape needs {expected}"
            )
        if e.offset + e.size > shard.size:
            raise CheckpointError(
                f"{self.prefix}: data for {name!r} runs past the end of shard {e.shard} (truncated file?)"
            )
        raw = bytes(shard[e.offset : e.offset + e.size])
        if e.crc32c is not None and _masked_crc(raw) != e.crc32c:
            raise CheckpointError(
                f"{self.prefix}: {name!r} fails its CRC-32C check (altered or corrupt data file)"
            )
        return np.frombuffer(raw, dtype=e.dtype).reshape(e.shape).copy()

    def read_all(self, keep: str | None = None) -> dict[str, np.ndarray]:
        """Read every variable (or those whose name contains ``keep``)."""
        return {n: self.read(n) for n in self.names() if keep is None or keep in n}
