"""Read a safetensors header without loading tensors: 8-byte little-endian length, then JSON. The header and
the file size are checked the way the web UI 1.10's loader (safetensors 0.4.2) checks them, so a file it
refuses is reported here instead of being offered and then failing in the host."""
from __future__ import annotations

import hashlib
import os
import struct

from .untrusted import Unusable, loads, open_regular

MAX_HEADER = 100_000_000  # safetensors' own bound (MAX_HEADER_SIZE); anything larger is not a real header
METADATA = "__metadata__"
# Element sizes of the dtypes torch 2.1 loads (the U16/U32/U64 of newer safetensors have no torch 2.1 type).
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "F32": 4, "I64": 8, "F64": 8}
_U64 = 2 ** 64


class HeaderError(Unusable):
    pass


def read_header(path: str) -> tuple[dict, dict, str]:
    """Return (metadata, tensors {key: {dtype, shape, ...}}, sha256 of the header bytes). Raises Unusable."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) == 0:
            raise HeaderError("empty file")
        if len(head) < 8:
            raise HeaderError("truncated header length")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > MAX_HEADER:
            raise HeaderError(f"absurd header length {n}")
        raw = f.read(min(n, size - 8))
    if len(raw) < n:
        raise HeaderError(f"truncated header ({len(raw)} of {n} bytes)")
    try:
        header = loads(raw, once=(METADATA,))
    except HeaderError:
        raise
    except Unusable as e:
        raise HeaderError(f"header: {e}") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    meta = header.pop(METADATA, None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise HeaderError(f"{METADATA} is not a map of strings to strings")
    data_end = _check_offsets(header)
    if 8 + n + data_end != size:
        what = "truncated tensor data" if 8 + n + data_end > size else "bytes after the tensor data"
        raise HeaderError(f"{what} (the header needs {8 + n + data_end} bytes, the file has {size})")
    return meta, header, hashlib.sha256(raw).hexdigest()[:16]


def _check_offsets(tensors: dict) -> int:
    """safetensors' Metadata::validate: in offset order, each tensor starts where the previous ended and spans
    exactly its shape times its dtype size. Returns where the data ends."""
    spans = sorted((_span(key, info), key) for key, info in tensors.items())
    pos = 0
    for (start, end), key in spans:
        if start != pos:
            where = f"starts at {start}, not {pos}"
            raise HeaderError(f"tensor {_name(key)}: data_offsets leave a gap or overlap ({where})")
        pos = end
    return pos


def _span(key: str, info) -> tuple[int, int]:
    if not isinstance(info, dict):
        raise HeaderError(f"tensor {_name(key)} is not a tensor description")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise HeaderError(f"tensor {_name(key)}: unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or not all(_u64(d) for d in shape):
        raise HeaderError(f"tensor {_name(key)}: shape is not a list of sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_u64(o) for o in offsets):
        raise HeaderError(f"tensor {_name(key)}: data_offsets is not [start, end]")
    count = 1
    for d in shape:
        count *= d
    start, end = offsets
    if count * DTYPE_SIZES[dtype] >= _U64 or end < start or end - start != count * DTYPE_SIZES[dtype]:
        raise HeaderError(f"tensor {_name(key)}: {dtype} {shape} needs {count * DTYPE_SIZES[dtype]} bytes, "
                          f"data_offsets [{start}, {end}] give {end - start}")
    return start, end


def _u64(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _U64


def _name(key: str) -> str:
    return repr(key if len(key) <= 60 else key[:57] + "...")


def json_field(meta: dict, key: str):
    """A metadata value holding JSON (e.g. ss_tag_frequency): None when absent, else the value or Unusable."""
    value = meta.get(key)
    if value is None:
        return None
    try:
        return loads(value)
    except Unusable as e:
        raise Unusable(f"safetensors metadata {key} ignored: {e}") from None
