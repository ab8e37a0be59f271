"""Fit the composer's acceptance model (ComposerConfig.accept) on judged pairs, cross-validated.

Data: every candidate the composer considers (Composer.candidate_features) for the realistic-dev prompts (label:
the reader's judgment - relevant 1, plausible 0.5, wrong 0; unjudged candidates are left out and, with --queue,
the best-ranked ones are written for a reader) and for the queries-dev concept queries (label: the stem is in
the query's gold set). Folds: id number parity, over both sets. For each fold the model and its cut-off
(accept_at) are fitted on one half and the composer is scored on the other; then the final model is fitted on
all of it and printed as a ComposerConfig line.

usage: python tests/bench/fit_accept.py [--work DIR] [--bench ../shared/bench] [--queue FILE]"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_realistic as br  # noqa: E402
from lib_stylus.composer import FEATURES, Composer, ComposerConfig  # noqa: E402
from lib_stylus.retriever import Retriever  # noqa: E402

LABEL = {"relevant": 1.0, "plausible": 0.5, "wrong": 0.0}
REALISTIC_WEIGHT = 2.0  # the judged realistic prompts count twice: they are what users write
CUTS = (0.3, 0.4, 0.5, 0.6, 0.7)


def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1.0, steps: int = 30) -> np.ndarray:
    """Weighted logistic regression (soft labels) by Newton steps, L2 on everything but the bias."""
    beta = np.zeros(x.shape[1])
    reg = np.full(x.shape[1], l2)
    reg[0] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ beta))
        grad = x.T @ (w * (p - y)) + reg * beta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(reg) + 1e-9 * np.eye(len(beta))
        beta -= np.linalg.solve(hess, grad)
    return beta


def rows(composer: Composer, realistic: list, concept: list, judged: dict) -> tuple:
    data, todo = [], []
    for q in realistic:
        ranked = {}
        for t, stem, f in composer.candidate_features(q["prompt"]):
            label = judged.get((q["id"], stem))
            if label is None:
                ranked.setdefault(t, []).append((f[1], stem))
                continue
            data.append((br.number(q["id"]) % 2, f, LABEL[label], REALISTIC_WEIGHT))
        for cands in ranked.values():  # the two best-asked unjudged ones per task go to the reader
            todo += [(q["id"], q["prompt"], stem) for _, stem in sorted(cands, reverse=True)[:2]]
    for q in concept:
        gold = set(q["gold"])
        for _, stem, f in composer.candidate_features(q["prompt"]):
            data.append((br.number(q["id"]) % 2, f, float(stem in gold), 1.0))
    return data, todo


def evaluate(index, cfg, realistic, concept, judged, rd) -> dict:
    composer = Composer(Retriever(index), cfg)
    preds, _ = br.run(composer, realistic, 4)
    r = br.score(rd, realistic, judged, preds)
    n = ok = cn = cc = 0
    for q in concept:
        picks = composer.compose(q["prompt"], "sd1").stems
        gold = set(q["gold"])
        n += len(picks)
        ok += sum(s in gold for s in picks)
        for c in q["concepts"]:
            cn += 1
            cc += bool(set(c["relevant"]) & set(picks))
    r["concept_precision"] = round(ok / max(n, 1), 4)
    r["concept_coverage"] = round(cc / max(cn, 1), 4)
    return r


def objective(r: dict) -> float:
    return br.objective(r) + r["concept_precision"] + r["concept_coverage"]


def choose(index, data, half, realistic, concept, judged, rd):
    """The model fitted on ``data`` rows of ``half`` (None: all) and the cut-off best on those prompts."""
    use = [d for d in data if half is None or d[0] == half]
    x = np.array([d[1] for d in use])
    beta = fit(x, np.array([d[2] for d in use]), np.array([d[3] for d in use]))
    keep = lambda q: half is None or br.number(q["id"]) % 2 == half  # noqa: E731
    best = None
    for cut in CUTS:
        cfg = ComposerConfig(accept=tuple(round(float(b), 4) for b in beta), accept_at=cut)
        r = evaluate(index, cfg, [q for q in realistic if keep(q)], [q for q in concept if keep(q)], judged, rd)
        if best is None or objective(r) > objective(best[1]):
            best = (cfg, r)
    return best[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "stylus-bench"))
    ap.add_argument("--bench", default=br.find_bench())
    ap.add_argument("--queue", help="write unjudged candidates here for a reader")
    a = ap.parse_args()
    rd = os.path.join(a.bench, "realistic-dev")
    realistic = br.load(os.path.join(rd, "prompts-dev.jsonl"))
    concept = [q for q in br.load(os.path.join(a.bench, "queries-dev.jsonl")) if q["kind"] == "concept"]
    judged = br.judgments(rd)
    index = br.open_library(a.bench, a.work)
    data, todo = rows(Composer(Retriever(index)), realistic, concept, judged)
    print(f"{len(data)} labelled candidates ({sum(d[3] > 1 for d in data)} judged realistic), {len(todo)} unjudged")
    if a.queue:
        with open(a.queue, "w", encoding="utf-8") as f:
            for qid, prompt, stem in dict.fromkeys(todo):
                f.write(json.dumps({"id": qid, "prompt": prompt, "stem": stem}, ensure_ascii=False) + "\n")
    held = []
    for fit_half, report_half in ((1, 0), (0, 1)):
        cfg = choose(index, data, fit_half, realistic, concept, judged, rd)
        keep = lambda q: br.number(q["id"]) % 2 == report_half  # noqa: E731
        r = evaluate(index, cfg, [q for q in realistic if keep(q)], [q for q in concept if keep(q)], judged, rd)
        held.append(r)
        name = "even" if report_half == 0 else "odd"
        print(br.line(f"cv {name}", r) + f"  concept P {r['concept_precision']} cov {r['concept_coverage']}"
              f"  (cut {cfg.accept_at})")
    keys = ("precision", "plausible", "harm", "coverage", "concept_precision", "concept_coverage")
    print("cv average: " + "  ".join(f"{k} {sum(r[k] or 0 for r in held) / 2:.4f}" for k in keys))
    final = choose(index, data, None, realistic, concept, judged, rd)
    print("fitted on all:", dict(zip(FEATURES, final.accept)), "accept_at", final.accept_at)
    print(f"ComposerConfig(accept={final.accept}, accept_at={final.accept_at})")
    r = evaluate(index, final, realistic, concept, judged, rd)
    print(br.line("all (in-sample)", r) + f"  concept P {r['concept_precision']} cov {r['concept_coverage']}")


if __name__ == "__main__":
    main()
