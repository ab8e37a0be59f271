"""Benchmark the foundation: index build, incremental refresh, retrieval latency (6,431 and 100,000 cards),
memory, and retrieval quality on the bench dev queries. Run: python tests/bench/bench_index.py [--work DIR]
Prints a Markdown section for BENCHMARKS.md. Needs ../shared/bench (the LoRA selection benchmark).

``--composer-refresh N`` measures only what a refresh costs the composer (issue 10: refresh after one edited
file <= 1 s): the first index with the composer's indexes (purpose phrases, characters), then N refreshes
after editing one file each (a .civitai.info description; its tags and trigger words; a .safetensors
header's metadata), each counted until the new snapshot, with the composer's indexes built for it, is
swapped in, and until the index file is saved too."""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from bench_realistic import find_bench  # noqa: E402
from lib_stylus.embedding import BM25, DenseEmbedder, bundled_minilm, faiss_bytes  # noqa: E402
from lib_stylus.index import LibraryIndex, Snapshot  # noqa: E402
from lib_stylus.retriever import Retriever, query_text  # noqa: E402
from tests.loralib import edit_info  # noqa: E402

BENCH = find_bench()  # shared/bench beside the repository (or a folder above a worktree)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def materialize(work: str) -> str:
    lib = os.path.join(work, "lora")
    if not os.path.isfile(os.path.join(lib, "FAULTS.txt")):
        subprocess.run([sys.executable, os.path.join(BENCH, "materialize.py"),
                        os.path.join(BENCH, "library.jsonl"), lib, "--with-faults"], check=True)
    return lib


def percentiles(samples) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 95))


class CachedQueries:
    """Wraps a dense embedder so queries are embedded once up front: latency then excludes the prompt's
    embedding."""
    def __init__(self, inner: DenseEmbedder, queries):
        self.inner, self.id = inner, inner.id
        self.cache = dict(zip(queries, inner.embed(queries)))

    def search(self, state, query, allowed, k):
        from lib_stylus.embedding import faiss_search
        return faiss_search(state, self.cache[query], allowed, k)


def latency(index, queries, base="sd1", k=150, rounds=1) -> tuple[float, float]:
    retr = Retriever(index)
    for q in queries[:20]:
        retr.retrieve(q, base, k)
    times = []
    for _ in range(rounds):
        for q in queries:
            t0 = time.perf_counter()
            retr.retrieve(q, base, k)
            times.append((time.perf_counter() - t0) * 1000)
    return percentiles(times)


