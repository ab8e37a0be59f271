"""What each adapter is FOR, as a searchable index of its purpose phrases: the pieces of its title, its file
stem, its specific tags and its main (first) trigger word, cleaned of version and base-model words ("XL",
"SDXL", "Pony", "v1.5", "LoRA"). Attribute triggers ("1girl, red eyes, long hair") and the description are not
purposes: they say what the adapter's own images look like, not what it is for.

A prompt segment asks for an adapter when it holds (nearly) all of one of its purpose phrases: the share of
the phrase's word weight found in the segment, times the phrase's field strength. The segment's other words do
not dilute it (a plain sentence asks for "spaceship" as much as a one-word tag does), and a phrase half asked
("cramped" of "cramped alley") stays half. Built once per index snapshot (kept on it); a segment is then a few
short posting lists and one bincount."""
from __future__ import annotations

import re

import numpy as np

from .embedding import tokenize
from .text import collections_deferred

# Strength of a phrase by where the card has it: the title says what the adapter is for; the stem is the title
# with file-name noise; tags are the author's labels (noisier); the main trigger is often a made-up token.
NAME, STEM, TAG, TRIGGER = 1.0, 0.9, 0.8, 0.9
# PurposeIndex.unit_kind: what a purpose phrase is of its card, as an index into KINDS
KINDS = ("name", "stem", "tag", "trigger")
NAME_KIND = KINDS.index("name")
TAG_KIND = KINDS.index("tag")
# Focus (share of the cards using a word that have it in a purpose phrase) is smoothed towards a prior so a
# word seen on two cards does not swing from 0 to 1; the floor keeps every word some weight.
FOCUS_PRIOR, FOCUS_SMOOTH, FOCUS_FLOOR = 0.3, 5.0, 0.25
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+")
_LATIN = re.compile(r"[A-Za-z]")
_HTML = re.compile(r"<[^<>]*>")
_TITLE_SEPARATORS = re.compile(r"[|/\\()\[\]{}（）【】｜:;,]+|\s[-–—~]\s")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
# Title pieces: "[Genshin Impact] Shogun Raiden | Character LoRA (v2)" -> three phrases.
_PIECES = re.compile(r"[|\[\](){}【】（）｜/:,;]|\s[-–—~]\s|\s\+\s")
_BRACKETED = re.compile(r"\(([^()]*)\)|\[([^\[\]]*)\]|【([^【】]*)】|（([^（）]*)）|([^()\[\]【】（）]+)")
# Words about the file, not the picture: adapter formats, base models, versions, training runs.
ADAPTER_WORDS = frozenset(
    "lora locon lycoris loha lokr lyco dora lora_ slider sliders sd sd1 sd15 sd2 sd21 sdxl xl pony ponyxl "
    "illustrious noobai model models version ver final beta alpha test fp16 fp32 bf16 safetensors ckpt "
    "offset edition update updated epoch ep step steps".split())
_FORMAT = re.compile(r"(?i)(?<![a-z])(?:lora|locon|lycoris|loha|lokr|lyco|sdxl|sd ?1\.5)(?:'?s)?(?![a-z])")
# Packaging glued to a name, said about its maker: a series mark 'AI' written last onto the name
# ('SteampunkAI', 'DragonScaleAI [5MB]': 98 titles of the bench library, of every topic; a name's own word
# 'Ai' of 'Hoshino Ai' is written apart, and 'RedAI_玖芊柒' goes on with more of the name) and a possessive
# ("Zovya's Wet Hair", "LoRA Collection of Trauter's": 141 titles), whose lone 's' would count as a word of
# it;
# and the format phrase "LoRA extraction" (a LoRA extracted from a checkpoint: 9 titles). Name words only:
# plain_title (the encoder's text, cached with the index under REFINER_VERSION) is left as it was.
_PACKAGING = re.compile(r"(?<=[a-z])AI(?=\s|$)|(?<=[A-Za-z0-9])['’]s(?![A-Za-z])"
                        r"|(?i:(?<![a-z])lora\s+extract(?:ion)?(?![a-z]))")
_VERSION = re.compile(r"^(?:(?:v|ver|e|ep|epoch|step|r)\d[\da-z]*|\d+|"
                      r"\d+(?:e|ep|k|kb|mb|dim|steps?|epochs?))$")
