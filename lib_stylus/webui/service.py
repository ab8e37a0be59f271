"""The one Stylus service of a web UI process: the LoRA index (refreshed in the background, never at import),
the composer, and status for the API. A generation during indexing uses the last complete index."""
from __future__ import annotations

import logging
import threading
import time

from .. import embedding
from ..composer import Composer, prepare
from ..index import LibraryIndex
from ..llm_composer import LLMComposer
from ..retriever import Retriever
from . import host, models, settings

log = logging.getLogger("stylus")


class StylusService:
    def __init__(self):
        self._lock = threading.Lock()
        self._index: LibraryIndex | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()  # set once the running refresh's snapshot is in use (or it failed)
        self._foreground = False
        self.status = {"state": "not started", "cards": 0, "faults": 0, "seconds": 0.0, "message": "", "updated": 0.0}

    # ---- index ---------------------------------------------------------------------------------------------
    def _embedders(self) -> list:
        if host.opt("stylus_embedder", "hybrid") != "hybrid":
            return [embedding.BM25()]
        try:
            return [embedding.BM25(), embedding.DenseEmbedder(models.sentence_encoder())]
        except models.ModelUnavailable as e:
            self.status["message"] = f"{e} Using the lexical embedder meanwhile."
            log.warning("Stylus: %s", self.status["message"])
            return [embedding.BM25()]

    def index(self) -> LibraryIndex:
        """The current index object (settings changes take effect at the next refresh)."""
        with self._lock:
            wanted = (tuple(host.lora_dirs()), host.cache_dir(), host.opt("stylus_embedder", "hybrid"))
            if self._index is None or getattr(self._index, "_stylus_key", None) != wanted:
                index = LibraryIndex(list(wanted[0]), wanted[1], self._embedders(), hidden=host.list_hidden_files())
                index._stylus_key = wanted
                index.load()
                self._index = index
            return self._index

    def refresh(self, wait: bool = False) -> dict:
        """Start a background refresh (one at a time); with wait=True, block until it is done."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            if not running:
                self._ready = threading.Event()
                self._thread = threading.Thread(target=self._refresh, args=(self._ready,),
                                                name="stylus-index", daemon=True)
                self._thread.start()
            ready = self._ready
        if wait:  # a generation waits on it: show the progress in its status line
            self._foreground = True
            try:
                ready.wait()  # until the new snapshot is in use: not for the index file's save
            finally:
                self._foreground = False
        return dict(self.status)

    def _refresh(self, ready: threading.Event) -> None:
        self.status.update(state="indexing", message="")

        def swapped_in(report) -> None:
            self.status.update(state="ready", cards=report.total, faults=len(report.faults),
                               seconds=round(report.ready_seconds, 2), updated=time.time(),
                               fault_lines=[f.line() for f in report.faults[:500]])
            self.status.pop("progress", None)  # a finished refresh has no progress to show
            ready.set()
        try:
            index = self.index()
            # the composer's indexes are built before the new snapshot is swapped in: the first compose after
            # a refresh waits for nothing, and none composes against a half-ready snapshot
            report = index.refresh(progress=self._progress, prepare=prepare, ready=swapped_in)
            if report.faults:
                log.info("Stylus: %d LoRA files had problems (see GET /stylus/v1/status)", len(report.faults))
        except Exception as e:  # never take the web UI down over the index
            log.exception("Stylus: indexing failed")
            self.status.update(state="error", message=f"{e.__class__.__name__}: {e}")
        finally:
            self.status.pop("progress", None)
            ready.set()

    def _progress(self, phase: str, done: int, total: int) -> None:
        self.status.update(progress=f"{phase} {done}/{total}")
        if self._foreground:
            host.state().textinfo = f"Stylus: indexing LoRAs ({phase} {done}/{total})"

    # ---- composition ---------------------------------------------------------------------------------------
    def composer(self, kind: str = "local"):
        """The local composer, or the LLM composer (falling back to the local one) when chosen and configured."""
        local = Composer(Retriever(self.index()))
        url = str(host.opt("stylus_llm_url", "") or "").strip()
        if kind != "LLM endpoint" or not url:
            return local
        return LLMComposer(local, url, str(host.opt("stylus_llm_model", "") or ""),
                           settings.llm_key(), float(host.opt("stylus_llm_timeout", 20.0) or 20.0),
                           candidates=int(host.opt("stylus_top_k", 150) or 150))

    def compose(self, prompt: str, base: str | None = None, max_adapters: int = 4, composer: str = "local"):
        comp = self.composer(composer).compose(prompt, base or host.loaded_base(),
                                               bool(host.opt("stylus_allow_unknown_base", False)), max_adapters)
        if composer == "LLM endpoint" and not str(host.opt("stylus_llm_url", "") or "").strip():
            comp.fallback = "no LLM endpoint configured (Settings > Stylus): used the local composer"
        return comp


SERVICE = StylusService()
