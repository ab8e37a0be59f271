"""`demo`: build the sample library, index it, and show for a few prompts which LoRAs Stylus picks, which the
seed's mask leaves out and why, and the rewritten prompt. Offline, and with the lexical index the CLI and the
web UI use by default: the local composer reads only it (the dense "hybrid" vectors serve `query`)."""
from __future__ import annotations

import os
import tempfile

from ..composer import Composer
from ..demo import build_sample_library
from ..embedding import BM25, DenseEmbedder, bundled_minilm
from ..index import LibraryIndex
from ..retriever import Retriever
from .compose import describe, describe_mask

PROMPTS = [
    ("sd1", "a street musician playing guitar, with a robot companion, cyberpunk style"),
    ("sd1", "portrait of a knight in full plate armor, watercolor painting"),
    ("sd1", "a fluffy cat sleeping in a cozy cafe, (film grain:1.1)"),
    ("sd1", "hatsune miku singing on a rooftop at sunset, pixel art"),
    ("sdxl", "a fox in a forest, watercolor"),
]


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run Stylus on a generated sample LoRA library (offline)")
    p.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "stylus-demo"),
                   help="where to write the sample library and its index")
    p.add_argument("--seed", type=int, default=1)


def run(args) -> int:
    lib = build_sample_library(os.path.join(args.out, "Lora"))
    embedders = [BM25(), DenseEmbedder(bundled_minilm())] if bundled_minilm() else [BM25()]
    index = LibraryIndex([lib], os.path.join(args.out, "cache"), embedders)
    index.load()
    report = index.refresh()
    print(f"Sample library: {lib}")
    print(f"Indexed {report.total} LoRAs with {' + '.join(e.id for e in embedders)} "
          f"in {report.seconds:.2f} s; "
          f"{len(report.faults)} problems reported and skipped:")
    for fault in report.faults:
        print(f"  {fault.stem}: {fault.reason}")
    composer = Composer(Retriever(index))
    for base, prompt in PROMPTS:
        print(f"\n[{base}] {prompt}")
        comp = composer.compose(prompt, base)
        for line in describe(comp) + describe_mask(comp, args.seed):
            print("  " + line)
        print("  -> " + comp.rewrite(prompt, args.seed).prompt)
    return 0
