"""The prompt side of the hybrid compose: the batches of prompt windows the composer encodes for the dev
queries (meaning.py), each encoded by the numpy forward (bert.py, what embed() uses for a few texts) and by
the transformers forward, in whole passes over the same batches. Prints each one's p50 / p95 / mean per
batch and the largest difference between their vectors.

usage: python tests/bench/bench_encoder.py [--work DIR (bench_compose's: index reused)]
         [--bench ../shared/bench]"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_realistic as br  # noqa: E402  (it puts the project on the path)

from lib_stylus.composer import Composer  # noqa: E402
from lib_stylus.retriever import Retriever  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=br.find_bench())
    ap.add_argument("--work", default=None, help="the LoRA library and its index (bench_compose's is reused)")
    a = ap.parse_args()
    index = br.open_library(a.bench, a.work or tempfile.mkdtemp(prefix="stylus-bench-"), "hybrid")
    encoder = index.embedders[1]
    batches = []
    embed = encoder.embed
    encoder.embed = lambda texts, progress=None: batches.append(list(texts)) or embed(texts, progress)
    composer = Composer(Retriever(index))
    for line in open(os.path.join(a.bench, "queries-dev.jsonl"), encoding="utf-8"):
        composer.compose(json.loads(line)["prompt"], "sd1")
    encoder.embed = embed
    model, tok = encoder._load()
    forwards = {"numpy": embed, "transformers": lambda texts: encoder._embed_torch(model, tok, texts, None)}
    times = {"numpy": [], "transformers": []}
    vectors = {}
    # Whole passes over the batches, in the order numpy, transformers, transformers, numpy: each library's
    # threads spin a while after its call, which would slow the other one's next call if they alternated.
    for name in ("numpy", "transformers", "transformers", "numpy"):
        forwards[name](batches[0])
        for i, batch in enumerate(batches):
            t0 = time.perf_counter()
            vectors[name, i] = forwards[name](batch)
            times[name].append(time.perf_counter() - t0)
    diff = max(float(np.abs(vectors["numpy", i] - vectors["transformers", i]).max())
               for i in range(len(batches)))
    sizes = [len(b) for b in batches]
    print(f"{len(batches)} batches of prompt windows (mean {np.mean(sizes):.1f} texts, max {max(sizes)})")
    for name, ts in times.items():
        ms = np.array(ts) * 1000
        print(f"{name:>12}: p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, "
              f"mean {ms.mean():.1f} ms per batch")
    print(f"largest |difference| between their vectors: {diff:.2e}")


if __name__ == "__main__":
    main()
