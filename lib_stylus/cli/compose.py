"""`compose DIR "prompt" [--seed N] [--base sd1]`: tasks, picks and drops with reasons, and the rewritten
prompt; `compose --library DIR --queries Q.jsonl --out P.jsonl`: the composer's picks per query, in the
bench format."""
from __future__ import annotations

import time

from ..composer import Composer
from ..retriever import Retriever
from .common import (BASES, add_library_options, check_prompt, fail, open_index, positive_int, read_queries,
                     write_jsonl)


def add_parser(sub) -> None:
    p = sub.add_parser("compose", help="choose LoRAs for a prompt (or every query of a JSONL file)")
    p.add_argument("library_pos", nargs="?", metavar="library", help="LoRA folder (or use --library)")
    p.add_argument("prompt", nargs="?")
    add_library_options(p, positional=False, required=False)  # the folder may come positionally instead
    p.add_argument("--queries", help="JSONL with {id, prompt}: write picks to --out instead of printing")
    p.add_argument("--out")
    p.add_argument("--base", choices=BASES, default="sd1")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask used for the rewritten prompt")
    p.add_argument("--no-masking", action="store_true", help="write every pick (no per-task masks)")
    p.add_argument("--allow-unknown", action="store_true",
                   help="also offer LoRAs whose base model is unknown")
    p.add_argument("--max-adapters", type=positive_int, default=4,
                   help="at most this many LoRAs (4, like the web UI's Max LoRAs)")


def run(args) -> int:
    # Both forms: `compose DIR "prompt"` and `compose --library DIR --queries ...`.
    if args.library is None:
        args.library = args.library_pos
    elif args.library_pos and args.prompt is None:
        args.prompt = args.library_pos
    if not args.library:
        fail("give the LoRA folder (positional or --library)")
    if args.queries:
        if not args.out:
            fail("--queries needs --out")
        return _batch(args)
    check_prompt(args.prompt)
    return _single(args)


def _composer(args) -> Composer:
    index, _ = open_index(args)
    return Composer(Retriever(index))


def _batch(args) -> int:
    queries = read_queries(args.queries)
    composer = _composer(args)
    t0 = time.perf_counter()
    rows = [{"id": q["id"], "picked": composer.compose(q["prompt"], args.base, args.allow_unknown,
                                                       args.max_adapters).stems} for q in queries]
    write_jsonl(args.out, rows)
    ms = (time.perf_counter() - t0) / max(len(rows), 1) * 1000
    print(f"{len(rows)} queries -> {args.out} ({ms:.1f} ms/query)")
    return 0


def _single(args) -> int:
    comp = _composer(args).compose(args.prompt, args.base, args.allow_unknown, args.max_adapters)
    for line in describe(comp):
        print(line)
    res = comp.rewrite(seed=args.seed, masking=not args.no_masking)
    for line in describe_mask(comp, args.seed, not args.no_masking):
        print(line)
    print(f"\nprompt (seed {args.seed}): {res.prompt}")
    for pick, reason in res.skipped:
        print(f"  not written: {pick.alias}: {reason}")
    for note in res.notes:
        print(f"  note: {note}")
    return 0


def describe(comp) -> list:
    """Human-readable lines: tasks with their adapters, then every drop with its reason."""
    lines = [f"composer: {comp.composer}" + (f" (LLM not used: {comp.fallback})" if comp.fallback else "")]
    if comp.existing:
        lines.append("already in the prompt: " + ", ".join(comp.existing))
    for i, t in enumerate(comp.tasks):
        lines.append(f"task {i}: {t.plain!r}" + ("" if t.adapters else f" -> none ({t.note})"))
        for a in t.adapters:
            lines.append(f"    + {a.alias}  [{a.entry.refined.topic}, weight {a.weight:g}]  {a.reason}")
    if comp.drops:
        lines.append("dropped:")
        for d in comp.drops:
            where = f"task {d.task}" if d.task >= 0 else "prompt"
            lines.append(f"    - {d.stem}  ({where}, {d.score:.2f}): {d.reason}")
    return lines


def describe_mask(comp, seed: int, masking: bool = True) -> list:
    """The picks this seed's mask leaves out of the image, with the reason (what was named is never left
    out)."""
    left = comp.masked_out(seed, masking)
    if not left:
        return []
    return [f"masked out (seed {seed}):"] + [f"    ~ {m['alias']}  (task {m['task']}): {m['reason']}"
                                              for m in left]
