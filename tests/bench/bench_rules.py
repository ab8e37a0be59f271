"""The composer's rule pieces on the real 6,431-card bench library (issue 10): characters.py, content.py,
triggers.py. Cards are read from library.jsonl in memory (title, tags, trained words, description and the
Civitai nsfw flag, as the scanner reads them from .civitai.info), refined and BM25-indexed like a refresh.

Reports: how many cards are characters / cosplay, the franchises found, the content profiles (NSFW, revealing,
gendered, ethnicity, real person), the trigger words hygiene refuses and why, the index build time, and
``named_in`` on realistic-dev: recall of the fitting LoRAs of its character concepts (a concept whose fitting
LoRAs are mostly Civitai-tagged 'character'/'celebrity'), the other LoRAs named, and the time per prompt of
``named_in`` + ``franchise_asked`` + ``profile_prompt``.

usage: python tests/bench/bench_rules.py [--bench ../shared/bench] [--show]"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from lib_stylus.catalog.card import AdapterCard  # noqa: E402
from lib_stylus.characters import CharacterIndex  # noqa: E402
from lib_stylus.content import profile_card, profile_prompt  # noqa: E402
from lib_stylus.embedding import BM25  # noqa: E402
from lib_stylus.index import Entry, Snapshot  # noqa: E402
from lib_stylus.refiner import refine  # noqa: E402
from lib_stylus.text import collapse, split_words_list, strip_html  # noqa: E402
from lib_stylus.triggers import trigger_problem  # noqa: E402

CHARACTER_TAGS = {"character", "celebrity"}


def load(path: str) -> Snapshot:
    entries = []
    for line in open(path, encoding="utf-8"):
        rec = json.loads(line)
        civ = rec["civitai_info"]
        model = civ.get("model") or {}
        description = " ".join(strip_html(d.get("description") or "") for d in (model, civ))
        tags = [t for t in model.get("tags") or [] if isinstance(t, str)]
        card = AdapterCard(path=rec["stem"], rel=rec["stem"], stem=rec["stem"], alias=rec["stem"],
                           title=model.get("name") or "", tags=tags,
                           trigger_words=split_words_list(civ.get("trainedWords")),
                           description=collapse(description), nsfw=model.get("nsfw") is True, base="sd1")
        entries.append(Entry(card, refine(card), ""))
    state = BM25().fit([e.refined.text for e in entries])
    return Snapshot(entries, {"bm25": state}, np.zeros(len(entries), np.int8), [])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=os.path.join(os.path.dirname(ROOT), "shared", "bench"))
    ap.add_argument("--show", action="store_true", help="print the misses and the other LoRAs named")
    a = ap.parse_args()
    snap = load(os.path.join(a.bench, "library.jsonl"))
    entries = snap.entries
    n = len(entries)
    print(f"library: {n} cards")

    t0, c0 = time.perf_counter(), time.process_time()
    ci = CharacterIndex(entries)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    CharacterIndex(entries)  # as after a refresh that kept every card
    again, again_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"CharacterIndex build: {wall:.2f} s wall, {cpu:.2f} s CPU; rebuilt over unchanged cards: "
          f"{again:.2f} s wall, {again_cpu:.2f} s CPU")
    chars = sum(ci.is_character(r) for r in range(n))
    tagged = sum(bool(CHARACTER_TAGS & {t.lower() for t in e.card.tags}) for e in entries)
    first_1girl = sum(e.card.trigger_words[:1] == ["1girl"] for e in entries)
    cosplay = sum(ci.is_cosplay(r) for r in range(n))
    with_name = sum(bool(ci.names(r)) for r in range(n))
    print(f"characters: {chars} (Civitai-tagged character/celebrity: {tagged}), cosplay/costume: {cosplay}, "
          f"with a name: {with_name}; first trigger '1girl': {first_1girl} cards")
    with_franchise = sum(bool(ci.franchises(r)) for r in range(n))
    print(f"franchises: {len(ci.franchise_names)}, cards with one: {with_franchise}")

    profiles = [profile_card(e, r) for r, e in enumerate(entries)]
    print("content: " + ", ".join(f"{k} {v}" for k, v in [
        ("civitai nsfw", sum(p.civitai_nsfw for p in profiles)),
        ("explicit", sum(p.explicit for p in profiles)),
        ("revealing", sum(p.revealing for p in profiles)),
        ("female", sum(p.genders == {"female"} for p in profiles)),
        ("male", sum(p.genders == {"male"} for p in profiles)),
        ("ethnicity", sum(bool(p.ethnicities) for p in profiles)),
        ("real person", sum(p.real_person for p in profiles))]))

    reasons = Counter(trigger_problem(w) for e in entries for w in e.card.trigger_words)
    total = sum(reasons.values())
    print(f"trigger words: {total}, never written for their shape: " + ", ".join(
        f"{k} {v}" for k, v in reasons.most_common() if k))

    generic = "masterpiece, best quality, 1girl, solo, long hair, red eyes, smile, witch hat, maid, black cat"
    print(f"characters named by '{generic}': {len(ci.named_in(generic))}")
    prompts = [json.loads(line) for line in open(os.path.join(a.bench, "realistic-dev", "prompts-dev.jsonl"),
                                                 encoding="utf-8")]
    recall(ci, entries, prompts, a.show)
    timing(ci, prompts)


def recall(ci, entries, prompts, show: bool) -> None:
    rows = {e.card.stem: i for i, e in enumerate(entries)}
    hit = total = other = concepts = 0
    for p in prompts:
        named = {entries[r].card.stem for r in ci.named_in(p["prompt"])}
        gold = set()
        for c in p["concepts"]:
            fit = [s for s in c["fitting"] if s in rows]
            tagged = [s for s in fit if CHARACTER_TAGS & {t.lower() for t in entries[rows[s]].card.tags}]
            if fit and len(tagged) * 2 > len(fit):
                gold |= set(fit)
                concepts += 1
        hit += len(gold & named)
        total += len(gold)
        other += len(named - gold)
        if show and (gold - named or named - gold):
            print(f"  {p['id']}: missed {sorted(gold - named)}; other {sorted(named - gold)}")
    print(f"named_in on realistic-dev ({len(prompts)} prompts, {concepts} character concepts): "
          f"{hit}/{total} fitting LoRAs named (recall {hit / max(total, 1):.2f}), {other} other LoRAs named")


def timing(ci, prompts) -> None:
    """Wall and CPU time per prompt: on a shared machine the wall clock also counts other processes."""
    wall, cpu = [], []
    for _ in range(5):
        for p in prompts:
            t0, c0 = time.perf_counter(), time.process_time()
            named = ci.named_in(p["prompt"])
            ci.franchise_asked(p["prompt"], named)
            profile_prompt(p["prompt"], named)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    for label, times in (("wall", wall), ("CPU", cpu)):
        ts = sorted(times)
        p50, p95 = ts[len(ts) // 2] * 1000, ts[int(0.95 * len(ts))] * 1000
        print(f"per prompt (named_in + franchise_asked + profile_prompt), {label}: p50 {p50:.2f} ms, "
              f"p95 {p95:.2f} ms, max {ts[-1] * 1000:.2f} ms over {len(ts)} runs")


if __name__ == "__main__":
    main()