# Civitai's own category and audience tags: every card of a kind carries them, so they name no purpose.
GENERIC_TAGS = frozenset(
    "anime character characters style styles concept concepts woman women girl girls female male man men "
    "sexy cute beautiful photorealistic realistic art style artstyle clothing clothes lora game character "
    "video game celebrity real person person people anime character anime girl portraits portrait "
    "illustration style lora tool tools objects object poses pose background backgrounds buildings building "
    "vehicle vehicles animals animal action 3d 2d base model photography photo art cartoon".split(" ")) | {
    "art style", "game character", "video game", "real person", "anime character", "anime girl", "style lora",
    "base model"}


def plain_title(name: str) -> str:
    """A title as words about the picture, for the sentence encoder: no format, base-model or version words
    ("LoRA", "XL", "v1.5", "000010"), and no CJK half of a bilingual title (the encoder reads English and the
    Latin half says the same): "Armor Suit(盔甲套装) LoRa" -> "Armor Suit"."""
    text = _FORMAT.sub(" ", _HTML.sub(" ", name))
    if len(_LATIN.findall(text)) >= 3:
        text = _CJK_RUN.sub(" ", text)
    out = []
    for piece in _TITLE_SEPARATORS.split(text):
        words = [w for w in piece.replace("_", " ").split() if not _noise(w)]
        if words:
            out.append(" ".join(words))
    return ", ".join(out) or name


def _noise(word: str) -> bool:
    core = word.strip(".,-–—~!?'\"*#").casefold()
    if not any(c.isalnum() for c in core) or core in ADAPTER_WORDS:
        return True
    return bool(_VERSION.match(core.replace(".", "")))


def name_words(text: str) -> list[str]:
    """Tokens of a file stem or title: 'stone_statue', 'StoneStatue-v2' -> ['stone', 'statue', 'v2']."""
    return tokenize(_CAMEL.sub(" ", text).replace("_", " "))


def stem(word: str) -> str:
    """A light suffix fold for matching a prompt to purpose phrases (both sides): 'lighting' and 'lit' stay
    apart, but 'lighting' -> 'light', 'glowing' -> 'glow', 'running' -> 'run', and 'dance', 'dancing' ->
    'danc'."""
    for suffix in ("ing",):  # not "-ed": 'ruined' is no 'ruin', 'painted' rarely asks for 'paint'
        if len(word) - len(suffix) >= 4 and word.endswith(suffix):
            base = word[:-len(suffix)]
            if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "aeiouls":
                base = base[:-1]  # running -> run, but 'spell', 'grass' keep their double letters
            return base
    if len(word) > 4 and word.endswith("e") and word[-2] not in "aeiou":
        return word[:-1]  # dance / dancing / danced -> danc
    return word


def prompt_words(tokens) -> list[str]:
    """Tokens (embedding.tokenize) of a prompt segment, folded like purpose phrases."""
    return [stem(t) for t in tokens]


def purpose_words(text: str) -> list[str]:
    """name_words without version, format, base-model and packaging words: 'Cyberpunk XL v1.5 LoRA' ->
    ['cyberpunk'], 'SteampunkAI LoRA extraction' -> ['steampunk']; folded by stem()."""
    text = _FORMAT.sub(" ", _PACKAGING.sub(" ", text or ""))  # before the camel-case split: not 'lo ra'
    return [stem(w) for w in name_words(text) if w not in ADAPTER_WORDS and not _VERSION.match(w)]


def title_pieces(title: str) -> list[tuple]:
    """(piece, bracketed): a bracketed piece qualifies the name ("Chun-Li (Street Fighter)", "[Genshin Impact]
    Shogun Raiden") - a franchise, an author, a version - and so never names a character itself."""
    out = []
    for m in _BRACKETED.finditer(title or ""):
        inner, outer = m.group(1) or m.group(2) or m.group(3) or m.group(4), m.group(5)
        for piece in _PIECES.split(inner or outer or ""):
            if piece.strip():
                out.append((piece.strip(), inner is not None))
    return out


# Words that say what kind of file a card is, not what it is for: a phrase of these alone ("Style" of
# "Clouds - Style", "Concept", "Character LoRA") names no purpose (folded as purpose phrases are).
KIND_WORDS = frozenset(stem(w) for w in (
    "style styles artstyle art concept concepts character characters lora model models tool tools object "
    "objects pose poses clothing clothes background backgrounds anime").split())


