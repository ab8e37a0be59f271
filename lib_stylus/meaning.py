"""What a prompt's words mean, beyond the words: the index's dense encoder (all-MiniLM-L6-v2 over each
card's purpose text, refiner.purpose_text) compared with a prompt task. A common word matches many cards in
many senses ("clouds" the sky, "Clouds - Style" an art style, "Neon" a character); the composer keeps a
common-word match only when the task and the card's purpose are close in meaning. Rare words (a character's
name, "qipao") need no such check.

Task vectors are cached: a prompt is composed again for every batch and seed, and its segments repeat."""
from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .errors import first_line
from .refiner import title_text

CACHE = 4096  # task texts kept (a vector is 1.5 KB)
log = logging.getLogger("stylus")


class EncoderUnavailable(Exception):
    """The sentence encoder could not be loaded or run (its folder deleted, truncated, of another shape)."""


@dataclass
class EncoderState:
    """What is remembered per sentence encoder, across composes and snapshots: the task vectors, and why the
    encoder cannot be used ("" while it can), so a broken model folder is not loaded again on every
    compose."""
    cache: OrderedDict = field(default_factory=OrderedDict)
    failed: str = ""


_STATES = weakref.WeakKeyDictionary()  # encoder -> EncoderState


def encoder_state(embedder) -> EncoderState:
    """The encoder's remembered state (made on first use; it goes with the encoder)."""
    state = _STATES.get(embedder)
    if state is None:
        state = _STATES[embedder] = EncoderState()
    return state


class Meaning:
    """One snapshot's card purpose vectors and the encoder for tasks (its EncoderState shared across
    snapshots)."""

    def __init__(self, embedder, vectors: np.ndarray, titles: np.ndarray | None = None):
        """``vectors``: each card's purpose vector; ``titles``: each card's title vector (None for an index
        saved before they were kept: title() encodes them as asked)."""
        self.embedder = embedder
        self.vectors = vectors
        self.titles = titles
        self.state = encoder_state(embedder)
        self._cache = self.state.cache

    def prefetch(self, texts) -> None:
        """Encode the texts not cached yet in one batch (one forward pass for a whole prompt's tasks)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if not todo:
            return
        if self.state.failed:
            raise EncoderUnavailable(self.state.failed)
        try:
            vectors = self.embedder.embed(todo)
        except (OSError, ValueError, RuntimeError) as e:  # transformers on a bad model folder
            where = getattr(self.embedder, "model_dir", "?")
            self.state.failed = f"the sentence encoder in {where} cannot be used ({first_line(e)})"
            raise EncoderUnavailable(self.state.failed) from None
        for text, v in zip(todo, vectors):
            self._cache[text] = v
        while len(self._cache) > CACHE:
            self._cache.popitem(last=False)

    def has(self, text: str) -> bool:
        """Whether the text's vector is at hand (no encoder pass for it)."""
        return text in self._cache

    def vector(self, text: str) -> np.ndarray:
        if text not in self._cache:
            self.prefetch([text])
        self._cache.move_to_end(text)
        return self._cache[text]

    def everyday(self) -> frozenset:
        """The language's common words, as the encoder's vocabulary holds them whole (empty when it cannot
        say)."""
        if self.state.failed:
            return frozenset()
        try:
            return self.embedder.words()
        except (AttributeError, OSError, ValueError, RuntimeError):
            return frozenset()

    def title(self, doc: int, card) -> np.ndarray:
        """The vector of card ``doc``'s title (refiner.title_text), from the index when it holds them."""
        if self.titles is not None:
            return self.titles[doc]
        return self.vector(title_text(card))

    def similarity(self, text: str, docs: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``text`` to the purpose of each card row in ``docs``."""
        return self.vectors[docs] @ self.vector(text)


def meaning_of(snapshot, index) -> Meaning | None:
    """The snapshot's Meaning when its index has a dense encoder, else None (lexical: words only). The task
    vectors are kept per encoder (encoder_state), so they outlive one compose and one snapshot."""
    dense = next((e for e in getattr(index, "embedders", ()) if e.id != "bm25" and hasattr(e, "embed")), None)
    state = snapshot.states.get(dense.id) if dense is not None else None
    if state is None or "dense_vectors" not in state or len(state["dense_vectors"]) != len(snapshot.entries):
        return None
    titles = state.get("dense_titles")
    return Meaning(dense, state["dense_vectors"], titles if titles is not None and len(titles) else None)
