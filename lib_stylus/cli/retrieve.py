"""`retrieve --library DIR --queries Q.jsonl --out P.jsonl [--top 50]`: rankings in the bench scorer's
format."""
from __future__ import annotations

import time

from ..retriever import Retriever
from .common import BASES, add_library_options, open_index, positive_int, read_queries, write_jsonl


def add_parser(sub) -> None:
    p = sub.add_parser("retrieve", help="rank LoRAs for every query of a JSONL file")
    add_library_options(p, positional=False)
    p.add_argument("--queries", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--top", type=positive_int, default=50)
    p.add_argument("--base", choices=BASES, default="sd1")


def run(args) -> int:
    queries = read_queries(args.queries)  # before the index work: a bad file fails at once
    index, _ = open_index(args)
    retriever = Retriever(index)
    rows, t0 = [], time.perf_counter()
    for q in queries:
        picks = retriever.retrieve(q["prompt"], args.base, args.top)
        rows.append({"id": q["id"], "picked": [c.card.stem for c in picks]})
    write_jsonl(args.out, rows)
    print(f"{len(rows)} queries -> {args.out} "
          f"({(time.perf_counter() - t0) / max(len(rows), 1) * 1000:.1f} ms/query)")
    return 0
