"""Persistent index of a LoRA library: the card store plus one searchable state per embedder, in ONE .npz file
per (embedders, refiner version). Refresh is incremental (unchanged files are neither re-read nor
re-embedded); writes are atomic (temp file + rename); loading never unpickles and a bad file means a rebuild,
not a crash."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .catalog import AdapterCard, FAMILIES, Fault, scan
from .embedding import BM25, Embedder
from .errors import first_line
from .text import collections_deferred
from .refiner import REFINER_VERSION, Refined, refine, title_text

log = logging.getLogger("stylus")
INDEX_FORMAT = 1
TMP_PREFIX, TMP_SUFFIX = ".stylus-index-", ".tmp"
STALE_TMP_SECONDS = 3600  # a temp file this old belongs to a killed run, not to a save in progress elsewhere


@dataclass
class Entry:
    card: AdapterCard
    refined: Refined
    text_sha: str

    def to_dict(self) -> dict:
        return {"card": self.card.to_dict(), "refined": self.refined.__dict__, "text_sha": self.text_sha}

    def json_bytes(self) -> bytes:
        """to_dict() as UTF-8 JSON, made once: a refresh keeps the Entry of every unchanged file, so a save
        after a one-file edit encodes one card instead of the whole library."""
        data = self.__dict__.get("_json")
        if data is None:
            data = self.__dict__["_json"] = json.dumps(self.to_dict(), ensure_ascii=False).encode("utf-8")
        return data

    @classmethod
    def from_dict(cls, d: dict) -> "Entry":
        return cls(AdapterCard.from_dict(d["card"]), Refined(**d["refined"]), d["text_sha"])


@dataclass
class Snapshot:
    """An immutable view that queries read; refresh builds a new one and swaps it in."""
    entries: list = field(default_factory=list)
    states: dict = field(default_factory=dict)       # embedder id -> arrays
    families: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    faults: list = field(default_factory=list)

    def allowed(self, families: Sequence[str]) -> np.ndarray:
        codes = [FAMILIES.index(f) for f in families]
        return np.isin(self.families, codes)


@dataclass
class RefreshReport:
    total: int = 0
    read: int = 0
    reused: int = 0
    embedded: dict = field(default_factory=dict)   # embedder id -> cards embedded this refresh
    titled: dict = field(default_factory=dict)     # embedder id -> card titles embedded this refresh
    removed: int = 0
    faults: list = field(default_factory=list)
    seconds: float = 0.0
    ready_seconds: float = 0.0  # until the new snapshot (and what ``prepare`` built for it) was swapped in
    saved: bool = False


class LibraryIndex:
    def __init__(self, roots: Sequence[str], cache_dir: str, embedders: Sequence[Embedder] | None = None,
                 captioners: Sequence = (), hidden: bool = True):
        self.roots = [os.path.abspath(r) for r in roots]
        self.cache_dir = cache_dir
        self.embedders = list(embedders) if embedders else [BM25()]
        self.captioners = list(captioners)
        self.hidden = hidden  # index files in dot-folders too (the web UI lists them by default)
        self.key = "+".join(e.id for e in self.embedders) + f"-r{REFINER_VERSION}"
        self.path = os.path.join(cache_dir, f"stylus-index-{_safe(self.key)}.npz")
        self.snapshot = Snapshot()
        self.messages: list[str] = []
        self._lock = threading.Lock()

    # ---- persistence ---------------------------------------------------------------------------------------
    def load(self) -> bool:
        """Load the saved index if there is a valid one for these embedders; a bad file is reported, not
        raised."""
        if not os.path.lexists(self.path):
            return False
        if not os.path.isfile(self.path):
            self._message(f"Stylus: {self.path} is not a file; the index is rebuilt")
            return False
        try:
            self.snapshot = _read(self.path, self.key, [e.id for e in self.embedders])
            return True
        except Exception as e:  # zip, JSON, missing or inconsistent arrays, wrong format: all mean "rebuild"
            why = f"{e.__class__.__name__}: {e}"
            self._message(f"Stylus: index file {self.path} is unusable ({why}); rebuilding it")
            self.snapshot = Snapshot()
            return False

    def _message(self, msg: str) -> None:
        log.warning(msg)
        self.messages.append(msg)

    def save(self) -> None:
        """Write the index atomically. Raises OSError (refresh then keeps the results unsaved)."""
        os.makedirs(self.cache_dir, exist_ok=True)
        # the list as json.dumps writes it
        entries = b"[" + b", ".join(e.json_bytes() for e in self.snapshot.entries) + b"]"
        arrays = {"meta": _json_bytes({"format": INDEX_FORMAT, "key": self.key, "roots": self.roots}),
                  "entries": np.frombuffer(entries, np.uint8),
                  "faults": _json_bytes([f.__dict__ for f in self.snapshot.faults])}
        for emb_id, state in self.snapshot.states.items():
            arrays.update({f"{emb_id}::{k}": v for k, v in state.items() if not k.startswith("_")})
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=self.cache_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # atomic: readers see the old file or the new one, never half of one
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # ---- refresh -------------------------------------------------------------------------------------------
    def refresh(self, progress: Callable[[str, int, int], None] | None = None, save: bool = True,
                prepare: Callable[[Snapshot], None] | None = None,
                ready: Callable[[RefreshReport], None] | None = None) -> RefreshReport:
        """Re-scan the roots; re-read and re-embed only what changed; swap in the new snapshot and save it.
        ``prepare(snapshot)`` builds what readers need of a new snapshot (the composer's indexes) before it is
        swapped in, so no reader builds them, and before the save, so they do not wait for the disk;
        ``ready(report)`` is called once it is swapped in (the save still to come)."""
        with self._lock:
            t0 = time.perf_counter()
            _remove_stale_tmp(self.cache_dir)
            report = RefreshReport()
            old = {e.card.path: e for e in self.snapshot.entries}
            # What a refresh allocates sets off full collections of the process's objects (~0.5 s each with
            # the 6.4K-card index alone, about half the time of the composer's indexes at 100K cards): not
            # before the new snapshot is in use. Its garbage is freed by reference counts: peak memory does
            # not grow.
            with collections_deferred():
                entries = self._scan(old, report, progress)
                untitled: dict = {}  # embedder id -> (titles, rows lacking one): _complete_titles' work
                states = {emb.id: self._fit(emb, entries, report, progress, untitled)
                          for emb in self.embedders}
                fams = np.array([FAMILIES.index(e.card.base) for e in entries], np.int8)
                snapshot = Snapshot(entries, states, fams, report.faults)
                if prepare is not None:
                    prepare(snapshot)
                self.snapshot = snapshot
            report.total, report.ready_seconds = len(entries), time.perf_counter() - t0
            if ready is not None:
                ready(report)
            # The titles come after the snapshot is in use: they only refine the meaning check, and the
            # composer encodes those it lacks meanwhile (an older index has none: all are embedded once).
            self._complete_titles(snapshot, untitled, report, progress)
            # An empty library with no index yet writes nothing (no .stylus/ in a folder without LoRAs).
            changed = report.read or report.removed or len(entries) != len(old) \
                or any(report.titled.values()) or (entries and not os.path.isfile(self.path))
            if save and changed:
                report.saved = self._try_save()
            report.total, report.seconds = len(entries), time.perf_counter() - t0
            return report

    def _complete_titles(self, snapshot, untitled: dict, report: RefreshReport, progress) -> None:
        """Embed the titles _fit_dense_incremental left out and put them in the snapshot's states (one
        assignment each: a compose reads a state's titles whole or not at all). An encoder that fails here
        costs the titles only: the snapshot stays in use without them."""
        for emb in self.embedders:
            pending = untitled.get(emb.id)
            if pending is None:
                continue
            titles, rows = pending
            texts = [title_text(snapshot.entries[i].card) for i in rows]
            try:
                fresh = _embed_in_turns(emb, texts, progress)
            except (OSError, ValueError, RuntimeError) as e:
                self._message(f"Stylus: the card titles could not be embedded ({first_line(e)})")
                continue
            for j, i in enumerate(rows):
                titles[i] = fresh[j]
            snapshot.states[emb.id]["dense_titles"] = titles
            report.titled[emb.id] = len(rows)

    def _try_save(self) -> bool:
        try:
            self.save()
            return True
        except OSError as e:  # read-only folder, a folder where the file goes, a file given as the folder...
            reason = "not a folder" if os.path.isfile(self.cache_dir) else e.strerror or e.__class__.__name__
            where = f"{self.cache_dir} ({reason})"
            self._message(f"Stylus: could not write the index to {where}: results are not saved")
            return False

    def _scan(self, old: dict, report: RefreshReport, progress) -> list:
        prev_cards = {p: e.card for p, e in old.items()}
        entries, seen = [], set()
        for root in self.roots:
            res = scan(root, prev_cards, (lambda i, n: progress("scan", i, n)) if progress else None,
                       self.hidden)
            report.read += res.read
            report.reused += res.reused
            report.faults.extend(res.faults)
            for card in res.cards:
                seen.add(card.path)
                prior = old.get(card.path)
                if prior is not None and prior.card is card:
                    entries.append(prior)  # untouched file: keep its refined text too
                else:
                    refined = refine(card, self.captioners)
                    entries.append(Entry(card, refined, _sha(refined.text + "\x00" + refined.dense_text)))
        report.removed = len(set(old) - seen)
        return entries

    def _fit(self, emb: Embedder, entries: list, report: RefreshReport, progress, untitled: dict) -> dict:
        old_state = self.snapshot.states.get(emb.id)
        if emb.id == BM25.id:
            return _fit_lexical_incremental(emb, entries, self.snapshot.entries, old_state)
        return _fit_dense_incremental(emb, entries, self.snapshot.entries, old_state, report, progress,
                                      untitled)


def _fit_lexical_incremental(emb, entries, old_entries, old_state) -> dict:
    """Only changed documents are tokenized; corpus statistics (idf, average length) are recomputed
    exactly."""
    old_rows = {(e.card.path, e.text_sha): i for i, e in enumerate(old_entries)}
    usable = (old_state is not None and "bm25_tf" in old_state
              and int(old_state["bm25_n"][0]) == len(old_entries))
    reuse = [old_rows.get((e.card.path, e.text_sha), -1) if usable else -1 for e in entries]
    return emb.fit([e.refined.text for e in entries], old=old_state if usable else None, reuse=reuse)


def _fit_dense_incremental(emb, entries, old_entries, old_state, report, progress,
                           untitled: dict) -> dict:
    """Reuse the vectors of every entry whose text is unchanged; embed only the rest. Two per card: its
    purpose text (dense_vectors) and its title (dense_titles, for the composer's meaning check). The titles
    not at hand are left to _complete_titles, after the snapshot is in use: the state holds dense_titles
    only once every card has one (the composer encodes a title it lacks itself)."""
    from .embedding import faiss_bytes
    reuse = {}
    if old_state is not None and len(old_state.get("dense_vectors", ())) == len(old_entries):
        reuse = {(e.card.path, e.text_sha): i for i, e in enumerate(old_entries)}
    todo = [i for i, e in enumerate(entries) if (e.card.path, e.text_sha) not in reuse]
    fresh = emb.embed([entries[i].refined.dense_text for i in todo],
                      (lambda i, n: progress("embed", i, n)) if progress else None) if todo else None
    report.embedded[emb.id] = len(todo)
    dim = fresh.shape[1] if fresh is not None else old_state["dense_vectors"].shape[1] if old_state else 1
    vectors = np.zeros((len(entries), dim), np.float32)
    titles = np.zeros((len(entries), dim), np.float32)
    old_titles = old_state.get("dense_titles") if reuse else None
    rows = []
    for j, i in enumerate(todo):
        vectors[i] = fresh[j]
    for i, e in enumerate(entries):
        k = reuse.get((e.card.path, e.text_sha))
        if k is not None:
            vectors[i] = old_state["dense_vectors"][k]
        if k is not None and old_titles is not None and len(old_titles) == len(old_entries):
            titles[i] = old_titles[k]
        else:
            rows.append(i)
    state = {"dense_vectors": vectors, "dense_faiss": faiss_bytes(vectors)}
    if rows:
        untitled[emb.id] = (titles, rows)
    else:
        state["dense_titles"] = titles
    return state


TITLES_AT_ONCE = 256  # titles embedded per call: a compose waiting for the encoder waits for one such call


def _embed_in_turns(emb, texts: list, progress) -> np.ndarray:
    """emb.embed over the texts a slice at a time, so that composes, which use the same encoder while the
    snapshot is in use, get their turn between slices."""
    parts = []
    for start in range(0, len(texts), TITLES_AT_ONCE):
        parts.append(emb.embed(texts[start:start + TITLES_AT_ONCE]))
        if progress:
            progress("titles", min(start + TITLES_AT_ONCE, len(texts)), len(texts))
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def _read(path: str, key: str, embedder_ids: list) -> Snapshot:
    with np.load(path, allow_pickle=False) as z:  # never unpickle: an index file is data, not code
        meta = json.loads(bytes(z["meta"]).decode("utf-8"))
        if meta.get("format") != INDEX_FORMAT or meta.get("key") != key:
            raise ValueError(f"built for {meta.get('key')!r} format {meta.get('format')}, need {key!r}")
        entries = [Entry.from_dict(d) for d in json.loads(bytes(z["entries"]).decode("utf-8"))]
        faults = [Fault(**f) for f in json.loads(bytes(z["faults"]).decode("utf-8"))]
        states = {eid: {k.split("::", 1)[1]: z[k] for k in z.files if k.startswith(eid + "::")}
                  for eid in embedder_ids}
    for eid, state in states.items():
        if not state:
            raise ValueError(f"no arrays for embedder {eid}")
        _check_state(state, len(entries))
    fams = np.array([FAMILIES.index(e.card.base) for e in entries], np.int8)
    return Snapshot(entries, states, fams, faults)


def _check_state(state: dict, n: int) -> None:
    """The arrays must describe the same n cards and index each other within bounds: an index written by a
    buggy or foreign program would otherwise crash every query and every later refresh."""
    def need(ok, name: str, what: str) -> None:
        if not ok:
            raise ValueError(f"{name} {what}")
    if "bm25_n" in state:
        vocab, ptr, ids = state["bm25_vocab"], state["bm25_indptr"], state["bm25_ids"]
        need(state["bm25_n"].shape == (1,) and int(state["bm25_n"][0]) == n, "bm25_n", f"is not {n} cards")
        ptr_ok = ptr.ndim == 1 and len(ptr) == len(vocab) + 1 and ptr[0] == 0 and np.all(np.diff(ptr) >= 0)
        need(ptr_ok, "bm25_indptr", "does not match the vocabulary")
        need(vocab.ndim == 1 and np.all(vocab[1:] > vocab[:-1]), "bm25_vocab", "is not sorted")
        for name in ("bm25_ids", "bm25_tf", "bm25_weights"):
            need(state[name].shape == (int(ptr[-1]),), name, "does not match bm25_indptr")
        need(not len(ids) or (ids.min() >= 0 and ids.max() < n), "bm25_ids", "points past the cards")
        need(np.all(np.isfinite(state["bm25_weights"])), "bm25_weights", "are not finite")
    if "dense_vectors" in state:
        vectors = state["dense_vectors"]
        need(vectors.ndim == 2 and len(vectors) == n and np.all(np.isfinite(vectors)), "dense_vectors",
             f"are not {n} finite vectors")
        need("dense_faiss" in state and state["dense_faiss"].ndim == 1, "dense_faiss", "is missing")
        titles = state.get("dense_titles")  # absent from an index saved before titles were kept
        need(titles is None or titles.shape == vectors.shape and np.all(np.isfinite(titles)), "dense_titles",
             f"are not {n} finite vectors")


def _remove_stale_tmp(folder: str) -> None:
    """Temp files of runs killed mid-save; a recent one may be another process's save in progress."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(TMP_PREFIX) and n.endswith(TMP_SUFFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            if os.path.isfile(path) and time.time() - os.path.getmtime(path) > STALE_TMP_SECONDS:
                os.unlink(path)
        except OSError:
            continue


def _json_bytes(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, ensure_ascii=False).encode("utf-8"), np.uint8)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text)