def card_units(card, main_trigger: str | None = None) -> dict:
    """The card's purpose phrases as {frozenset(tokens): (strength, field, text as written)} (the strongest
    field wins a duplicate). ``main_trigger``: the trigger that names the purpose (default: the first trigger
    word)."""
    units: dict = {}
    if main_trigger is None:
        main_trigger = card.trigger_words[0] if card.trigger_words else ""
    phrases = [(NAME, "name", p) for p, _ in title_pieces(card.title)] + [(STEM, "stem", card.stem)]
    phrases += [(TAG, "tag", t) for t in card.tags if t.casefold().strip() not in GENERIC_TAGS]
    if main_trigger:
        phrases.append((TRIGGER, "trigger", main_trigger))
    for strength, kind, text in phrases:
        for toks in _halves(purpose_words(text)):
            if toks <= KIND_WORDS:
                continue  # "Style" of "Clouds - Style", the Latin half of "style- ゲンツキ": no purpose
            if strength > units.get(toks, (0.0, ""))[0]:
                units[toks] = (strength, kind, text)
    return units


def _halves(words) -> list:
    """A bilingual phrase ("Cinematic 背景画风增强器") as its Latin and its CJK half, each a phrase of its own:
    a prompt asks in one language. A word that mixes both ("light柔和光線") gives each half its part."""
    latin = frozenset(latin_words(words))
    other = frozenset(p for w in words for p in _CJK_RUN.findall(w))
    return [latin, other] if latin and other else [frozenset(words)]


def latin_words(words) -> list:
    """The Latin-script part of each word, words without one left out: ['light柔和光線', '神社'] -> ['light'].
    What is left of a CJK word as a number ('61' of '6合1', '12' of '12套外观') is a count or a version, as
    purpose_words takes a number written apart."""
    return [p for p in (_CJK_RUN.sub("", w) for w in words) if p and not _VERSION.match(p)]


