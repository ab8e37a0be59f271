"""`query DIR "prompt" [--base sd1] [--top N]`: the retriever's ranking for one prompt."""
from __future__ import annotations

from ..retriever import Retriever
from .common import BASES, add_library_options, check_prompt, fail, open_index, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("query", help="show the top LoRAs the retriever finds for a prompt")
    add_library_options(p)
    p.add_argument("prompt")
    p.add_argument("--base", choices=BASES, default="sd1")
    p.add_argument("--top", type=positive_int, default=10)
    p.add_argument("--allow-unknown", action="store_true",
                   help="also offer LoRAs whose base model is unknown")


def run(args) -> int:
    check_prompt(args.prompt)
    index, _ = open_index(args)
    found = Retriever(index).retrieve(args.prompt, args.base, args.top, args.allow_unknown)
    if not found:
        fail(f"no LoRA for {args.base} matches {args.prompt!r} ({len(index.snapshot.entries)} indexed)", 1)
    for c in found:
        r = c.entry.refined
        print(f"{c.rank:3d}. {c.card.alias:40s} score {c.score:.4f}  lexical {c.lexical:6.2f}  "
              f"dense {c.dense:.3f}  "
              f"{r.topic:10s} weight {r.weight:g}  {c.card.title[:60]}")
    return 0
