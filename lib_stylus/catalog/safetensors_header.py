"""Read a safetensors header without loading tensors: 8-byte little-endian length, then JSON."""
from __future__ import annotations

import hashlib
import json
import struct

MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own bound; anything larger is not a real header


class HeaderError(ValueError):
    pass


def read_header(path: str) -> tuple[dict, dict, str]:
    """Return (metadata, tensors {key: {dtype, shape, ...}}, sha256 of the header bytes)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) == 0:
            raise HeaderError("empty file")
        if len(head) < 8:
            raise HeaderError("truncated header length")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or n > MAX_HEADER:
            raise HeaderError(f"absurd header length {n}")
        raw = f.read(n)
    if len(raw) < n:
        raise HeaderError(f"truncated header ({len(raw)} of {n} bytes)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeaderError(f"header is not JSON ({e.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        meta = {}
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
    tensors = {k: v for k, v in header.items() if isinstance(v, dict)}
    return meta, tensors, hashlib.sha256(raw).hexdigest()[:16]


def json_field(meta: dict, key: str):
    """Metadata values are strings; nested ones are JSON strings. None when absent or not JSON."""
    value = meta.get(key)
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None
