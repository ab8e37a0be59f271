"""Realistic-prompt benchmark of the local composer: materialize the bench LoRA folder, index it, compose
every prompt of realistic-dev (`--max-adapters 4`, the UI default), and score the picks with the set's own
scorer against its judgments plus ours (tests/bench/judgments-dev-extra.jsonl): overall, per prompt group, and
cross-validated.

Cross-validation: the prompts are split by the parity of their id number. For each fold the composer setting
(a small grid over ComposerConfig fields, --grid) is chosen on one half by `objective` and reported on the
other half; then the halves swap. Unjudged picks count as wrong while choosing (pessimistic) and are written
to --queue (one {"id", "prompt", "stem"} line per pair, nothing else) for a reader who does not know why they
were picked; --collect FILE... appends such a reader's labels to the extras file.

usage: python tests/bench/bench_realistic.py [--work DIR] [--bench ../shared/bench] [--max-adapters 4]
         [--grid field=v1,v2 ...] [--queue FILE] [--collect DONE.jsonl ...] [--picks OUT.jsonl]
         [--misses [--prompts FILE]]"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from lib_stylus.composer import Composer, ComposerConfig  # noqa: E402
from lib_stylus.embedding import BM25, DenseEmbedder, bundled_minilm  # noqa: E402
from lib_stylus.index import LibraryIndex  # noqa: E402
from lib_stylus.retriever import Retriever  # noqa: E402

EXTRA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "judgments-dev-extra.jsonl")
GROUPS = {"tags": range(1, 21), "photo-art": range(21, 41), "captions": range(41, 51), "long": range(51, 56),
          "negative": range(56, 61)}


def find_bench() -> str:
    """shared/bench next to the repository or next to any folder above it (worktrees sit deeper)."""
    here = ROOT
    while os.path.dirname(here) != here:
        here = os.path.dirname(here)
        if os.path.isdir(os.path.join(here, "shared", "bench")):
            return os.path.join(here, "shared", "bench")
    return os.path.join(os.path.dirname(ROOT), "shared", "bench")


def load(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def number(qid: str) -> int:
    """The number in an id: 'rp-dev-017' -> 17, 'dev-c0017' -> 17 (folds split by its parity)."""
    return int("".join(c for c in qid.rsplit("-", 1)[1] if c.isdigit()))


def embedders(kind: str) -> list:
    """lexical: BM25; hybrid: BM25 + the offline all-MiniLM-L6-v2 (the composer then also checks meaning)."""
    if kind == "lexical":
        return [BM25()]
    return [BM25(), DenseEmbedder(bundled_minilm())]


def open_library(bench: str, work: str, embedder: str = "lexical") -> LibraryIndex:
    lib = os.path.join(work, "lib")
    if not os.path.isdir(lib):
        subprocess.run([sys.executable, os.path.join(bench, "materialize.py"),
                        os.path.join(bench, "library.jsonl"), lib], check=True, stdout=subprocess.DEVNULL)
    index = LibraryIndex([lib], os.path.join(work, "cache"), embedders(embedder))
    index.load()
    t0 = time.perf_counter()
    index.refresh(save=True)
    print(f"index: {len(index.snapshot.entries)} cards ({time.perf_counter() - t0:.1f} s)")
    return index


def judgments(rd: str) -> dict:
    """(id, stem) -> label: the shipped judgments, then ours (a later line of the same pair wins)."""
    rows = load(os.path.join(rd, "judgments-dev.jsonl"))
    if os.path.isfile(EXTRA):
        rows += load(EXTRA)
    return {(r["id"], r["stem"]): r["label"] for r in rows}


def score(rd: str, prompts: list, judged: dict, preds: dict) -> dict:
    """The set's scorer (score_realistic.py) on these prompts, with the merged judgments."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "prompts-x.jsonl"), "w", encoding="utf-8") as f:
            for q in prompts:
                f.write(json.dumps(q) + "\n")
        ids = {q["id"] for q in prompts}
        with open(os.path.join(d, "judgments-x.jsonl"), "w", encoding="utf-8") as f:
            for (qid, stem), label in judged.items():
                if qid in ids:
                    f.write(json.dumps({"id": qid, "stem": stem, "label": label}) + "\n")
        pred = os.path.join(d, "pred.jsonl")
        with open(pred, "w", encoding="utf-8") as f:
            for q in prompts:
                f.write(json.dumps({"id": q["id"], "picked": preds.get(q["id"], [])}) + "\n")
        out = subprocess.run([sys.executable, os.path.join(rd, "score_realistic.py"), pred, d], check=True,
                             capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def objective(r: dict) -> float:
    """What a setting is chosen by: relevant share and coverage, wrong picks (and unjudged ones) twice as
    bad."""
    picks = r["picks"] or 1
    relevant = (r["precision"] or 0) * r["judged"] / picks
    wrong = ((r["harm"] or 0) * r["judged"] + r["unjudged"]) / picks
    return relevant + (r["coverage"] or 0) - 2 * wrong


def run(composer: Composer, prompts: list, max_adapters: int) -> tuple[dict, list]:
    composer.compose("warm up", "sd1")
    preds, times = {}, []
    for q in prompts:
        t0 = time.perf_counter()
        preds[q["id"]] = composer.compose(q["prompt"], "sd1", max_adapters=max_adapters).stems
        times.append(time.perf_counter() - t0)
    return preds, times


def grid(specs: list) -> list:
    """ComposerConfig variants: the cross product of field=v1,v2 specs (the default alone without specs)."""
    configs = [ComposerConfig()]
    for spec in specs:
        name, values = spec.split("=", 1)
        kind = type(getattr(ComposerConfig(), name))
        parse = (lambda v: v.lower() in ("1", "true", "yes")) if kind is bool else kind
        configs = [dataclasses.replace(c, **{name: parse(v)}) for c in configs for v in values.split(",")]
    return list(dict.fromkeys([ComposerConfig()] + configs))  # the default first: it is reported in full


def line(label: str, r: dict) -> str:
    return (f"{label:<14} picks {r['picks']:>3} (unjudged {r['unjudged']:>2})  relevant {r['precision']}  "
            f"plausible {r['plausible']}  wrong {r['harm']}  "
            f"coverage {r['coverage']} of {r['concepts_with_fitting']}"
            f"  over-reach {r['over_reach']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "stylus-bench"))
    ap.add_argument("--bench", default=find_bench())
    ap.add_argument("--max-adapters", type=int, default=4)
    ap.add_argument("--grid", action="append", default=[])
    ap.add_argument("--queue", help="write the unjudged (id, prompt, stem) pairs here")
    ap.add_argument("--collect", nargs="*", default=[], help="a reader's label files to add to the extras")
    ap.add_argument("--picks", help="write the default setting's picks here")
    ap.add_argument("--misses", action="store_true",
                    help="print each concept the default setting misses, and why its fitting cards were not")
    ap.add_argument("--prompts", help="judge these prompts instead of realistic-dev's (--misses only: e.g. "
                    "queries-dev.jsonl's concept queries)")
    ap.add_argument("--embedder", choices=("lexical", "hybrid"), default="hybrid",
                    help="hybrid (default, as shipped): the composer also checks meaning with the encoder")
    a = ap.parse_args()
    rd = os.path.join(a.bench, "realistic-dev")
    if a.collect:
        collect(rd, a.collect)
    prompts = load(os.path.join(rd, "prompts-dev.jsonl"))
    judged = judgments(rd)
    index = open_library(a.bench, a.work, a.embedder)
    runs = []
    for cfg in grid(a.grid):
        preds, times = run(Composer(Retriever(index), cfg), prompts, a.max_adapters)
        runs.append((cfg, preds, times))
    if len(runs) > 1:  # every setting of the grid on all prompts: to see the trade-off, not to choose
        for c, p, _ in runs:
            print(line("setting", score(rd, prompts, judged, p)) + "   " + _diff(c))
    cfg, preds, times = runs[0]
    ts = sorted(times)
    print(f"compose: p50 {ts[len(ts) // 2] * 1000:.1f} ms, p95 {ts[int(0.95 * len(ts))] * 1000:.1f} ms")
    print("default setting:", _diff(cfg))
    print(line("all", score(rd, prompts, judged, preds)))
    for group, ids in GROUPS.items():
        print(line(group, score(rd, [q for q in prompts if number(q["id"]) in ids], judged, preds)))
    folds = {"odd": [q for q in prompts if number(q["id"]) % 2],
             "even": [q for q in prompts if not number(q["id"]) % 2]}
    held = []
    for pick, report in (("odd", "even"), ("even", "odd")):
        best = max(runs, key=lambda r: objective(score(rd, folds[pick], judged, r[1])))
        r = score(rd, folds[report], judged, best[1])
        held.append(r)
        print(line(f"cv {report}", r) + f"   (chosen on {pick}: {_diff(best[0])})")
    print("cv average: " + "  ".join(f"{k} {sum(r[k] or 0 for r in held) / 2:.4f}"
                                     for k in ("precision", "plausible", "harm", "coverage")))
    if a.misses:
        chosen = prompts if not a.prompts else [q for q in load(a.prompts) if q.get("kind") != "sample"]
        misses(Composer(Retriever(index), cfg), chosen, a.max_adapters)
    if a.queue:
        queue(a.queue, prompts, judged, [r[1] for r in runs])
    if a.picks:
        with open(a.picks, "w", encoding="utf-8") as f:
            for q in prompts:
                f.write(json.dumps({"id": q["id"], "picked": preds[q["id"]]}) + "\n")


class _Tracing(Composer):
    """The composer, keeping each task's purpose matches of the last compose (to trace the misses)."""
    def compose(self, *args, **kwargs):
        self.matches = []
        return super().compose(*args, **kwargs)

    def _match(self, pidx, task, *args, **kwargs):
        m = super()._match(pidx, task, *args, **kwargs)
        self.matches.append(m)
        return m


# The stages of a fitting card's way to a pick, furthest last: a miss is put down to the furthest one that one
# of its fitting cards reached.
STAGES = ("no purpose-phrase word in the prompt", "phrase asked in part (under the threshold)",
          "common word, under meaning_name_share of its whole name in the prompt",
          "meaning on its own window under the threshold", "context veto (its own words pass, with the "
          "neighbours' it does not)", "refused after matching")


def _stage(composer: "_Tracing", comp, pidx, meaning, doc: int) -> int:
    """How far a card got in the last compose (an index of STAGES)."""
    cfg = composer.config
    best = 0
    for m in composer.matches[-len(comp.tasks):] if comp.tasks else []:
        at = int(m.at(doc)) if len(m.docs) else 0
        if at >= len(m.docs) or m.docs[at] != doc:
            continue
        loose = float(m.loose[at]) if m.loose is not None else float(m.scores[at])
        if loose < cfg.threshold:
            stage = 1
        elif float(m.scores[at]) >= cfg.threshold:
            stage = 5  # matched (rare words, or kept by meaning): a later rule refused it
        elif doc not in set(m.extra.tolist()):
            stage = 2
        else:
            unit = int(m.loose_best[at])
            own = unit in m.alone and float(meaning.vectors[doc] @ meaning.vector(m.alone[unit]))
            stage = 4 if own and own >= cfg.meaning else 3
        best = max(best, stage)
    return best


def misses(composer: Composer, prompts: list, max_adapters: int) -> None:
    """Each concept with fitting cards that none of the picks serves, and what became of its fitting cards:
    the composer's drop reason, or no candidate (no purpose phrase of theirs was asked); then each miss put
    down to the furthest stage one of its fitting cards reached (STAGES), with counts."""
    from lib_stylus.meaning import meaning_of
    from lib_stylus.purpose import purpose_index
    tracer = _Tracing(composer.retriever, composer.config)
    snap = composer.retriever.index.snapshot
    pidx = purpose_index(snap)
    meaning = meaning_of(snap, composer.retriever.index)
    rows = {}
    for i, stem in enumerate(pidx.stems):
        rows.setdefault(stem, i)
    counts: dict = {}
    stages = [0] * len(STAGES)
    for q in prompts:
        comp = tracer.compose(q["prompt"], "sd1", max_adapters=max_adapters)
        drops: dict = {}
        for d in comp.drops:
            drops.setdefault(d.stem, d.reason)
        for c in q["concepts"]:
            fitting = c.get("fitting") or c.get("relevant") or []  # queries-dev names them "relevant"
            if not fitting or set(fitting) & set(comp.stems):
                continue
            why = [f"{s}: {drops[s]}" for s in fitting if s in drops]
            kind = "dropped" if why else "no candidate"
            counts[kind] = counts.get(kind, 0) + 1
            reached = [_stage(tracer, comp, pidx, meaning, rows[s]) for s in fitting if s in rows]
            stage = max(reached, default=0)
            stages[stage] += 1
            print(f"miss {q['id']} {c['name']!r} ({kind}; {STAGES[stage]}): " + "; ".join(why[:3]))
    print("misses:", json.dumps(counts))
    for name, n in zip(STAGES, stages):
        print(f"  {n:4d}  {name}")


def _diff(cfg) -> str:
    base = ComposerConfig()
    changed = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
               if getattr(cfg, f.name) != getattr(base, f.name)}
    return json.dumps(changed) if changed else "defaults"


def queue(path: str, prompts: list, judged: dict, all_preds: list) -> None:
    """The pairs no reader has labelled yet, without any score or reason (the reader must not know why)."""
    text = {q["id"]: q["prompt"] for q in prompts}
    todo = dict.fromkeys((qid, stem) for preds in all_preds for qid, stems in preds.items() for stem in stems
                         if (qid, stem) not in judged)
    with open(path, "w", encoding="utf-8") as f:
        for qid, stem in todo:
            f.write(json.dumps({"id": qid, "prompt": text[qid], "stem": stem}, ensure_ascii=False) + "\n")
    print(f"{len(todo)} unjudged pairs -> {path}")


def collect(rd: str, files: list) -> None:
    """Append a reader's labels ({id, stem, label, why}) that are new to the extras file."""
    known = judgments(rd)
    added = 0
    with open(EXTRA, "a", encoding="utf-8") as out:
        for path in files:
            for r in load(path):
                if (r["id"], r["stem"]) in known or r.get("label") not in ("relevant", "plausible", "wrong"):
                    continue
                why = " ".join(str(r.get("why", "")).split())
                out.write(json.dumps({"id": r["id"], "stem": r["stem"], "label": r["label"], "why": why},
                                     ensure_ascii=False) + "\n")
                known[(r["id"], r["stem"])] = r["label"]
                added += 1
    print(f"collected {added} new judgments into {EXTRA}")


if __name__ == "__main__":
    main()
