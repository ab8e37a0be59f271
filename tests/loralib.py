"""Tiny LoRA libraries for tests: real kohya files via the demo writer, plus broken-file makers."""
from __future__ import annotations

import json
import os
import stat
import struct
import threading

from lib_stylus.demo.loras import write_lora


def card(stem, base="sd1", **kw) -> dict:
    return {"stem": stem, "base": base, "title": kw.pop("title", stem.replace("_", " ")), **kw}


def make_library(folder, cards) -> str:
    for i, c in enumerate(cards):
        write_lora(os.path.join(folder, c.pop("subdir", "")), c, seed=i)
    return str(folder)


def edit_info(folder: str, stem: str, change) -> None:
    """Edit a card's .civitai.info as Civitai Helper would rewrite it: ``change(info)`` edits the JSON."""
    path = os.path.join(folder, stem + ".civitai.info")
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    change(info)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(info, f)


def write_raw_header(path, header_len: int, payload: bytes) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", header_len) + payload)


def write_json(path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


# ---- bad files from strangers (issue 9, items 1-4): stem -> (writer, kept?, words its fault line holds) ----
DEEP = b"[" * 100_000 + b"]" * 100_000
BIG_INT = b"9" * 4301


def tensor_header(extra: bytes = b"", metadata: bytes | None = None, data_end: int = 16) -> bytes:
    """A one-tensor safetensors header (F32 [2, 2]) with `extra` JSON spliced into the tensor's info."""
    info = b'{"dtype": "F32", "shape": [2, 2], "data_offsets": [0, %d]%s}' % (data_end, extra)
    meta = b'"__metadata__": %s, ' % metadata if metadata is not None else b""
    return b"{" + meta + b'"w": ' + info + b"}"


def write_header_file(path, header: bytes, data_len: int = 16) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"\0" * data_len)


def _good(folder, stem, **kw):
    return write_lora(str(folder), card(stem, tags=["bad input"], **kw))


def _header(header: bytes, data_len: int = 16):
    def write(folder, stem):
        write_header_file(os.path.join(folder, stem + ".safetensors"), header, data_len)
    return write


def _sidecar(suffix: str, raw: bytes, **kw):
    def write(folder, stem):
        _good(folder, stem, **kw)
        with open(os.path.join(folder, stem + suffix), "wb") as f:
            f.write(raw)
    return write


def _tag_frequency(raw: str):
    def write(folder, stem):
        path = _good(folder, stem)
        from lib_stylus.demo.loras import write_safetensors
        write_safetensors(path, "sd1", {"ss_output_name": stem, "ss_tag_frequency": raw})
    return write


def _special(kind: str, suffix: str):
    def write(folder, stem):
        if suffix != ".safetensors":
            _good(folder, stem)
        target = os.path.join(folder, stem + suffix)
        if os.path.lexists(target):
            os.remove(target)
        if kind == "fifo":
            os.mkfifo(target)
        else:
            os.symlink("/dev/zero", target)
    return write


WEBUI_JSON = b'{"activation text": "x", "preferred weight": %s}'
BAD_FILES = {
    # item 1: JSON a parser chokes on, in each of the three sources
    "hdr_deep": (_header(tensor_header(b', "x": ' + DEEP)), False, ["broken safetensors", "nested too deep"]),
    "hdr_bigint": (_header(tensor_header(b', "x": ' + BIG_INT)), False, ["broken", "out of range"]),
    "hdr_inf": (_header(tensor_header(b', "x": 1e400')), False, ["broken safetensors", "out of range"]),
    "hdr_nan": (_header(tensor_header(b', "x": NaN')), False, ["broken safetensors", "NaN"]),
    "freq_infinity": (_tag_frequency('{"10_a": {"red": Infinity}}'), True, ["ss_tag_frequency", "Infinity"]),
    "freq_nan": (_tag_frequency('{"10_a": {"red": NaN}}'), True, ["ss_tag_frequency", "NaN"]),
    "freq_1e400": (_tag_frequency('{"10_a": {"red": 1e400}}'), True, ["ss_tag_frequency", "out of range"]),
    "civ_deep": (_sidecar(".civitai.info", DEEP), True, [".civitai.info", "nested too deep"]),
    "civ_bigint": (_sidecar(".civitai.info", b'{"id": %s}' % BIG_INT), True, [".civitai", "out of range"]),
    "civ_nan": (_sidecar(".civitai.info", b'{"id": NaN}'), True, [".civitai.info", "NaN"]),
    "json_deep": (_sidecar(".json", DEEP), True, [".json sidecar", "nested too deep"]),
    "json_bigint": (_sidecar(".json", WEBUI_JSON % BIG_INT), True, [".json sidecar", "out of range"]),
    "json_weight401": (_sidecar(".json", WEBUI_JSON % (b"7" * 401)), True, [".json sidecar", "out of range"]),
    "json_infinity": (_sidecar(".json", WEBUI_JSON % b"-Infinity"), True, [".json sidecar", "Infinity"]),
    # item 2: files that are not regular files (reading one would block or never end)
    "fifo_lora": (_special("fifo", ".safetensors"), False, ["not a regular file"]),
    "fifo_civitai": (_special("fifo", ".civitai.info"), True, [".civitai.info", "not a regular file"]),
    "fifo_json": (_special("fifo", ".json"), True, [".json sidecar", "not a regular file"]),
    "fifo_txt": (_special("fifo", ".txt"), True, [".txt", "not a regular file"]),
    "zero_lora": (_special("device", ".safetensors"), False, ["not a regular file"]),
    "zero_civitai": (_special("device", ".civitai.info"), True, [".civitai.info", "not a regular file"]),
    # item 3: headers the safetensors 0.4.2 loader of the web UI 1.10 refuses
    "meta_int": (_header(tensor_header(metadata=b'{"a": 1}')), False, ["__metadata__", "strings"]),
    "meta_nested": (_header(tensor_header(metadata=b'{"a": {"b": ""}}')), False, ["__metadata__", "strings"]),
    "meta_twice": (_header(b'{"__metadata__": {}, ' + tensor_header(metadata=b'{}')[1:]), False,
                   ["__metadata__", "twice"]),
    "data_beyond": (_header(tensor_header(data_end=32)), False, ["'w'", "[2, 2]"]),
    "data_truncated": (_header(tensor_header(), data_len=8), False, ["truncated tensor data"]),
    "data_gap": (_header(tensor_header(data_end=16).replace(b"[0, 16]", b"[4, 20]"), data_len=20), False,
                 ["'w'", "gap"]),
    # item 4: names no <lora:...> tag can carry
    "colon:name": (lambda folder, stem: _good(folder, stem), False, ["cannot be written"]),
    "less<than": (lambda folder, stem: _good(folder, stem), False, ["cannot be written"]),
    "more>than": (lambda folder, stem: _good(folder, stem), False, ["cannot be written"]),
}


def write_bad_file(folder, stem: str) -> None:
    os.makedirs(folder, exist_ok=True)
    BAD_FILES[stem][0](str(folder), stem)


def unblock_fifos(folder) -> None:
    """After a hang: open every FIFO's write end once, so a reader blocked on it returns and the test ends."""
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass


def scan_with_timeout(folder, seconds: float = 60.0, **kw):
    """Run the catalog scan in a thread; a hang fails the test instead of blocking the suite for ever."""
    from lib_stylus.catalog import scan
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=scan(str(folder), **kw)), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        unblock_fifos(folder)
        raise AssertionError(f"the scan of {folder} hung for {seconds} s")
    return box["result"]
