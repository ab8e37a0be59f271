"""The one Stylus service of a web UI process: the LoRA index (refreshed in the background, never at import),
the composer, and status for the API. A generation during indexing uses the last complete index.

The `hybrid` embedder's sentence encoder (encoder.py) may not be on disk yet: until it is, the service indexes
and composes lexically (BM25 alone); once it arrives, the next refresh builds the hybrid index in the
background, and the lexical one serves until that one is ready. GET /stylus/v1/status tells which
("embedder", "encoder")."""
from __future__ import annotations

import logging
import threading
import time

from .. import embedding
from ..composer import Composer, prepare
from ..index import LibraryIndex, Snapshot
from ..llm_composer import LLMComposer
from ..retriever import Retriever
from . import host, settings
from .encoder import SentenceEncoder

log = logging.getLogger("stylus")


class StylusService:
    def __init__(self):
        self._lock = threading.Lock()
        self._index: LibraryIndex | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()  # set once the running refresh's snapshot is in use (or it failed)
        self._running = False
        self._again = False  # asked for while the running refresh was saving
        self._foreground = False
        self._failed: tuple | None = None  # the index a refresh failed on: not tried again until asked
        self._attempt: tuple | None = None  # what the running refresh builds
        self.status = {"state": "not started", "cards": 0, "faults": 0, "seconds": 0.0, "message": "",
                       "updated": 0.0, "embedder": ""}
        self.encoder = SentenceEncoder(self.status, self._encoder_arrived)

    # ---- index ---------------------------------------------------------------------------------------------
    def index(self) -> LibraryIndex:
        """The index composes read: the last one whose snapshot is complete. Changed settings, or an encoder
        that arrived, start a background refresh; this index serves until that one's snapshot is ready."""
        with self._lock:
            wanted = self._wanted()
            if self._index is None:
                self._index = self._open(wanted, None)
                self.status["embedder"] = _kind(self._index)
            index = self._index
            stale = index._stylus_key != wanted and wanted != self._failed
        if stale:
            self.refresh()
        return index

    def _wanted(self, retry: bool = False) -> tuple:
        """What the index should be now: LoRA folders, cache folder, the encoder's folder (None: lexical)."""
        return tuple(host.lora_dirs()), host.cache_dir(), self.encoder.folder(retry)

    def _open(self, wanted: tuple, current: LibraryIndex | None) -> LibraryIndex:
        """The index for ``wanted``, as saved; without a saved one it starts from ``current``'s cards and
        their lexical index, so a switch to the hybrid index reads no LoRA file again and only embeds."""
        roots, cache, encoder = wanted
        dense = [embedding.DenseEmbedder(encoder, guard=host.model_loading)] if encoder else []
        embedders = [embedding.BM25()] + dense
        index = LibraryIndex(list(roots), cache, embedders, hidden=host.list_hidden_files())
        index._stylus_key = wanted
        if not index.load() and current is not None and current.roots == index.roots:
            old = current.snapshot
            states = {k: v for k, v in old.states.items() if k in {e.id for e in embedders}}
            index.snapshot = Snapshot(old.entries, states, old.families, old.faults)
        return index

    def refresh(self, wait: bool = False, retry: bool = False, generation: bool = False) -> dict:
        """Start a background refresh (one at a time); with wait=True, block until its snapshot is in use.
        ``retry`` (the user's own refresh, POST /stylus/v1/refresh): try again what failed this session, the
        encoder's download included. ``generation``: asked by a generation that found new LoRA files, which
        waits for an incremental refresh but not for a switch of index."""
        with self._lock:
            if retry:
                self._failed = None
                self._wanted(retry=True)
            if not self._running:
                self._running = True
                self._attempt = None  # until the new refresh has chosen its target
                self._ready = threading.Event()
                self._thread = threading.Thread(target=self._refreshes, name="stylus-index", daemon=True)
                self._thread.start()
            elif self._ready.is_set():  # the running one is in use and only saving: another one follows it
                self._again = True
                self._ready = threading.Event()
            elif generation and self._switching():
                # A switch of index (the encoder arrived, a folder setting changed) embeds every card: a
                # generation does not wait a minute for it. The index in use serves; what the switch's scan
                # may have missed is indexed right after it.
                self._again = True
                wait = False
                log.info("Stylus: the %s index is being built; the index in use (%d cards) serves until it "
                         "is ready, and new LoRA files are indexed right after it", _kind_of(self._attempt),
                         len(self._index.snapshot.entries))
            ready = self._ready
        if wait:  # a generation waits on it: show the progress in its status line
            self._foreground = True
            try:
                ready.wait()  # until the new snapshot is in use: not for the index file's save
            finally:
                self._foreground = False
        return dict(self.status)

    def _refreshes(self) -> None:
        """The refresh thread: one refresh, and one more for each asked for while the last one was saving."""
        try:
            while True:
                with self._lock:
                    ready = self._ready
                self._refresh(ready)
                with self._lock:
                    if not self._again:
                        self._running = False
                        return
                    self._again = False
                    self._attempt = None
                    if self._ready.is_set():  # asked for during a switch, by a caller that did not wait
                        self._ready = threading.Event()
        except BaseException:  # e.g. the interpreter shutting down: a later refresh must still start
            with self._lock:
                self._running = False
            raise

    def _refresh(self, ready: threading.Event) -> None:
        self.status.update(state="indexing", message="")
        try:
            index = self._target()
            # the composer's indexes are built before the new snapshot is swapped in: the first compose after
            # a refresh waits for nothing, and none composes against a half-ready snapshot
            report = index.refresh(progress=self._progress, prepare=prepare,
                                   ready=lambda report: self._swap_in(index, report, ready))
            if report.faults:
                log.info("Stylus: %d LoRA files had problems (see GET /stylus/v1/status)", len(report.faults))
        except Exception as e:  # never take the web UI down over the index
            log.exception("Stylus: indexing failed")
            self.status.update(state="error", message=f"{e.__class__.__name__}: {e}")
            with self._lock:
                self._failed = self._attempt  # composes do not start it again and again
        finally:
            self.status.pop("progress", None)
            ready.set()

    def _switching(self) -> bool:
        """The running refresh builds another index than the one in use, and that one has cards to serve.
        Under self._lock."""
        current = self._index
        return (self._attempt is not None and current is not None and bool(current.snapshot.entries)
                and self._attempt != current._stylus_key)

    def _target(self) -> LibraryIndex:
        """The index this refresh brings up to date: the one in use, or a new one when the settings or the
        encoder changed. Its sentence encoder is loaded here, never in a compose."""
        with self._lock:
            wanted = self._attempt = self._wanted()
            current = self._index
        index = current
        if current is None or current._stylus_key != wanted:
            index = self._open(wanted, current)
        if wanted[2] is None or self.encoder.loads(index.embedders[-1]):
            return index
        return self._target()  # the encoder is set aside: lexical

    def _swap_in(self, index: LibraryIndex, report, ready: threading.Event) -> None:
        with self._lock:
            self._index = index
        self.status.update(state="ready", cards=report.total, faults=len(report.faults),
                           seconds=round(report.ready_seconds, 2), updated=time.time(),
                           fault_lines=[f.line() for f in report.faults[:500]], embedder=_kind(index))
        if self.status["embedder"] == "hybrid":
            self.encoder.in_use(index.embedders[-1].model_dir)
        self.status.pop("progress", None)  # a finished refresh has no progress to show
        ready.set()

    def _progress(self, phase: str, done: int, total: int) -> None:
        self.status.update(progress=f"{phase} {done}/{total}")
        if self._foreground:
            host.state().textinfo = f"Stylus: indexing LoRAs ({phase} {done}/{total})"

    # ---- the sentence encoder ------------------------------------------------------------------------------
    def _encoder_arrived(self) -> None:
        """In the download's thread: a refresh that started before chose its embedders without the encoder,
        so it is awaited; then the next one builds the hybrid index."""
        with self._lock:
            running = self._thread if self._running else None
        if running is not None:
            running.join()
        self.refresh()

    # ---- composition ---------------------------------------------------------------------------------------
    def composer(self, kind: str = "local"):
        """The local composer, or the LLM composer (falling back to the local one) when chosen and
        configured."""
        local = Composer(Retriever(self.index()))
        url = str(host.opt("stylus_llm_url", "") or "").strip()
        if kind != "LLM endpoint" or not url:
            return local
        return LLMComposer(local, url, str(host.opt("stylus_llm_model", "") or ""),
                           settings.llm_key(), float(host.opt("stylus_llm_timeout", 20.0) or 20.0),
                           candidates=int(host.opt("stylus_top_k", 150) or 150))

    def compose(self, prompt: str, base: str | None = None, max_adapters: int = 4, composer: str = "local"):
        unknown = bool(host.opt("stylus_allow_unknown_base", False))
        comp = self.composer(composer).compose(prompt, base or host.loaded_base(), unknown, max_adapters)
        if composer == "LLM endpoint" and not str(host.opt("stylus_llm_url", "") or "").strip():
            comp.fallback = "no LLM endpoint configured (Settings > Stylus): used the local composer"
        return comp


def _kind(index: LibraryIndex) -> str:
    return "hybrid" if len(index.embedders) > 1 else "lexical"


def _kind_of(wanted: tuple) -> str:
    """The kind of index a _wanted() key asks for (its last item: the encoder's folder, or None)."""
    return "hybrid" if wanted[2] else "lexical"


SERVICE = StylusService()
