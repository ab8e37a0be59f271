"""`index DIR [--base sd1|sd2|sdxl]`: build or refresh the index; print counts per family and every fault."""
from __future__ import annotations

from collections import Counter

from ..catalog import FAMILIES, FAMILY_LABELS
from .common import BASES, add_library_options, open_index


def add_parser(sub) -> None:
    p = sub.add_parser("index", help="index a LoRA folder (incremental) and report faults")
    add_library_options(p)
    p.add_argument("--base", choices=BASES,
                   help="also list every LoRA that will not be offered for this base model")


def run(args) -> int:
    index, report = open_index(args)
    entries = index.snapshot.entries
    counts = Counter(e.card.base for e in entries)
    print(f"{len(entries)} LoRAs indexed in {report.seconds:.2f} s "
          f"({report.read} read, {report.reused} unchanged, {report.removed} removed"
          + "".join(f", {n} embedded by {k}" for k, n in report.embedded.items()) + ")")
    print("by base model: " + ", ".join(f"{FAMILY_LABELS[f]} {counts[f]}" for f in FAMILIES if counts[f]))
    if report.faults:
        print(f"{len(report.faults)} problems (file skipped or part of it ignored):")
        for fault in report.faults:
            print(fault.line())
    if args.base:
        for e in entries:
            if e.card.base != args.base:
                print(f"{e.card.stem}\tbase: {FAMILY_LABELS[e.card.base]}")
    return 0