class PurposeIndex:
    def __init__(self, entries, full_state: dict | None = None, main_trigger=None):
        """``main_trigger(card)``: the card's purpose-naming trigger or '' (default: its first trigger).
        What each card contributes is cut once per card (see _card_parts): a refresh keeps the card objects of
        unchanged files, so after a one-file edit only that card is cut again and the rest is array work."""
        self.n = len(entries)
        self.entries = entries
        self.stems = [e.card.stem for e in entries]
        self.row = {id(e): i for i, e in enumerate(entries)}  # Entry -> document row
        parts = _cards_parts(entries, main_trigger)
        # case-folded alias / stem -> rows (LoRAs already tagged in a prompt)
        self.by_name: dict[str, list] = {}
        for i, part in enumerate(parts):
            for name in part.names:
                self.by_name.setdefault(name, []).append(i)
        unit_toks = [toks for part in parts for toks in part.unit_toks]
        self.unit_toks = unit_toks
        self.unit_text = [text for part in parts for text in part.unit_text]  # as the card writes it
        counts = np.array([len(part.unit_toks) for part in parts], np.int64)
        self.unit_doc = np.repeat(np.arange(self.n, dtype=np.int32), counts)
        self.unit_strength = np.array([x for part in parts for x in part.unit_strength], np.float32)
        self.unit_kind = np.array([x for part in parts for x in part.unit_kind], np.int8)
        # The vocabulary in sorted order: the same ids however the library was built up (a word's id orders
        # the sum of a phrase's word weights, so ids that depend on history would change the last bit)
        flat = [tok for part in parts for toks in part.unit_toks for tok in toks]
        vocab = {tok: i for i, tok in enumerate(sorted(set(flat)))}
        self.vocab = vocab
        post_tok = np.fromiter(map(vocab.__getitem__, flat), np.int64, len(flat))
        sizes = np.fromiter((len(t) for t in unit_toks), np.int64, len(unit_toks))
        post_unit = np.repeat(np.arange(len(unit_toks), dtype=np.int32), sizes)
        order = np.argsort(post_tok, kind="stable")
        self.post_unit = post_unit[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(post_tok, minlength=len(vocab)))])
        # cards with the word in a purpose phrase: distinct (card, word) pairs
        pairs = np.unique(self.unit_doc[post_unit].astype(np.int64) * max(len(vocab), 1) + post_tok)
        self.head_df = np.bincount(pairs % max(len(vocab), 1), minlength=len(vocab)).astype(np.float32)
        self._full = _stem_df_lookup(full_state)
        self.tok_weight, self.tok_idf = self._word_weights(list(vocab))
        self.unit_total = np.bincount(self.post_unit, weights=self.tok_weight[post_tok[order]],
                                      minlength=len(unit_toks)).astype(np.float32)
        # How many cards share a phrase ("genshin impact": many; a character's name: few).
        phrase_ids: dict = {}
        phrase = np.fromiter((phrase_ids.setdefault(t, len(phrase_ids)) for t in unit_toks), np.int64,
                             len(unit_toks))
        shared = np.unique(phrase * max(self.n, 1) + self.unit_doc)
        per_phrase = np.bincount(shared // max(self.n, 1), minlength=len(phrase_ids)).astype(np.int32)
        self.unit_cards = per_phrase[phrase]
        # A card's whole name (its title without bracketed qualifiers, and its stem): how much of it a prompt
        # asks tells a card made for what the prompt wants ("Cyberpunk Elements") from one about something
        # more ("Fiona Frost | Spy x Family" for "spy x family").
        self.name_toks = [part.name_toks for part in parts]
        self._name_forms: dict = {}  # doc -> _names(doc), filled as composes ask
        self._heads: dict = {}  # unit -> unit_head(unit), filled as composes ask
        # The cards each word of a whole name belongs to (the words _names() checks): a prompt's common word
        # matches thousands of cards at 100,000, and most share no word of their name with it.
        flat = [word for part in parts for word in part.name_set]
        name_vocab: dict = {}
        ids = (name_vocab.setdefault(w, len(name_vocab)) for w in flat)
        post_word = np.fromiter(ids, np.int64, len(flat))
        sizes = np.fromiter((len(part.name_set) for part in parts), np.int64, len(parts))
        post_doc = np.repeat(np.arange(self.n, dtype=np.int64), sizes)
        self.name_vocab = name_vocab
        self.name_docs = post_doc[np.argsort(post_word, kind="stable")]
        self.name_indptr = np.concatenate([[0], np.cumsum(np.bincount(post_word, minlength=len(name_vocab)))])

    def _word_weights(self, words: list) -> tuple:
        """weight() and idf() of every vocabulary word at once (the same float64 arithmetic, then float32)."""
        full = np.fromiter((self._full(t) for t in words), np.float64, len(words))
        full = np.maximum(full, self.head_df.astype(np.float64))
        idf = np.log(1 + (self.n + 0.5) / (full + 0.5))
        focus = (self.head_df.astype(np.float64) + FOCUS_PRIOR * FOCUS_SMOOTH) / (full + FOCUS_SMOOTH)
        return (idf * np.maximum(focus, FOCUS_FLOOR)).astype(np.float32), idf.astype(np.float32)

    # ---- word statistics ---------------------------------------------------------------------------------
    def _head_df(self, tok: str) -> int:
        i = self.vocab.get(tok)
        return 0 if i is None else int(self.head_df[i])

    def full_df(self, tok: str) -> int:
        return max(self._full(tok), self._head_df(tok))

    def idf_of(self, share: float) -> float:
        """The idf of a word on ``share`` of the cards (on one card at least)."""
        return float(np.log(1 + (self.n + 0.5) / (max(1.0, share * self.n) + 0.5)))

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
    def asked(self, tokens: list[str]):
        """The purpose phrases a segment touches: (unit ids, rarity (idf sum) of the words asked, share of the
        phrase's word weight asked, that word weight)."""
        ids = [self.vocab[t] for t in dict.fromkeys(tokens) if t in self.vocab]
        if not ids:
            empty = np.empty(0, np.float32)
            return np.empty(0, np.int64), empty, empty, empty
        units = np.concatenate([self.post_unit[self.indptr[i]:self.indptr[i + 1]] for i in ids])
        sizes = [self.indptr[i + 1] - self.indptr[i] for i in ids]
        w = np.repeat(self.tok_weight[ids], sizes)
        uniq, inv = np.unique(units, return_inverse=True)
        got = np.bincount(inv, weights=w).astype(np.float32)
        rarity = np.bincount(inv, weights=np.repeat(self.tok_idf[ids], sizes)).astype(np.float32)
        share = np.minimum(got / np.maximum(self.unit_total[uniq], 1e-6), 1.0)
        return uniq, rarity, share, got

    def matches_at(self, tokens: list[str], rarities, min_cover: float = 0.0, strengths=None) -> tuple:
        """Per document a phrase of the task belongs to: its best phrase's strength x share asked, for each
        ``min_rarity`` of ``rarities`` (the phrases asked worked out once). A phrase counts when it is most of
        what the segment says (its asked word weight >= ``min_cover`` of the segment's: a tag-list entry) or
        when the words asked are rare (idf sum >= ``min_rarity``: "spaceship" in a sentence, not "glass").
        ``strengths`` overrides the field strengths (name, stem, tag, trigger). Returns (documents (sorted),
        [(scores, best unit or -1), ...] aligned with them): every other card scores 0. At 100,000 cards a
        task asks a few hundred: arrays of every card, four per task, cost a compose more than its matching
        (this VM reads memory at ~3 GB/s)."""
        uniq, rarity, share, got = self.asked(tokens)
        if not len(uniq):
            return np.empty(0, np.int64), [(np.empty(0, np.float32), np.empty(0, np.int64)) for _ in rarities]
        segment = sum(self.weights(list(dict.fromkeys(tokens))))
        strength = self.unit_strength[uniq] if strengths is None else \
            np.asarray(strengths, np.float32)[self.unit_kind[uniq]]
        owners = self.unit_doc[uniq]
        docs = np.unique(owners).astype(np.int64)
        out = []
        for min_rarity in rarities:
            ok = (rarity >= min_rarity) | (got >= min_cover * segment)
            s = np.where(ok, strength * share, 0.0).astype(np.float32)
            order = np.argsort(s, kind="stable")  # ascending: the best unit of a document is written last
            at = np.searchsorted(docs, owners[order])
            scores = np.zeros(len(docs), np.float32)
            best = np.full(len(docs), -1, np.int64)
            scores[at] = s[order]
            best[at] = uniq[order]
            best[scores <= 0] = -1
            out.append((scores, best))
        return docs, out

    def name_share(self, doc: int, tokens) -> float:
        """Share of the card's whole name (by word weight; the better of its title and its stem) found in
        ``tokens``."""
        return self.name_shares([doc], tokens)[0]

    def name_shares(self, docs, tokens) -> list:
        """name_share of each of ``docs`` (a hybrid compose asks it of every card a common word matches: at
        100,000 cards, thousands per prompt)."""
        out = []
        if len(docs) > 32:  # those that share no name word with the prompt share 0, found at once
            asked = [self.name_vocab[t] for t in tokens if t in self.name_vocab]
            ptr = self.name_indptr
            held = [self.name_docs[ptr[i]:ptr[i + 1]] for i in asked] + [np.empty(0, np.int64)]
            shares = np.isin(np.asarray(docs, np.int64), np.concatenate(held))
            docs = np.where(shares, docs, -1).tolist()
        for doc in docs:
            if doc < 0:
                out.append(0.0)
                continue
            best = 0.0
            for words, weights, total, word_set in self._name_forms.get(doc) or self._names(doc):
                if not word_set.isdisjoint(tokens):  # most cards a common word matches share no name word
                    best = max(best, sum(w for t, w in zip(words, weights) if t in tokens) / total)
            out.append(best)
        return out

    def _names(self, doc: int) -> tuple:
        """The card's name forms as (words, their weights, the weights' sum, the words as a set), worked out
        on the card's first name_share and kept: a hybrid compose asks it for every card a common word matches
        (at 100,000 cards, most of that compose's time was this, again and again). The same sums in the same
        order as before."""
        names = self._name_forms.get(doc)
        if names is None:
            names = []
            for words in self.name_toks[doc]:
                # A bilingual name ("Cinematic 背景画风增强器", "Idol costume | アイドル衣装") says its
                # purpose twice; an English prompt holds the Latin half at most.
                words = latin_words(words) or list(words)
                # The kind of file a name says ('Style', 'Concept', 'Clothing': Civitai's categories, in names
                # of every topic) asks for nothing; a name of kind words alone ('Anime Style') keeps them.
                words = [w for w in words if w not in KIND_WORDS] or words
                weights = self.weights(list(words))
                total = sum(weights)
                if total > 0:
                    names.append((words, weights, total, frozenset(words)))
            names = self._name_forms[doc] = tuple(names)
        return names

    def unit_words(self, u: int) -> frozenset:
        return self.unit_toks[u]

    def unit_head(self, u: int) -> str:
        """The head of a purpose phrase: its last word that says what the thing is ('dress' of 'Linen
        dress', 'girl' of 'Hong Kong Girl'; kind words such as 'style' left out); '' for a one-word phrase."""
        head = self._heads.get(u)
        if head is None:
            toks = self.unit_toks[u]
            words = [w for w in purpose_words(self.unit_text[u]) if w in toks and w not in KIND_WORDS]
            head = self._heads[u] = words[-1] if len(toks) > 1 and words else ""
        return head


def purpose_index(snapshot, main_trigger=None) -> PurposeIndex:
    """The PurposeIndex of an index snapshot, built on first use and kept on it: a refresh swaps in a new
    snapshot, which gets a new one."""
    idx = getattr(snapshot, "_stylus_purpose", None)
    if idx is None:
        with collections_deferred():  # see index.refresh
            idx = PurposeIndex(snapshot.entries, snapshot.states.get("bm25"), main_trigger)
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


def _stem_df_lookup(state: dict | None):
    """Documents using any word with a given stem() fold, over the whole card text ('danc': 'dance' and
    'dancing'); the sum of the forms' counts, at most the number of documents. Built once per index."""
    if not state or "bm25_vocab" not in state:
        return lambda tok: 0
    n = int(state["bm25_n"][0])
    keys, ids = _stem_keys(state["bm25_vocab"])
    sums = np.bincount(keys, weights=np.diff(state["bm25_indptr"]), minlength=len(ids)).astype(np.int64)

    def df(tok: str) -> int:
        i = ids.get(tok)
        return 0 if i is None else min(n, int(sums[i]))
    return df


class _StemKeys:
    """The stem() fold of each word of the library's vocabulary, as ids, kept from one index build to the
    next: a refresh adds or drops a few words of the sorted vocabulary, and only those are folded again."""
    def __init__(self):
        self.vocab = np.empty(0, dtype="<U1")
        self.keys = np.empty(0, np.int64)
        self.ids: dict = {}  # stem key -> id (keys of words no longer there stay: their sum is 0)

    def __call__(self, vocab: np.ndarray) -> tuple:
        if len(vocab) == len(self.vocab) and np.array_equal(vocab, self.vocab):
            return self.keys, self.ids
        keys = np.empty(len(vocab), np.int64)
        known = np.zeros(len(vocab), bool)
        if len(self.vocab):
            at = np.minimum(np.searchsorted(self.vocab, vocab), len(self.vocab) - 1)
            known = self.vocab[at] == vocab
            keys[known] = self.keys[at[known]]
        ids = dict(self.ids)
        for i in np.flatnonzero(~known).tolist():
            keys[i] = ids.setdefault(stem(str(vocab[i])), len(ids))
        self.vocab, self.keys, self.ids = vocab, keys, ids
        return keys, ids


_stem_keys = _StemKeys()


class _Parts:
    """What one card gives the index: its purpose phrases (in card_units order), its whole name's words and
    the names a prompt may tag it by. Depends on the card (and its main trigger) only."""
    __slots__ = ("card", "trigger", "unit_toks", "unit_text", "unit_strength", "unit_kind", "name_toks",
                 "name_set", "names")
    KINDS = KINDS

    def __init__(self, card, trigger):
        self.card, self.trigger = card, trigger
        units = card_units(card, trigger)
        self.unit_toks = tuple(units)
        self.unit_text = tuple(text for _, _, text in units.values())
        self.unit_strength = tuple(strength for strength, _, _ in units.values())
        self.unit_kind = tuple(self.KINDS.index(kind) for _, kind, _ in units.values())
        title = frozenset(w for p, q in title_pieces(card.title) if not q for w in purpose_words(p))
        self.name_toks = (title, frozenset(purpose_words(card.stem)))
        # every word PurposeIndex._names() may find in a prompt (in no particular order: a set is asked)
        self.name_set = frozenset(w for words in self.name_toks for w in (latin_words(words) or words))
        self.names = tuple(dict.fromkeys((card.alias.casefold(), card.stem.casefold())))


# The cut cards of the last index built: a refresh keeps the AdapterCard objects of unchanged files, so the
# next build cuts only new or edited cards (one generation is kept).
_LAST_PARTS: dict = {}


def _cards_parts(entries, main_trigger) -> list:
    global _LAST_PARTS
    out, fresh = [], {}
    last = _LAST_PARTS
    for entry in entries:
        card = entry.card
        trig = main_trigger(card) if main_trigger else None
        part = fresh.get(id(card)) or last.get(id(card))  # the same card twice (a synthetic library): once
        if part is None or part.card is not card or part.trigger != trig:
            part = _Parts(card, trig)
        fresh[id(card)] = part
        out.append(part)
    _LAST_PARTS = fresh
    return out