def score(index, queries_path: str, work: str, name: str) -> dict:
    retr = Retriever(index)
    qs = [json.loads(l) for l in open(queries_path, encoding="utf-8")]
    out = os.path.join(work, f"pred-{name}.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for q in qs:
            f.write(json.dumps({"id": q["id"],
                                "picked": [c.card.stem
                                           for c in retr.retrieve(q["prompt"], "sd1", 50)]}) + "\n")
    res = {}
    for picks in (None, 3):
        cmd = ([sys.executable, os.path.join(BENCH, "score.py"), queries_path, out]
               + (["--picks", str(picks)] if picks else []))
        last = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        res["top50" if picks is None else "top3"] = json.loads(last)
    return res


def synthetic(index, n: int, seed: int = 0):
    """n cards made by varying the real ones: renamed stems, shuffled and dropped words, perturbed vectors."""
    rng = random.Random(seed)
    base = index.snapshot.entries
    dense_id = next((e.id for e in index.embedders if e.id != "bm25"), None)
    vecs = index.snapshot.states[dense_id]["dense_vectors"] if dense_id else None
    entries, texts, rows = [], [], []
    for i in range(n):
        j = i % len(base)
        words = base[j].refined.text.split()
        rng.shuffle(words)
        words = words[: max(8, int(len(words) * rng.uniform(0.6, 1.0)))]
        texts.append(f"{base[j].card.stem}_{i} " + " ".join(words))
        entries.append(base[j])
        rows.append(j)
    snap = Snapshot(entries=entries, families=index.snapshot.families[rows], states={})
    snap.states["bm25"] = BM25().fit(texts)
    if dense_id:
        noise = np.random.default_rng(seed).standard_normal((n, vecs.shape[1])).astype(np.float32) * 0.02
        v = vecs[rows] + noise
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        snap.states[dense_id] = {"dense_vectors": v, "dense_faiss": faiss_bytes(v)}
    return snap


# ---- what a refresh costs the composer --------------------------------------------------------------------
def edit_description(lib: str, stem: str, i: int) -> None:
    def change(info):
        info["model"]["description"] = (info["model"].get("description") or "") + f" (edited {i})"
    edit_info(lib, stem, change)


def edit_tags_and_triggers(lib: str, stem: str, i: int) -> None:
    """One more tag, and the last trigger word written first (the main trigger changes)."""
    def change(info):
        info["model"]["tags"] = list(info["model"].get("tags") or []) + ["fantasy"]
        words = list(info.get("trainedWords") or [])
        info["trainedWords"] = words[-1:] + words[:-1]
    edit_info(lib, stem, change)


def edit_metadata(lib: str, stem: str, i: int) -> None:
    """The .safetensors header rewritten with one more training tag in ss_tag_frequency (the tensors as they
    were)."""
    path = os.path.join(lib, stem + ".safetensors")
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.setdefault("__metadata__", {})
    freq = json.loads(meta.get("ss_tag_frequency") or "{}")
    freq.setdefault("10_edited", {})[f"edited {i}"] = 3
    meta["ss_tag_frequency"] = json.dumps(freq)
    text = json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])


EDITS = [("`.civitai.info` description", edit_description),
         ("`.civitai.info` tags + trigger words", edit_tags_and_triggers),
         ("`.safetensors` metadata", edit_metadata)]


class Timed:
    """composer.prepare, timed per call."""
    def __init__(self, fn):
        self.fn, self.last = fn, 0.0

    def __call__(self, snapshot) -> None:
        t0 = time.perf_counter()
        self.fn(snapshot)
        self.last = time.perf_counter() - t0


def composer_refresh(work: str, reps: int, embedder: str = "lexical") -> dict:
    from lib_stylus import characters, purpose
    from lib_stylus.composer import Composer, prepare
    lib = materialize(work)
    cache = os.path.join(work, f"cache-composer-refresh-{embedder}")
    shutil.rmtree(cache, ignore_errors=True)
    embs = [BM25(), DenseEmbedder(bundled_minilm())] if embedder == "hybrid" else [BM25()]
    index = LibraryIndex([lib], cache, embs)
    timed = Timed(prepare)
    rss0 = peak_mb()
    t0 = time.perf_counter()
    rep = index.refresh(prepare=timed)
    first = dict(total=time.perf_counter() - t0, ready=rep.ready_seconds, prepare=timed.last, cards=rep.total,
                 peak=peak_mb(), peak_before=rss0, embedder=embedder)
    composer = Composer(Retriever(index))
    prompt = "masterpiece, 1girl, raiden shogun, genshin impact, cyberpunk city at night, watercolor"
    composer.compose(prompt, "sd1")
    rng = random.Random(0)
    info = ".civitai.info"
    stems = sorted(n[:-len(info)] for n in os.listdir(lib) if n.endswith(info)
                   and os.path.isfile(os.path.join(lib, n[:-len(info)] + ".safetensors")))
    runs = []
    for i in range(reps):
        name, edit = EDITS[i % len(EDITS)]
        edit(lib, rng.choice(stems), i)
        t0 = time.perf_counter()
        rep = index.refresh(prepare=timed)
        total = time.perf_counter() - t0
        t1 = time.perf_counter()
        composer.compose(prompt, "sd1")
        compose_ms = (time.perf_counter() - t1) * 1000
        updated = index.snapshot._stylus_characters.updated
        runs.append(dict(kind=name, ready=rep.ready_seconds, total=total, prepare=timed.last, read=rep.read,
                         compose_ms=compose_ms, incremental=updated is not None,
                         recomputed=(updated or {}).get("names", 0)))
        print(json.dumps(runs[-1]), file=sys.stderr)
    peak = peak_mb()
    # the composer's indexes of the last snapshot built from nothing: the time, and the same indexes
    from tests.test_refresh import character_state, purpose_state
    snap = index.snapshot
    whole = Snapshot(snap.entries, snap.states, snap.families, snap.faults)
    characters._LAST, purpose._LAST_PARTS, purpose._stem_keys = None, {}, purpose._StemKeys()
    t0 = time.perf_counter()
    prepare(whole)
    first["whole"] = time.perf_counter() - t0
    first["same"] = purpose_state(whole._stylus_purpose) == purpose_state(snap._stylus_purpose) and \
        character_state(whole._stylus_characters) == character_state(snap._stylus_characters)
    return dict(first=first, runs=runs, peak=peak)


