"""Tiny LoRA libraries for tests: real kohya files via the demo writer, plus broken-file makers."""
from __future__ import annotations

import json
import os
import struct

from lib_stylus.demo.loras import write_lora


def card(stem, base="sd1", **kw) -> dict:
    return {"stem": stem, "base": base, "title": kw.pop("title", stem.replace("_", " ")), **kw}


def make_library(folder, cards) -> str:
    for i, c in enumerate(cards):
        write_lora(os.path.join(folder, c.pop("subdir", "")), c, seed=i)
    return str(folder)


def write_raw_header(path, header_len: int, payload: bytes) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", header_len) + payload)


def write_json(path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
