"""Composer benchmark in one run: materialize the bench LoRA folder, index it, compose every dev query, score
with the bench scorer, and time compose per prompt on the 6,431-card library and on a synthetic 100,000-card one
(bench cards copied with renamed stems and shuffled tags, in memory).

usage: python tests/bench/bench_compose.py [--work DIR] [--bench ../shared/bench] [--big 100000]"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from lib_stylus.composer import Composer  # noqa: E402
from lib_stylus.embedding import BM25  # noqa: E402
from lib_stylus.index import Entry, LibraryIndex, Snapshot  # noqa: E402
from lib_stylus.purpose import purpose_index  # noqa: E402
from lib_stylus.retriever import Retriever  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="folder for the LoRA library + index (reused if present)")
    ap.add_argument("--bench", default=os.path.join(os.path.dirname(ROOT), "shared", "bench"))
    ap.add_argument("--big", type=int, default=100_000)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="stylus-bench-")
    lib = os.path.join(work, "lib")
    if not os.path.isdir(lib):
        subprocess.run([sys.executable, os.path.join(a.bench, "materialize.py"),
                        os.path.join(a.bench, "library.jsonl"), lib], check=True)
    index = LibraryIndex([lib], os.path.join(work, "cache"))
    index.load()
    t0 = time.perf_counter()
    index.refresh(save=True)
    print(f"index: {len(index.snapshot.entries)} cards ({time.perf_counter() - t0:.1f} s)")
    queries = [json.loads(line) for line in open(os.path.join(a.bench, "queries-dev.jsonl"), encoding="utf-8")]
    composer = Composer(Retriever(index))
    preds, times = run(composer, queries)
    out = os.path.join(work, "compose-dev.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for qid, stems in preds.items():
            f.write(json.dumps({"id": qid, "picked": stems}) + "\n")
    subprocess.run([sys.executable, os.path.join(a.bench, "score.py"), os.path.join(a.bench, "queries-dev.jsonl"),
                    out], check=True)
    concept = [q for q in queries if q["kind"] == "concept"]
    print(f"mean picks {sum(len(preds[q['id']]) for q in concept) / len(concept):.2f}, "
          f"mean concepts {sum(len(q['concepts']) for q in concept) / len(concept):.2f}")
    report(f"{len(index.snapshot.entries)} cards", times)
    if a.big:
        big = synthetic(index, a.big)
        t0 = time.perf_counter()
        purpose_index(big.snapshot)
        print(f"synthetic library: {a.big} cards, purpose index built in {time.perf_counter() - t0:.1f} s")
        _, times = run(Composer(Retriever(big)), queries)
        report(f"{a.big} cards", times)


def run(composer, queries):
    composer.compose("warm up", "sd1")
    preds, times = {}, []
    for q in queries:
        t0 = time.perf_counter()
        preds[q["id"]] = composer.compose(q["prompt"], "sd1").stems
        times.append(time.perf_counter() - t0)
    return preds, times


def report(label, times) -> None:
    ts = sorted(times)
    p = lambda f: ts[min(len(ts) - 1, int(f * len(ts)))] * 1000
    print(f"compose latency, {label}: p50 {p(0.5):.1f} ms, p95 {p(0.95):.1f} ms over {len(ts)} prompts")


def synthetic(index: LibraryIndex, n: int) -> LibraryIndex:
    """n cards: the bench cards, then copies with renamed stems and shuffled, partly dropped tags."""
    rng = random.Random(0)
    base = index.snapshot.entries
    entries = list(base)
    while len(entries) < n:
        src = base[len(entries) % len(base)]
        tags = list(src.card.tags)
        rng.shuffle(tags)
        card = dataclasses.replace(src.card, stem=f"{src.card.stem}_copy{len(entries)}",
                                   alias=f"{src.card.alias}_copy{len(entries)}", tags=tags[:max(1, len(tags) - 1)])
        entries.append(Entry(card, src.refined, src.text_sha))
    big = LibraryIndex([], os.path.join(tempfile.gettempdir(), "stylus-synthetic"))
    state = BM25().fit([e.refined.text for e in entries])
    fams = index.snapshot.families
    big.snapshot = Snapshot(entries, {"bm25": state}, np.resize(fams, len(entries)), [])
    return big


if __name__ == "__main__":
    main()