def print_composer_refresh(r: dict, reps: int) -> None:
    first, runs = r["first"], r["runs"]
    command = f"python tests/bench/bench_index.py --composer-refresh {reps} --embedder {first['embedder']}"
    print(f"### Refresh with the composer's indexes (`{command}`)\n")
    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}; {first['cards']:,} cards (the bench library, materialized with its "
          "faults).\n")
    print("First index (scan, refine, BM25, purpose and character indexes): "
          f"{first['ready']:.1f} s until ready (composer's indexes {first['prepare']:.1f} s of it), "
          f"{first['total']:.1f} s with the save. "
          f"Peak RSS {first['peak']:.0f} MB after the first index, {r['peak']:.0f} MB after the refreshes. "
          f"The composer's indexes of the last snapshot built from nothing: {first['whole']:.2f} s, "
          f"{'the same' if first['same'] else 'NOT the same'} as the ones the refreshes built.\n")
    print("| edited file | refreshes | until ready p50 / max | of it composer's indexes p50 / max "
          "| with the save p50 / max | first compose after p50 / max | built from the previous |")
    print("|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(x["kind"] for x in runs):
        rs = [x for x in runs if x["kind"] == name]
        cells = []
        for key, unit in (("ready", "s"), ("prepare", "s"), ("total", "s"), ("compose_ms", "ms")):
            v = [x[key] for x in rs]
            cells.append(f"{np.percentile(v, 50):.2f} / {max(v):.2f} {unit}")
        inc = sum(x["incremental"] for x in rs)
        print(f"| {name} | {len(rs)} | " + " | ".join(cells) + f" | {inc} of {len(rs)} |")
    ready = [x["ready"] for x in runs]
    print(f"\nAll {len(runs)} refreshes: until ready p50 {np.percentile(ready, 50):.2f} s, "
          f"max {max(ready):.2f} s.")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "stylus-bench"))
    ap.add_argument("--synthetic", type=int, default=100_000)
    ap.add_argument("--composer-refresh", type=int, default=0, metavar="N",
                    help="only: the first index and N one-file refreshes with the composer's indexes")
    ap.add_argument("--embedder", choices=("lexical", "hybrid"), default="lexical",
                    help="the index of --composer-refresh (hybrid: MiniLM purpose vectors too, "
                         "as the web UI)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    if a.composer_refresh:
        print_composer_refresh(composer_refresh(a.work, a.composer_refresh, a.embedder), a.composer_refresh)
        return
    lib = materialize(a.work)
    qpath = os.path.join(BENCH, "queries-dev.jsonl")
    prompts = [query_text(json.loads(l)["prompt"]) for l in open(qpath, encoding="utf-8")]
    setups = [("lexical (BM25)", [BM25()])]
    if bundled_minilm():
        setups.append(("hybrid (BM25 + MiniLM)", [BM25(), DenseEmbedder(bundled_minilm())]))
    results = {}
    for name, embs in setups:
        cache = os.path.join(a.work, "cache-" + embs[-1].id)
        for f in os.listdir(cache) if os.path.isdir(cache) else []:
            os.remove(os.path.join(cache, f))
        index = LibraryIndex([lib], cache, embs)
        t0 = time.perf_counter()
        rep = index.refresh()
        full = time.perf_counter() - t0
        touched = os.path.join(lib, "add_detail.civitai.info")
        text = open(touched, encoding="utf-8").read()
        open(touched, "w", encoding="utf-8").write(text.replace("enhancing", "enhancing (edited)", 1))
        fresh = LibraryIndex([lib], cache, embs)
        t0 = time.perf_counter()
        fresh.load()
        load_s = time.perf_counter() - t0
        inc = fresh.refresh()
        open(touched, "w", encoding="utf-8").write(text)
        fresh.refresh()
        if len(embs) > 1:
            fresh.embedders = [embs[0], CachedQueries(embs[1], prompts)]
        p50, p95 = latency(fresh, prompts)
        quality = score(fresh, qpath, a.work, embs[-1].id)
        results[name] = dict(full=full, cards=rep.total, load=load_s, inc=inc.seconds, inc_read=inc.read,
                             inc_emb=sum(inc.embedded.values()), p50=p50, p95=p95,
                             size=os.path.getsize(fresh.path) / 1e6, quality=quality, peak=peak_mb())
        if a.synthetic:
            big = synthetic(fresh, a.synthetic)
            fresh.snapshot = big
            t50, t95 = latency(fresh, prompts[:300])
            results[name].update(big_p50=t50, big_p95=t95, big_peak=peak_mb())
        print(name, json.dumps(results[name]), file=sys.stderr)
    print_markdown(results, a.synthetic)


def print_markdown(results: dict, n_big: int) -> None:
    print("### Index and retrieval (`python tests/bench/bench_index.py`)\n")
    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}.\n")
    print("| embedders | cards | full index | load | refresh after editing 1 file | re-read / re-embedded | "
          f"query p50 / p95 (K=150) | at {n_big:,} cards p50 / p95 | index file | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['cards']} | {r['full']:.1f} s | {r['load']:.2f} s | {r['inc']:.2f} s | "
              f"{r['inc_read']} / {r['inc_emb']} | {r['p50']:.2f} / {r['p95']:.2f} ms | "
              f"{r.get('big_p50', 0):.2f} / {r.get('big_p95', 0):.2f} ms"
              f" | {r['size']:.0f} MB | {r.get('big_peak', r['peak']):.0f} MB |")
    print("\nRetrieval quality on `queries-dev.jsonl` (`retrieve --top 50`; concept columns on the top 3):\n")
    print("| method | P@3 | coverage@3 | R@1 | R@5 | R@10 | R@50 | MRR |")
    print("|---|---|---|---|---|---|---|---|")
    print("| BM25 baseline (bench README) | 0.662 | 0.588 | 0.078 | 0.108 | 0.130 | 0.168 | 0.095 |")
    print("| hybrid RRF baseline (bench README) | 0.698 | 0.609 | 0.028 | 0.066 | 0.088 | 0.182 | 0.049 |")
    for name, r in results.items():
        t3, t50 = r["quality"]["top3"], r["quality"]["top50"]
        print(f"| Stylus retriever, {name} | {t3['concept_P@3']:.3f} | {t3['concept_cov@3']:.3f} | "
              f"{t50['sample_R@1']:.3f} | {t50['sample_R@5']:.3f} | {t50['sample_R@10']:.3f} | "
              f"{t50['sample_R@50']:.3f} | {t50['sample_MRR']:.3f} |")


if __name__ == "__main__":
    main()
