"""The local composer on realistic prompts written after it was built (tests/bench/unseen/, README there):
compose every prompt of each set (`--max-adapters 4`, the UI default, hybrid index) and score the picks with
realistic-dev's scorer against the blind judgments of tests/bench/unseen/judgments.jsonl: relevant, plausible
and wrong share of the picks, and negative controls that got any pick. The sets have no lists of fitting
LoRAs, so there is no coverage here. A pick nobody judged yet is counted apart ("unjudged") and written to
--queue for a reader who does not know why it was picked.

usage: python tests/bench/bench_unseen.py [--work DIR] [--bench ../shared/bench] [--queue FILE]
         [--set field=value ...] (a ComposerConfig setting other than the shipped one)"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_realistic as br  # noqa: E402

from lib_stylus.composer import Composer  # noqa: E402
from lib_stylus.retriever import Retriever  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unseen")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(br.tempfile.gettempdir(), "stylus-bench"))
    ap.add_argument("--bench", default=br.find_bench())
    ap.add_argument("--max-adapters", type=int, default=4)
    ap.add_argument("--queue", help="write the unjudged (prompt, LoRA) pairs here")
    ap.add_argument("--set", action="append", default=[], help="field=value of ComposerConfig")
    a = ap.parse_args()
    rd = os.path.join(a.bench, "realistic-dev")
    index = br.open_library(a.bench, a.work, "hybrid")
    composer = Composer(Retriever(index), br.grid(a.set)[-1])
    print("setting:", br._diff(composer.config))
    judged = {(r["id"], r["stem"]): r["label"] for r in br.load(os.path.join(HERE, "judgments.jsonl"))}
    todo = []
    def number(path: str) -> int:  # set 10 after set 9
        return int(os.path.basename(path)[len("prompts-"):-len(".jsonl")])

    for path in sorted(glob.glob(os.path.join(HERE, "prompts-*.jsonl")), key=number):
        prompts = br.load(path)
        preds, _ = br.run(composer, prompts, a.max_adapters)
        name = os.path.basename(path)[len("prompts-"):-len(".jsonl")]
        print(report(f"set {name}", br.score(rd, prompts, judged, preds)))
        for kind in dict.fromkeys(q["kind"] for q in prompts):
            group = [q for q in prompts if q["kind"] == kind]
            print(report(f"  {kind}", br.score(rd, group, judged, preds)))
        todo += [{"id": q["id"], "prompt": q["prompt"], "stem": s} for q in prompts for s in preds[q["id"]]
                 if (q["id"], s) not in judged]
    if a.queue:
        with open(a.queue, "w", encoding="utf-8") as f:
            for row in todo:
                f.write(json.dumps(row) + "\n")
    print(f"unjudged pairs: {len(todo)}" + (f" (written to {a.queue})" if a.queue else ""))


def report(label: str, r: dict) -> str:
    def share(key: str) -> str:
        return "n/a" if r[key] is None else f"{r[key]:.3f}"
    return (f"{label:18s} picks {r['picks']:3d} (unjudged {r['unjudged']:2d})  "
            f"relevant {share('precision')}  "
            f"plausible {share('plausible')}  wrong {share('harm')}  negatives with a pick {r['over_reach']}")


if __name__ == "__main__":
    main()
