"""Files and JSON from strangers. Only regular files are opened (a FIFO blocks its reader for ever, a device
such as /dev/zero never ends), every read is bounded, and JSON is parsed strictly: each problem becomes one
short reason (an Unusable error) instead of an exception from deep inside the parser."""
from __future__ import annotations

import json
import math
import os
import stat

MAX_SIDECAR = 16 * 1024 * 1024
MAX_INT_DIGITS = 300  # a float64 holds up to ~1.8e308: a longer integer is out of range for serde_json too

_KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


class Unusable(ValueError):
    """Why a file, or the JSON in it, cannot be used: one line, without the file name (the caller adds it)."""


def not_regular(mode: int) -> str:
    """'' for a regular file, else the reason to skip it."""
    if stat.S_ISREG(mode):
        return ""
    return f"not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'a special file')})"


def open_regular(path: str):
    """A binary file object, or Unusable. O_NONBLOCK: opening a FIFO must not wait for a writer; the fstat
    after the open decides, so a file swapped for a FIFO after an earlier stat is still refused."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise Unusable(f"unreadable ({e.strerror or e.__class__.__name__})") from None
    reason = not_regular(os.fstat(fd).st_mode)
    if reason:
        os.close(fd)
        raise Unusable(reason)
    return os.fdopen(fd, "rb")


def read_regular(path: str, limit: int = MAX_SIDECAR) -> bytes:
    """The whole file, at most `limit` bytes, or Unusable."""
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(limit + 1) if size <= limit else b""  # limit + 1: a file still growing is caught too
        if size > limit or len(data) > limit:
            raise Unusable(f"too large ({max(size, len(data))} bytes, at most {limit} are read)")
        return data


def read_json(path: str) -> object:
    """A sidecar's JSON (a UTF-8 BOM is tolerated), or Unusable."""
    raw = read_regular(path)
    if not raw.strip():
        raise Unusable("empty")
    return loads(raw, bom=True)


def loads(raw: bytes | str, bom: bool = False, once: tuple = ()) -> object:
    """Strict JSON, as the Rust serde_json behind the safetensors loader reads it: no NaN/Infinity, no number
    beyond float64, nesting the parser survives; keys in `once` may not repeat within an object."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig" if bom else "utf-8")
        except UnicodeDecodeError:
            raise Unusable("not UTF-8") from None
    hook = _no_repeat(once) if once else None
    try:
        return json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant,
                          object_pairs_hook=hook)
    except Unusable:
        raise
    except RecursionError:
        raise Unusable("invalid JSON: nested too deep") from None
    except json.JSONDecodeError as e:  # the line helps in a file of many lines, not in one JSONL line
        raise Unusable(f"invalid JSON (line {e.lineno})" if "\n" in raw.strip() else "invalid JSON") from None


def _int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:  # checked before int(): converting a 100k-digit number is itself slow
        raise Unusable(f"invalid JSON: number out of range ({len(text)} digits)")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Unusable(f"invalid JSON: number out of range ({text[:20]})")
    return value


def _constant(name: str):
    raise Unusable(f"invalid JSON: {name} is not a JSON number")


def _no_repeat(keys: tuple):
    def hook(pairs: list) -> dict:
        out = dict(pairs)
        if len(out) < len(pairs):
            for key in keys:
                if sum(k == key for k, _ in pairs) > 1:
                    raise Unusable(f"{key} appears twice")
        return out
    return hook
