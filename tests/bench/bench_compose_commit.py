"""Compose latency of this tree against another commit's, side by side in one process: the commit's lib_stylus
is copied (git archive) as a package of its own, both index the same bench library with encoders of their own,
and each prompt of queries-dev is composed by both in turn (alternating which goes first), so the load of a
shared machine falls on both alike. Prints p50/p95 of each and their ratios (wall and CPU time), the encoder
forward calls, texts and tokens of each, and how many compositions (to_dict, SD1) are the same byte for byte.

usage: python tests/bench/bench_compose_commit.py --base COMMIT [--work DIR] [--bench ../shared/bench]
         [--big 100000] [--limit N]"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_compose import report, synthetic  # noqa: E402
from bench_realistic import find_bench  # noqa: E402


def package_of(commit: str, folder: str) -> str:
    """lib_stylus at ``commit``, importable as lib_stylus_base from ``folder`` (its imports are relative)."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit, "lib_stylus"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    os.rename(os.path.join(folder, "lib_stylus"), os.path.join(folder, "lib_stylus_base"))
    sys.path.insert(0, folder)
    return "lib_stylus_base"


def composer_of(package: str, work: str, big: int):
    """A composer of ``package`` over the bench library (its index cache reused, not saved), and a counter
    of its encoder forward: [calls, texts, tokens]."""
    mod = lambda name: importlib.import_module(f"{package}.{name}")
    emb, idx = mod("embedding"), mod("index")
    embedders = [emb.BM25(), emb.DenseEmbedder(emb.bundled_minilm())]
    index = idx.LibraryIndex([os.path.join(work, "lib")], os.path.join(work, "cache"), embedders)
    index.load()
    index.refresh(save=False)
    if big:
        index = synthetic(index, big)
    composer = mod("composer").Composer(mod("retriever").Retriever(index))
    mod("composer").prepare(index.snapshot)
    counts = [0, 0, 0]
    forward = mod("bert").BertForward
    plain = forward.__call__

    def counted(self, ids, types=None):
        counts[0] += 1
        counts[1] += len(ids)
        counts[2] += sum(len(s) for s in ids)
        return plain(self, ids, types)

    forward.__call__ = counted
    return composer, counts


def forget_tasks(emb) -> None:
    """Empty an encoder's task-vector cache, where its own package's meaning.py keeps it (the base commit's
    may be older: up to a9e82e7 it was an attribute of the encoder)."""
    getattr(emb, "_stylus_task_vectors", {}).clear()
    meaning = sys.modules.get(type(emb).__module__.split(".")[0] + ".meaning")
    if hasattr(meaning, "encoder_state"):
        meaning.encoder_state(emb).cache.clear()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the commit to compare this tree with")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "stylus-bench"),
                    help="bench_compose.py's folder (the bench library and its hybrid index)")
    ap.add_argument("--bench", default=find_bench())
    ap.add_argument("--big", type=int, default=0, help="a synthetic library of this many cards instead")
    ap.add_argument("--limit", type=int, default=0, help="only the first N prompts")
    a = ap.parse_args()
    with open(os.path.join(a.bench, "queries-dev.jsonl"), encoding="utf-8") as f:
        queries = [json.loads(line) for line in f]
    queries = queries[:a.limit] if a.limit else queries
    with tempfile.TemporaryDirectory() as folder:
        base = composer_of(package_of(a.base, folder), a.work, a.big)
        pair = [base, composer_of("lib_stylus", a.work, a.big)]
        for composer, _ in pair:
            composer.compose("warm up", "sd1")
            for emb in composer.retriever.index.embedders:  # each encodes its prompts itself
                forget_tasks(emb)
        gc.freeze()  # two libraries' objects: a full collection would land on whichever compose triggers it
        wall, cpu = [[], []], [[], []]
        same = 0
        for i, q in enumerate(queries):
            out = [None, None]
            for k in ((0, 1) if i % 2 == 0 else (1, 0)):
                c0 = time.process_time()
                t0 = time.perf_counter()
                comp = pair[k][0].compose(q["prompt"], "sd1")
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
                out[k] = json.dumps(comp.to_dict(), sort_keys=True)
            same += out[0] == out[1]
    label = f"{a.big} cards" if a.big else "bench library"
    for k, name in enumerate((a.base[:12], "this tree")):
        report(f"{label}, {name}, side by side", wall[k])
        calls, texts, tokens = pair[k][1]
        print(f"  encoder forward: {calls} calls, {texts} texts, {tokens} tokens; "
              f"CPU time {sum(cpu[k]):.2f} s; slowest {max(wall[k]) * 1000:.0f} ms")
    p95 = [sorted(ts)[int(0.95 * len(ts))] for ts in wall]
    mean = sum(wall[1]) / sum(wall[0])
    print(f"p95 ratio this tree / {a.base[:12]}: {p95[1] / p95[0]:.2f}; mean {mean:.2f}; "
          f"CPU time {sum(cpu[1]) / sum(cpu[0]):.2f}")
    print(f"identical compositions: {same} of {len(queries)}")


if __name__ == "__main__":
    main()
