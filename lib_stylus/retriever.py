"""The paper's retriever: prompt -> top-K adapters, only those made for the loaded base model,
fusing the lexical and dense rankings."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .index import Entry, LibraryIndex

DEFAULT_TOP_K = 150  # as the paper
FUSION_K = 60        # reciprocal-rank fusion constant
# the dense ranking's share in the fusion (chosen on the bench dev set from 0.5 / 0.25 / 0.1)
DENSE_WEIGHT = 0.25
_TAG = re.compile(r"<[^>]*>")


@dataclass
class Candidate:
    entry: Entry
    score: float
    lexical: float = 0.0
    dense: float = 0.0
    rank: int = 0

    @property
    def card(self):
        return self.entry.card


def allowed_families(base: str, allow_unknown: bool = False) -> tuple:
    """A LoRA for another base model merges partly and silently: never offer one. Unknown ones only on
    request."""
    return (base, "unknown") if allow_unknown else (base,)


def query_text(prompt: str) -> str:
    """The prompt's words without extra-network tags and emphasis syntax."""
    text = _TAG.sub(" ", prompt).replace("BREAK", ",")
    return re.sub(r":\s*-?\d+(?:\.\d+)?|[()\[\]{}|\\]", " ", text)


class Retriever:
    def __init__(self, index: LibraryIndex, weights: dict | None = None):
        self.index = index
        # Lexical evidence dominates: LoRA names and tags are rare words a general sentence encoder blurs.
        self.weights = weights or {"bm25": 1.0, "dense": DENSE_WEIGHT}

    def retrieve(self, prompt: str, base: str, k: int = DEFAULT_TOP_K,
                 allow_unknown: bool = False) -> list[Candidate]:
        snap = self.index.snapshot  # one consistent view even while a refresh runs
        if not snap.entries:
            return []
        allowed = snap.allowed(allowed_families(base, allow_unknown))
        text = query_text(prompt)
        fused: dict[int, float] = {}
        parts: dict[str, dict[int, float]] = {}
        for emb in self.index.embedders:
            ids, scores = emb.search(snap.states[emb.id], text, allowed, max(k, 50))
            parts[emb.id] = dict(zip(ids.tolist(), scores.tolist()))
            w = self.weights.get(emb.id, self.weights.get("dense", DENSE_WEIGHT) if emb.id != "bm25" else 1.0)
            for rank, i in enumerate(ids.tolist()):
                fused[i] = fused.get(i, 0.0) + w / (FUSION_K + rank + 1)
        best = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        lex = parts.get("bm25", {})
        dense = next((v for key, v in parts.items() if key != "bm25"), {})
        return [Candidate(snap.entries[i], s, lex.get(i, 0.0), dense.get(i, 0.0), r + 1)
                for r, (i, s) in enumerate(best)]
