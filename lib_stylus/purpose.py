"""What each adapter is FOR, as a searchable index: the words of its name, title, tags and trigger words (its
"main purpose"), apart from its description and sample prompts. The composer matches a task against this, so an
adapter that only mentions a word somewhere in its description never counts as made for that word.

Built once per index snapshot (cached on it), then a task is one bincount over short posting lists."""
from __future__ import annotations

import re

import numpy as np

from .embedding import tokenize

# Strength of a word by where the card has it: the name says what the adapter is for; tags are the author's
# labels; trigger words are often made-up tokens or generic ("1girl").
FIELD_STRENGTH = (("name", 1.0), ("tags", 0.9), ("triggers", 0.6))
FOCUS_PRIOR, FOCUS_SMOOTH = 0.3, 5.0
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def name_words(text: str) -> list[str]:
    """Tokens of a file stem or title: 'stone_statue', 'StoneStatue-v2' -> ['stone', 'statue', 'v2']."""
    return tokenize(_CAMEL.sub(" ", text).replace("_", " "))


def card_fields(card) -> dict:
    """Token sets per field, the way the composer reads an adapter's purpose."""
    return {"name": set(name_words(card.title)) | set(name_words(card.stem)),
            "tags": {t for tag in card.tags for t in name_words(tag)},
            "triggers": {t for w in card.trigger_words for t in name_words(w)}}


class PurposeIndex:
    """CSR postings term -> (doc, strength), plus per-term document frequencies in the purpose fields and in the
    full indexed text (the BM25 state), whose ratio says how often a word is an adapter's purpose when used."""

    def __init__(self, entries, full_state: dict | None = None):
        strengths: dict[str, dict[int, float]] = {}
        for doc, entry in enumerate(entries):
            fields = card_fields(entry.card)
            for field, strength in reversed(FIELD_STRENGTH):  # strongest field written last, wins
                for tok in fields[field]:
                    strengths.setdefault(tok, {})[doc] = strength
        self.n = len(entries)
        self.stems = [e.card.stem for e in entries]
        self.row = {id(e): i for i, e in enumerate(entries)}  # Entry -> document row
        self.vocab = {t: i for i, t in enumerate(strengths)}
        lists = list(strengths.values())
        self.indptr = np.concatenate([[0], np.cumsum([len(d) for d in lists])]).astype(np.int64)
        self.docs = np.fromiter((d for m in lists for d in m), np.int32, int(self.indptr[-1]))
        self.strength = np.fromiter((s for m in lists for s in m.values()), np.float32, int(self.indptr[-1]))
        self.df = np.diff(self.indptr).astype(np.float32)
        self._full = _full_df_lookup(full_state)

    def head_df(self, tok: str) -> int:
        i = self.vocab.get(tok)
        return 0 if i is None else int(self.df[i])

    def full_df(self, tok: str) -> int:
        return max(self._full(tok), self.head_df(tok))

    def idf(self, tok: str) -> float:
        """Rarity in the whole library text: a rare word says more about what the prompt wants."""
        return float(np.log(1 + (self.n + 0.5) / (self.full_df(tok) + 0.5)))

    def focus(self, tok: str) -> float:
        """Share of the adapters using a word that have it in their name/tags: ~1 for 'naruto', ~0 for 'walking'.
        Smoothed towards FOCUS_PRIOR so a word seen on two cards does not swing from 0 to 1."""
        return (self.head_df(tok) + FOCUS_PRIOR * FOCUS_SMOOTH) / (self.full_df(tok) + FOCUS_SMOOTH)

    def weight(self, tok: str, floor: float) -> float:
        """How much a prompt word asks for an adapter: rare (idf) and usually an adapter's purpose (focus).
        The floor keeps scene words ('fishing', 'lake') in a task's total, so one generic hit cannot explain
        a whole scene."""
        return self.idf(tok) * max(self.focus(tok), floor)

    def has(self, tok: str, doc: int) -> bool:
        i = self.vocab.get(tok)
        return i is not None and doc in self.docs[self.indptr[i]:self.indptr[i + 1]]

    def match(self, tokens: list[str], weights: list[float]) -> np.ndarray:
        """Per document: sum of weight x field strength over the task tokens in its purpose fields."""
        out = np.zeros(self.n, np.float32)
        for tok, w in zip(tokens, weights):
            i = self.vocab.get(tok)
            if i is None or w <= 0:
                continue
            a, b = self.indptr[i], self.indptr[i + 1]
            out[self.docs[a:b]] += w * self.strength[a:b]
        return out


def purpose_index(snapshot) -> PurposeIndex:
    """The PurposeIndex of an index snapshot, built on first use and kept on it: a refresh swaps in a new
    snapshot, which gets a new one."""
    idx = getattr(snapshot, "_stylus_purpose", None)
    if idx is None:
        idx = PurposeIndex(snapshot.entries, snapshot.states.get("bm25"))
        snapshot._stylus_purpose = idx
    return idx


def _full_df_lookup(state: dict | None):
    if not state or "bm25_vocab" not in state:
        return lambda tok: 0
    vocab, indptr = state["bm25_vocab"], state["bm25_indptr"]

    def df(tok: str) -> int:
        i = int(np.searchsorted(vocab, tok))
        return int(indptr[i + 1] - indptr[i]) if i < len(vocab) and vocab[i] == tok else 0
    return df
