"""Composer benchmark in one run: materialize the bench LoRA folder, index it, compose every dev query, score
with the bench scorer, cross-validate the concept queries (a ComposerConfig grid chosen on the odd-numbered
queries, reported on the even ones, and swapped), and time compose per prompt - everything included, the
purpose and character indexes built before - on the 6,431-card library and on a synthetic 100,000-card one
(bench cards copied with renamed stems and shuffled tags, in memory).

usage: python tests/bench/bench_compose.py [--work DIR] [--bench ../shared/bench] [--big 100000]
         [--grid field=v1,v2 ...] [--versus field=value ...]"""
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_realistic import embedders, find_bench, grid, number, _diff  # noqa: E402
from lib_stylus.characters import character_index  # noqa: E402
from lib_stylus.composer import Composer  # noqa: E402
from lib_stylus.embedding import BM25  # noqa: E402
from lib_stylus.index import LibraryIndex  # noqa: E402
from lib_stylus.meaning import encoder_state  # noqa: E402
from lib_stylus.purpose import purpose_index  # noqa: E402
from lib_stylus.retriever import Retriever  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="folder for the LoRA library + index (reused if present)")
    ap.add_argument("--bench", default=find_bench())
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--grid", action="append", default=[])
    ap.add_argument("--embedder", choices=("lexical", "hybrid"), default="hybrid",
                    help="hybrid (default, as shipped): the composer also checks meaning with the encoder")
    ap.add_argument("--versus", action="append", default=[],
                    help="field=value of ComposerConfig: also time this setting against the shipped one, "
                    "prompt by prompt in one run (each with its own encoder cache), and print the ratio")
    ap.add_argument("--compositions", help="write every dev prompt's whole composition (tasks, picks, "
                    "reasons, drops; SD1 and SDXL) here, and the big library's to the same name + '.big'")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="stylus-bench-")
    lib = os.path.join(work, "lib")
    if not os.path.isdir(lib):
        subprocess.run([sys.executable, os.path.join(a.bench, "materialize.py"),
                        os.path.join(a.bench, "library.jsonl"), lib], check=True)
    index = LibraryIndex([lib], os.path.join(work, "cache"), embedders(a.embedder))
    index.load()
    t0 = time.perf_counter()
    index.refresh(save=True)
    print(f"index: {len(index.snapshot.entries)} cards ({time.perf_counter() - t0:.1f} s)")
    queries = [json.loads(line)
               for line in open(os.path.join(a.bench, "queries-dev.jsonl"), encoding="utf-8")]
    composer = Composer(Retriever(index))
    preds, times = run(composer, queries)
    out = os.path.join(work, "compose-dev.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for qid, stems in preds.items():
            f.write(json.dumps({"id": qid, "picked": stems}) + "\n")
    subprocess.run([sys.executable, os.path.join(a.bench, "score.py"),
                    os.path.join(a.bench, "queries-dev.jsonl"), out], check=True)
    concept = [q for q in queries if q["kind"] == "concept"]
    print(f"mean picks {sum(len(preds[q['id']]) for q in concept) / len(concept):.2f}, "
          f"mean concepts {sum(len(q['concepts']) for q in concept) / len(concept):.2f}")
    report(f"{len(index.snapshot.entries)} cards", times)
    if a.versus:
        twin = LibraryIndex([lib], os.path.join(work, "cache"), embedders(a.embedder))
        twin.load()
        twin.refresh(save=False)
        versus(index, twin, a.versus, queries, f"{len(index.snapshot.entries)} cards")
    if a.compositions:
        write_compositions(composer, queries, a.compositions)
    retrieval(index, queries, work, a.bench)
    cross_validate(index, concept, a.grid)
    if a.big:
        big = synthetic(index, a.big)
        t0 = time.perf_counter()
        purpose_index(big.snapshot)
        t1 = time.perf_counter()
        character_index(big.snapshot).prepare()  # and its whole-library lookups (composer.prepare)
        print(f"synthetic library: {a.big} cards, purpose index built in {t1 - t0:.1f} s, character index in "
              f"{time.perf_counter() - t1:.1f} s (once per index snapshot)")
        _, times = run(Composer(Retriever(big)), queries)
        report(f"{a.big} cards", times)
        if a.versus:
            versus(big, synthetic(twin, a.big), a.versus, queries, f"{a.big} cards")
        if a.compositions:
            write_compositions(Composer(Retriever(big)), queries, a.compositions + ".big")


def retrieval(index, queries: list, work: str, bench: str) -> None:
    """The retriever's top 50 (what Preview lists as candidates), scored by score.py: the sample queries'
    recall@k is a retriever figure (the composer picks a few adapters, not a ranking)."""
    retriever = Retriever(index)
    out = os.path.join(work, "retrieve-dev.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for q in queries:
            stems = [c.card.stem for c in retriever.retrieve(q["prompt"], "sd1", 50)]
            f.write(json.dumps({"id": q["id"], "picked": stems}) + "\n")
    print("retriever, top 50:")
    subprocess.run([sys.executable, os.path.join(bench, "score.py"), os.path.join(bench, "queries-dev.jsonl"),
                    out], check=True)


def write_compositions(composer, queries: list, path: str) -> None:
    """Two versions of the composer give the same compositions when these files are the same, byte for
    byte."""
    with open(path, "w", encoding="utf-8") as f:
        for q in queries:
            for base in ("sd1", "sdxl"):
                data = composer.compose(q["prompt"], base, max_adapters=4).to_dict()
                f.write(json.dumps(data, sort_keys=True) + "\n")


def concept_scores(preds: dict, queries: list) -> tuple:
    """(precision over all picks, concept coverage) as score.py computes them for concept queries."""
    picks = hits = covered = concepts = 0
    for q in queries:
        stems = list(dict.fromkeys(preds[q["id"]]))
        picks += len(stems)
        hits += sum(s in set(q["gold"]) for s in stems)
        for c in q["concepts"]:
            concepts += 1
            covered += bool(set(c["relevant"]) & set(stems))
    return hits / max(picks, 1), covered / max(concepts, 1)


def cross_validate(index, concept: list, specs: list) -> None:
    """Choose the setting on one parity of query ids (precision + coverage), report the other, swap."""
    runs = [(cfg, run(Composer(Retriever(index), cfg), concept)[0]) for cfg in grid(specs)]
    held = []
    for pick, rep in ((1, 0), (0, 1)):
        half = [q for q in concept if number(q["id"]) % 2 == pick]
        other = [q for q in concept if number(q["id"]) % 2 == rep]
        best = max(runs, key=lambda r: sum(concept_scores(r[1], half)))
        p, c = concept_scores(best[1], other)
        held.append((p, c))
        print(f"cv concept, reported on {'odd' if rep else 'even'} ids: precision {p:.3f} coverage {c:.3f}"
              f"  (chosen on the other half: {_diff(best[0])})")
    print(f"cv concept average: precision {sum(h[0] for h in held) / 2:.3f} coverage "
          f"{sum(h[1] for h in held) / 2:.3f}")


def run(composer, queries):
    for emb in composer.retriever.index.embedders:  # each run encodes its prompts (meaning.py caches by text)
        encoder_state(emb).cache.clear()
    composer.compose("warm up", "sd1")
    preds, times = {}, []
    for q in queries:
        t0 = time.perf_counter()
        preds[q["id"]] = composer.compose(q["prompt"], "sd1").stems
        times.append(time.perf_counter() - t0)
    return preds, times


def versus(index, twin, specs: list, queries: list, label: str) -> None:
    """The shipped composer on ``index`` and the ``specs`` setting on ``twin`` (the same library with encoders
    of its own: meaning.py's task-vector cache is the encoder's), timed in turn on each prompt."""
    other = grid(specs)[-1]
    pair = [Composer(Retriever(index)), Composer(Retriever(twin), other)]
    for composer in pair:
        for emb in composer.retriever.index.embedders:
            encoder_state(emb).cache.clear()
        composer.compose("warm up", "sd1")
    times = [[], []]
    for q in queries:
        for composer, ts in zip(pair, times):
            t0 = time.perf_counter()
            composer.compose(q["prompt"], "sd1")
            ts.append(time.perf_counter() - t0)
    report(f"{label}, shipped, side by side", times[0])
    report(f"{label}, {_diff(other)}, side by side", times[1])
    p95 = [sorted(ts)[int(0.95 * len(ts))] for ts in times]
    print(f"p95 ratio shipped / {_diff(other)}: {p95[0] / p95[1]:.2f}")


def report(label, times) -> None:
    ts = sorted(times)
    p = lambda f: ts[min(len(ts) - 1, int(f * len(ts)))] * 1000
    print(f"compose latency, {label}: p50 {p(0.5):.1f} ms, p95 {p(0.95):.1f} ms over {len(ts)} prompts")


def synthetic(index: LibraryIndex, n: int) -> LibraryIndex:
    """n cards: the bench cards, then copies with renamed stems and shuffled, partly dropped tags. Built with
    the index's own classes (bench_compose_commit.py passes another version's)."""
    rng = random.Random(0)
    base = index.snapshot.entries
    entries = list(base)
    while len(entries) < n:
        src = base[len(entries) % len(base)]
        tags = list(src.card.tags)
        rng.shuffle(tags)
        card = dataclasses.replace(src.card, stem=f"{src.card.stem}_copy{len(entries)}",
                                   alias=f"{src.card.alias}_copy{len(entries)}",
                                   tags=tags[:max(1, len(tags) - 1)])
        entries.append(type(src)(card, src.refined, src.text_sha))
    big = type(index)([], os.path.join(tempfile.gettempdir(), "stylus-synthetic"), index.embedders)
    bm25 = next((type(e) for e in index.embedders if e.id == "bm25"), BM25)
    states = {"bm25": bm25().fit([e.refined.text for e in entries])}
    for emb in index.embedders:  # a copy's purpose and title vectors are its source's (its title is too)
        state = index.snapshot.states[emb.id] if emb.id != "bm25" else {}
        source = np.arange(len(entries)) % len(base)
        if state.get("dense_vectors") is not None:
            states[emb.id] = {name: state[name][source] for name in ("dense_vectors", "dense_titles")
                              if state.get(name) is not None}
    fams = index.snapshot.families
    big.snapshot = type(index.snapshot)(entries, states, np.resize(fams, len(entries)), [])
    return big


if __name__ == "__main__":
    main()
