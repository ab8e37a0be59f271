"""How well the composer's meaning check separates right from wrong common-word matches on realistic-dev.

Every candidate a common word matches (a purpose phrase asked in full by words under `rare_share`, the ones
the hybrid composer checks by meaning) is listed with the cosine between the prompt's words around it and
the card's purpose text (the composer's own window and vectors) and the share of the card's name the prompt
holds, with its label: the judged label of the (prompt, LoRA) pair (the set's judgments plus
tests/bench/judgments-dev-extra.jsonl), or "fitting" for an unjudged pair the set lists as fitting a concept.
The tables show what a threshold on either signal can gain: the labelled candidates by bin, and for each rule
(cosine >= m and name share >= s) how many right and wrong candidates it lets through. Candidates, not picks:
the adapter limit and the other rules still apply to what passes.

usage: python tests/bench/bench_meaning.py [--work DIR] [--bench ../shared/bench]"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_realistic as br  # noqa: E402

from lib_stylus.composer import Composer, Selection, split_tasks  # noqa: E402
from lib_stylus.embedding import tokenize  # noqa: E402
from lib_stylus.meaning import meaning_of  # noqa: E402
from lib_stylus.purpose import prompt_words, purpose_index  # noqa: E402
from lib_stylus.retriever import Retriever  # noqa: E402

RIGHT = ("relevant", "fitting")
BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 1.01)
SHARES = (0.0, 0.3, 0.5, 1.01)


def candidates(index, prompts: list, judged: dict) -> list:
    """(label, cosine, name share) of every common-word candidate of every task."""
    snap = index.snapshot
    pidx = purpose_index(snap)
    meaning = meaning_of(snap, index)
    if meaning is None:
        raise SystemExit("this needs the hybrid index (a dense encoder)")
    # every common-word match, whatever its name share and cosine: the composer's own match and window
    composer = Composer(Retriever(index), meaning=-1.0, meaning_name_share=0.0, min_name_share=0.0)
    out = []
    for q in prompts:
        fitting = {s for c in q["concepts"] for s in c["fitting"]}
        tasks = split_tasks(q["prompt"])
        state = Selection(snap, q["prompt"], composer.config, 4)
        everything = set(prompt_words(tokenize(" ".join(t.plain for t in tasks))))
        for task in tasks:
            m = composer._match(pidx, task, meaning, state, everything)
            composer._common_by_meaning(m, meaning, pidx)
            for doc, cosine in m.sims.items():
                stem = pidx.stems[doc]
                label = judged.get((q["id"], stem)) or ("fitting" if stem in fitting else "unjudged")
                out.append((label, cosine, pidx.name_share(doc, everything)))
    return out


def auc(right: np.ndarray, wrong: np.ndarray) -> float:
    """Chance that a right candidate scores above a wrong one (ties count half)."""
    if not len(right) or not len(wrong):
        return float("nan")
    above = (right[:, None] > wrong[None, :]).mean()
    tied = (right[:, None] == wrong[None, :]).mean()
    return float(above + tied / 2)


def report(rows: list) -> None:
    label = np.array([r[0] for r in rows])
    cosine = np.array([r[1] for r in rows])
    share = np.array([r[2] for r in rows])
    right = np.isin(label, RIGHT)
    wrong = label == "wrong"
    plausible = label == "plausible"
    print(f"common-word candidates: {len(rows)}, right {int(right.sum())}, plausible {int(plausible.sum())}, "
          f"wrong {int(wrong.sum())}, unjudged {int((label == 'unjudged').sum())}")
    print(f"AUC right vs wrong: window cosine {auc(cosine[right], cosine[wrong]):.3f}, "
          f"name share {auc(share[right], share[wrong]):.3f}")
    print("\nby bin (right / plausible / wrong):")
    print("cosine \\ name share "
          + "".join(f"| {lo:.1f}-{hi:.1f}      " for lo, hi in zip(SHARES, SHARES[1:])))
    for lo, hi in zip(BINS, BINS[1:]):
        cells = []
        for slo, shi in zip(SHARES, SHARES[1:]):
            inside = (cosine >= lo) & (cosine < hi) & (share >= slo) & (share < shi)
            counts = [int((x & inside).sum()) for x in (right, plausible, wrong)]
            cells.append(f"| {counts[0]:3d} / {counts[1]:3d} / {counts[2]:3d} ")
        print(f"{lo:.1f}-{hi:.1f}              " + "".join(cells))
    print("\nrule: cosine >= m and name share >= s lets through (right / plausible / wrong):")
    for s in SHARES[:-1]:
        cells = []
        for m in (0.5, 0.55, 0.6, 0.65, 0.7):
            passed = (cosine >= m) & (share >= s)
            counts = [int((x & passed).sum()) for x in (right, plausible, wrong)]
            cells.append(f"m {m:.2f}: {counts[0]:3d} / {counts[1]:3d} / {counts[2]:3d}")
        print(f"s {s:.1f}  " + "   ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(br.tempfile.gettempdir(), "stylus-bench"))
    ap.add_argument("--bench", default=br.find_bench())
    a = ap.parse_args()
    rd = os.path.join(a.bench, "realistic-dev")
    prompts = br.load(os.path.join(rd, "prompts-dev.jsonl"))
    index = br.open_library(a.bench, a.work, "hybrid")
    report(candidates(index, prompts, br.judgments(rd)))


if __name__ == "__main__":
    main()
