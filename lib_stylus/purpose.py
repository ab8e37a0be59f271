"""What each adapter is FOR, as a searchable index: the phrases of its name, title, tags and trigger words (its
"main purpose"), apart from its description and sample prompts. The composer matches a task against this, so an
adapter that only mentions a word in its description, or has the task's words scattered over unrelated tags,
never counts as made for the task.

Each phrase is a "unit" (one tag, the title, the file stem, one trigger word). A task matches an adapter by its
best unit: the task's words found in that unit, scaled by how much of the unit they explain. Built once per
index snapshot (kept on it); a task is then a few short posting lists and one bincount."""
from __future__ import annotations

import re

import numpy as np

from .embedding import tokenize

# Strength of a phrase by where the card has it: the name says what the adapter is for; tags are the author's
# labels; trigger words are often made-up tokens or generic ("1girl").
NAME, TAG, TRIGGER = 1.0, 0.9, 0.6
# Focus (share of the cards using a word that have it in a purpose phrase) is smoothed towards a prior so a word
# seen on two cards does not swing from 0 to 1; the floor keeps scene words ("fishing", "lake") in a task's
# total, so one generic hit cannot explain a whole scene.
FOCUS_PRIOR, FOCUS_SMOOTH, FOCUS_FLOOR = 0.3, 5.0, 0.25
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def name_words(text: str) -> list[str]:
    """Tokens of a file stem or title: 'stone_statue', 'StoneStatue-v2' -> ['stone', 'statue', 'v2']."""
    return tokenize(_CAMEL.sub(" ", text).replace("_", " "))


def card_units(card) -> dict:
    """The card's purpose phrases as {frozenset(tokens): strength} (the strongest field wins a duplicate)."""
    units: dict = {}
    phrases = [(NAME, card.title), (NAME, card.stem)] + [(TAG, t) for t in card.tags] + \
              [(TRIGGER, w) for w in card.trigger_words]
    for strength, text in phrases:
        toks = frozenset(name_words(text))
        if toks and strength > units.get(toks, 0.0):
            units[toks] = strength
    return units


class PurposeIndex:
    def __init__(self, entries, full_state: dict | None = None):
        self.n = len(entries)
        self.entries = entries
        self.stems = [e.card.stem for e in entries]
        self.row = {id(e): i for i, e in enumerate(entries)}  # Entry -> document row
        self.by_name: dict[str, list] = {}  # case-folded alias / stem -> rows (LoRAs already tagged in a prompt)
        for i, e in enumerate(entries):
            for name in {e.card.alias.casefold(), e.card.stem.casefold()}:
                self.by_name.setdefault(name, []).append(i)
        vocab: dict[str, int] = {}
        unit_doc, unit_strength, post_tok, post_unit = [], [], [], []
        head_df: dict[int, int] = {}
        for doc, entry in enumerate(entries):
            seen = set()
            for toks, strength in card_units(entry.card).items():
                u = len(unit_doc)
                unit_doc.append(doc)
                unit_strength.append(strength)
                for tok in toks:
                    t = vocab.setdefault(tok, len(vocab))
                    post_tok.append(t)
                    post_unit.append(u)
                    seen.add(t)
            for t in seen:
                head_df[t] = head_df.get(t, 0) + 1
        self.vocab = vocab
        self.unit_doc = np.array(unit_doc, np.int32)
        self.unit_strength = np.array(unit_strength, np.float32)
        post_tok, post_unit = np.array(post_tok, np.int64), np.array(post_unit, np.int32)
        order = np.argsort(post_tok, kind="stable")
        self.post_unit = post_unit[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(post_tok, minlength=len(vocab)))])
        self.head_df = np.array([head_df.get(i, 0) for i in range(len(vocab))], np.float32)
        self._full = _full_df_lookup(full_state)
        self.tok_weight = np.array([self.weight(t) for t in vocab], np.float32)
        self.unit_total = np.bincount(self.post_unit, weights=self.tok_weight[post_tok[order]],
                                      minlength=len(unit_doc)).astype(np.float32)

    # ---- word statistics ---------------------------------------------------------------------------------
    def _head_df(self, tok: str) -> int:
        i = self.vocab.get(tok)
        return 0 if i is None else int(self.head_df[i])

    def full_df(self, tok: str) -> int:
        return max(self._full(tok), self._head_df(tok))

    def idf(self, tok: str) -> float:
        """Rarity in the whole library text: a rare word says more about what the prompt wants."""
        return float(np.log(1 + (self.n + 0.5) / (self.full_df(tok) + 0.5)))

    def focus(self, tok: str) -> float:
        """Share of the adapters using a word that have it in a purpose phrase: ~1 'naruto', ~0 'walking'."""
        return (self._head_df(tok) + FOCUS_PRIOR * FOCUS_SMOOTH) / (self.full_df(tok) + FOCUS_SMOOTH)

    def weight(self, tok: str) -> float:
        """How much a prompt word asks for an adapter: rare (idf) and usually an adapter's purpose (focus)."""
        return self.idf(tok) * max(self.focus(tok), FOCUS_FLOOR)

    def weights(self, tokens: list[str]) -> list[float]:
        return [float(self.tok_weight[self.vocab[t]]) if t in self.vocab else self.weight(t) for t in tokens]

    # ---- matching ----------------------------------------------------------------------------------------
    def match(self, tokens: list[str]) -> np.ndarray:
        """Per document: its best unit's matched task weight x field strength x sqrt(share of the unit
        matched) - a tag 'street fighter' fully matched beats a title 'DQ3 Fighter' matched on one word."""
        out = np.zeros(self.n, np.float32)
        ids = [self.vocab[t] for t in dict.fromkeys(tokens) if t in self.vocab]
        if not ids:
            return out
        units = np.concatenate([self.post_unit[self.indptr[i]:self.indptr[i + 1]] for i in ids])
        w = np.concatenate([np.full(self.indptr[i + 1] - self.indptr[i], self.tok_weight[i], np.float32)
                            for i in ids])
        uniq, inv = np.unique(units, return_inverse=True)
        got = np.bincount(inv, weights=w).astype(np.float32)
        share = np.minimum(got / np.maximum(self.unit_total[uniq], 1e-6), 1.0)
        np.maximum.at(out, self.unit_doc[uniq], got * self.unit_strength[uniq] * np.sqrt(share))
        return out


def matched_words(tokens: list[str], card) -> list[str]:
    """The task words found in the card's purpose phrases (for explanations)."""
    words = set().union(*card_units(card))  # union of no sets is the empty set
    return [t for t in tokens if t in words]


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
