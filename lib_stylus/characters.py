"""Character and franchise resolution: which LoRAs are of one specific character (or person), what names and
franchises each has, which characters and franchises a prompt names, and why a character LoRA must not be
picked for a prompt.

Interface (stable; the composer uses it - extend, do not rename). A *row* is an index into the snapshot's
``entries`` (as in purpose.py):

* ``CharacterIndex(entries)``: built once per index snapshot. Word document frequencies over the cards' own
  words (names, tags, trigger words, descriptions) tell a name ("makima") from an everyday word ("twilight",
  "jade").
* ``character_index(snapshot) -> CharacterIndex``: the snapshot's index, built on first use and kept on it.
* ``.is_character(row) -> bool``: a LoRA of one specific character or real person, or the costume / cosplay
  of one. From the card's Civitai category and topic, its name and its tags - never from trigger words like
  "1girl".
* ``.is_cosplay(row) -> bool``: a cosplay / costume LoRA of a character.
* ``.names(row) -> list[tuple[str, ...]]``: the character's name variants as folded word tuples (title, tags,
  trigger words, file stem: franchise qualifiers, version numbers, base-model and packaging words removed).
* ``.franchises(row) -> set[str]``: the franchises (series, games, groups) the card belongs to.
* ``.named_in(prompt) -> dict[int, str]``: rows whose character the prompt names -> the name as found. Names
  match in any word order, with or without spaces/underscores, through web-UI emphasis and escapes, across
  long-vowel romanizations (ou/oh/uu/oo), with one edit on long words in a name that has another exact word,
  and a single name word counts when the row's franchise is named too ("raiden ei, genshin impact"). A name
  made only of everyday words counts only with its franchise. Never from "1girl", colours or outfits.
* ``.franchises_in(prompt) -> set[str]``: every known franchise the prompt names.
* ``.franchise_rows(name) -> list[int]``: the rows carrying a franchise (characters and franchise styles
  alike: filter with ``is_character``), to find "genshin impact style" LoRAs for a franchise asked alone.
* ``.franchise_asked(prompt, named=None) -> set[str]``: franchises named generically - with no character of
  theirs named ("Arknights operator", "genshin impact style"); ``named`` is ``named_in(prompt)`` if known.
* ``.refusal(row, prompt_names) -> str``: why the LoRA at ``row`` must not be picked for a prompt whose
  ``named_in`` is ``prompt_names`` ("" when it may): one of the reasons below, each a constant, followed by
  details in parentheses.

Performance: names and franchises go into token -> variant posting lists and compact-string tables, so a
prompt costs a few dictionary look-ups per word, not a loop over the cards."""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from functools import lru_cache

from .prompt import split_segments
from .words import (BODY_ATTRIBUTES, CATEGORY, CLOTHING_KINDS, COLOURS, COSPLAY, ETHNIC, FEMALE, FUNCTION,
                    MALE, NOT_CHARACTER_KINDS, PACKAGING, PLACEHOLDERS, REAL_PERSON, SEXUAL, THING_KINDS,
                    fold, found, gender_of_word, is_cjk, is_numeral, is_version, words)

ANOTHER_CHARACTER = "another character than the one named"
GENERIC_SUBJECT = "a character for a generic subject"
OTHER_COSPLAY = "cosplay of another character"

# Civitai category tags that say a LoRA is of a character / a real person (exact tags, case-folded).
_CHARACTER_TAGS = {"character", "celebrity", "real person"}
MAX_NAME_WORDS = 5        # a longer "name" is a sentence or a title, not a name
FUZZY_MIN_LEN = 7         # one edit is allowed only on words this long ("lockheart" ~ "lockhart")
MAX_FRANCHISE_WORDS = 5
# A qualifier that is also written as a name (a title head, a first trigger word) is a franchise only when
# this many times more cards use it as a qualifier: "naruto", not "yorha no. 2 type b".
NAME_USES = 3
# A name word is an everyday word when the library uses it on many more cards than carry it in a name.
COMMON_RATIO, COMMON_SLACK = 3.0, 4

_BRACKETS = re.compile(r"[(\[{【「『（［<]([^)\]}】」』）］>]*)[)\]}】」』）］>]")
_PARTS = re.compile(r"[|/｜,+&]|\s[-–—~:]+|[-–—~]+\s|\s(?:from|in)\s", re.I)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TRAILING_DIGITS = re.compile(r"^([a-z]{3,}?)\d+$")
_CAPITALIZED = re.compile(r"\b[A-Z][^\W_]*")
_NAME_FORM = re.compile(r"^\s*([^()]+?)\s*\(([^()]+)\)\s*$")  # "makima (chainsaw man)"


def title_head(title: str) -> str:
    """The first part of a LoRA title with letters, brackets and what follows a separator cut off: what the
    LoRA is ('Makima' of 'Esthetic Makima (Chainsaw Man) | v2'), without its series or packaging."""
    for part in _PARTS.split(_BRACKETS.sub(" | ", _unescape(title or ""))):
        if any(c.isalpha() for c in part):
            return part.strip()
    return ""


# ---- text helpers ------------------------------------------------------------------------------------------
def _clean_tokens(text: str, keep_digits: bool = False, camel: bool = False) -> list:
    """Folded name tokens of a short text: 'Hutao1' -> ['hutao']; versions, packaging and joining words out.
    ``camel`` splits 'RaidenShogun' (file stems), not 'YoRHa' or 'NieR' (an upper-case letter after it)."""
    return list(_clean_cached(text, keep_digits, camel))


@lru_cache(maxsize=1 << 17)
def _clean_cached(text: str, keep_digits: bool, camel: bool) -> tuple:
    """Card texts repeat across a library ('anime', 'genshin impact'): each is cut once."""
    out = []
    for raw in words(_CAMEL.sub(" ", text) if camel else text):
        if raw.isalpha() and raw.isascii():  # the common case: no digits, no CJK
            if raw not in FUNCTION and raw not in PACKAGING:
                out.append(fold(raw))
            continue
        if is_cjk(raw):
            continue
        m = _TRAILING_DIGITS.match(raw)
        if m and not keep_digits:
            raw = m.group(1)
        if raw in FUNCTION or is_version(raw) or raw in PACKAGING or (raw.isdigit() and not keep_digits):
            continue
        out.append(fold(raw))
    return tuple(out)


def _compact(toks) -> str:
    return "".join(toks)


def _unescape(text: str) -> str:
    return text.replace("\\(", "(").replace("\\)", ")").replace("\\[", "[").replace("\\]", "]")


def _generic(toks) -> bool:
    """Only category, gender, colour or body-attribute words: such a phrase names nobody."""
    return all(t in _GENERIC or gender_of_word(t) or len(t) < 2 for t in toks)


_THING_WORDS = CLOTHING_KINDS | NOT_CHARACTER_KINDS
_GENERIC = (CATEGORY | COLOURS | BODY_ATTRIBUTES | PLACEHOLDERS | NOT_CHARACTER_KINDS | CLOTHING_KINDS
            | COSPLAY | ETHNIC | REAL_PERSON)
# A qualifier with one of these words is a kind of picture, a costume or a person, not a franchise.
_NOT_FRANCHISE = (NOT_CHARACTER_KINDS | CLOTHING_KINDS | COSPLAY | REAL_PERSON | ETHNIC | PACKAGING
                  | CATEGORY) - FEMALE - MALE


def _trim_category(toks: list) -> list:
    """Category words at the edges of a title head go ('Makima Character' -> 'makima'); gender words stay,
    since they can be part of a name ('dark magician girl')."""
    while toks and toks[0] in CATEGORY and not gender_of_word(toks[0]):
        toks = toks[1:]
    while toks and toks[-1] in CATEGORY and not gender_of_word(toks[-1]):
        toks = toks[:-1]
    return toks


def _edits1(tok: str) -> set:
    return {tok[:i] + tok[i + 1:] for i in range(len(tok))}


def _within_one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return a == b
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


class _Card:
    """A card's text cut the way names are written: the title's head (its first part with Latin words) and
    its qualifiers (bracketed or after a separator), tags and trigger words with their own '(qualifier)'."""

    def __init__(self, card):
        self.card = card
        title = _unescape(card.title or "")
        self.brackets = [q for q in (_trim_category(_clean_tokens(q, keep_digits=True))
                                     for q in _BRACKETS.findall(title)) if q]
        self.parts = [q for q in (_trim_category(_clean_tokens(p, keep_digits=True))
                                  for p in _PARTS.split(_BRACKETS.sub(" | ", title))) if q]
        self.title_words = {t for q in self.brackets + self.parts for t in q}
        self.stem = _trim_category(_clean_tokens(card.stem or "", camel=True))
        self.tags = [_unescape(t) for t in card.tags or () if isinstance(t, str)]
        self.triggers = [_unescape(t) for t in card.trigger_words or () if isinstance(t, str)]
        # tags and the main trigger word cut as names (digits kept: 'yorha no. 2 type b'); the other trigger
        # words only when asked (see texts): most cards never need them
        self.tag_texts = [_clean_cached(t, True, False) for t in self.tags]
        self.tag_keys = {_compact(t) for t in self.tag_texts}
        self.first = _clean_cached(self.triggers[0], True, False) if self.triggers else ()
        self.said = {t for toks in self.tag_texts + [self.first] for t in toks if not t.isdigit()} - CATEGORY
        self._texts = None
        self.forms = []  # (name tokens, qualifier tokens) from "name (qualifier)" tags / triggers / title
        for text in self.tags + self.triggers + ([title] if title.count("(") == 1 else []):
            m = _NAME_FORM.match(text)
            if m:
                name, qual = _clean_tokens(m.group(1), keep_digits=True), _clean_tokens(m.group(2))
                thing = all(t in THING_KINDS for t in qual)  # "pom pom (clothes)": a thing, not a name
                if name and qual and not thing and len(name) <= MAX_NAME_WORDS and not _generic(name):
                    self.forms.append((name, qual))
        self.split_title({})

    @property
    def texts(self) -> list:
        """Tags then trigger words, cut as names."""
        if self._texts is None:
            self._texts = self.tag_texts + [_clean_cached(t, True, False) for t in self.triggers]
        return self._texts

    def split_title(self, franchises: dict) -> None:
        """Head = the first title part (digits out) that is not a franchise, else the least known one
        ('Pokemon - Serena (Game)': franchises = {key: cards using it as a series}); qualifiers = the other
        parts, the bracketed ones and those of "name (series)" forms. The head (or the stem) also says the
        kind of LoRA: a costume, or a style / pose / effect."""
        parts = [p for p in self.parts if any(not t.isdigit() for t in p)]
        # the part least used as a series by other cards ('Pokemon - Serena (Game)', 'Goto Hitori - Bocchi
        # the Rock'), then the one its main trigger word says ('Ghibli - Kiki's Delivery Service - Kiki and
        # Jiji' with 'kiki', 'Breath of the Wild - Zelda' with 'BotwZelda'), then one a tag says
        said, first = self.said, _compact(self.first)

        def rank(i):
            key = _compact(parts[i])
            return (franchises.get(key, 0), not (set(parts[i]) & set(self.first) or key in first),
                    not set(parts[i]) & said, i)
        best = min(range(len(parts)), key=rank) if parts else -1
        head = list(parts[best]) if parts else []
        if len(head) > 2 and head[-1].isdigit():
            head = head[:-1]  # 'Yor Forger 2' is a version; 'Android 18' and 'Ben 10' are names
        self.head = head
        self.quals = list(self.brackets) + [p for p in self.parts if not parts or p is not parts[best]]
        self.quals += [q for _, q in self.forms]
        kinds = set(self.head) or set(self.stem)
        self.costume = bool(kinds & CLOTHING_KINDS)
        self.not_character = bool(kinds & NOT_CHARACTER_KINDS)


# The cut cards of the last index built: a refresh keeps the AdapterCard objects of unchanged files, so the
# next build cuts only new or edited cards. Two generations at most are alive.
_LAST_CARDS: dict = {}


def _cards(cards: list) -> list:
    global _LAST_CARDS
    out, fresh = [], {}
    for card in cards:
        cut = _LAST_CARDS.get(id(card))
        if cut is None or cut.card is not card:
            cut = _Card(card)
        else:
            cut.split_title({})  # as first cut: the last build split it by its own franchises
        fresh[id(card)] = cut
        out.append(cut)
    _LAST_CARDS = fresh
    return out


class _Segment:
    """One prompt segment: its folded words (joining words out, as in the names), the words written with a
    capital, and whether it reads as a sentence (a one-word name there needs a capital or its series)."""
    SENTENCE = 4

    def __init__(self, plain: str):
        raw = words(plain)
        self.words = [fold(t) for t in raw if t not in FUNCTION and not is_cjk(t)]
        self.capitalized = {fold(t.lower()) for t in _CAPITALIZED.findall(plain)}
        self.sentence = len(raw) >= self.SENTENCE
        pairs = zip(self.words, self.words[1:])
        self.described = {b for a, b in pairs if a in COLOURS or a in BODY_ATTRIBUTES}


class CharacterIndex:
    def __init__(self, entries):
        self.entries = entries
        self.n = len(entries)
        cards = _cards([e.card for e in entries])
        self._df = self._doc_freq(cards)
        strong = [not c.not_character and self._strong(e, c) for e, c in zip(entries, cards)]
        self._franchise_vocab(cards, strong)
        for c in cards:  # a title that starts with its franchise: the name is the next part
            c.split_title(self._support)
        self._franchise_vocab(cards, strong)
        self._card_franchises = [self._franchises_of(c) for c in cards]
        self._by_franchise = None  # franchise -> rows, made on first use
        for c in cards:  # a franchise in the head is no part of the name: "raiden shogun genshin impact"
            c.head = self._strip_franchise(c.head)
        # Names of the sure characters first; a costume or an uncategorized card is a character's when it
        # carries one of those names or a "name (series)" form.
        self._head_df = Counter(t for c, s in zip(cards, strong) if s for t in set(c.head))
        first = {row: self._variants(c, set()) for row, (c, s) in enumerate(zip(cards, strong)) if s}
        known = {_compact(v) for vs in first.values() for v in vs}
        self._character = [self._decide(c, s, known) for c, s in zip(cards, strong)]
        self._cosplay = [ch and (c.costume or bool((c.title_words | set(c.stem) | c.tag_keys) & COSPLAY))
                         for c, ch in zip(cards, self._character)]
        # ``known`` changes the variants of a costume or of a card with no name of its own only
        self._names = []
        for row, (c, ch) in enumerate(zip(cards, self._character)):
            own = not c.costume and (c.forms or _compact(c.head) not in self.franchise_names)
            self._names.append(first[row] if row in first and own else self._variants(c, known) if ch else [])
        # names a card writes only as "name (series)": ambiguous without the series
        self._form_only = []
        for c, vs in zip(cards, self._names):
            only = set()
            if vs and c.forms:
                plain = {tuple(self._strip_franchise(toks)) for t, toks in zip(c.tags + c.triggers, c.texts)
                         if not _NAME_FORM.match(t)} | {tuple(c.head)}
                only = {tuple(name) for name, _ in c.forms} - plain
            self._form_only.append(only)
        self._qualifiers = [{_compact(q) for q in c.quals if not _generic(q)} for c in cards]
        self._cards = cards
        self._index_names()
        del self._cards

    @staticmethod
    def _doc_freq(cards: list):
        """Word -> number of cards using it in their own words: name, tags, trigger words and description.
        Not the sample prompts (nor the BM25 text that holds them): a popular character ("hatsune miku") is
        written in the sample prompts of hundreds of other LoRAs and would pass for an everyday word."""
        own = Counter()
        for c in cards:
            said = c.title_words | {fold(w) for t in c.tags + c.triggers for w in words(t)}
            own.update(said | {fold(w) for w in words(c.card.description or "")})
        return lambda tok: own[tok]

    # ---- what is a character -----------------------------------------------------------------------------
    @staticmethod
    def _strong(entry, c: _Card) -> bool:
        tags = {t.casefold() for t in c.tags}
        topic = getattr(entry.refined, "topic", "")
        return not c.costume and (bool(tags & _CHARACTER_TAGS) or topic == "character")

    def _decide(self, c: _Card, strong: bool, known: set) -> bool:
        if c.not_character:
            return False  # a style / pose / effect LoRA tagged with a character or a franchise
        if strong:
            return True
        # Uncategorized on Civitai ("concept"): still a character's LoRA when it carries a "name (series)"
        # form, or its title, a tag or its main trigger is a known character's telling name ("tifa lockhart"
        # on 'Tifa_meenow', "yor briar" on a sweater-dress LoRA) - not an everyday one ("dawn", "power").
        if any(set(t) & NOT_CHARACTER_KINDS for t in c.tag_texts):
            return False  # filed as a style or concept by its tags ('retro artstyle', 'concept')
        texts = [c.head] + c.tag_texts + [c.first]
        return bool(c.forms) or any(self._telling_name(self._strip_franchise(t), known) for t in texts)

    def _telling_name(self, toks: list, known: set) -> bool:
        return bool(toks) and _compact(toks) in known and not all(self._everyday(t) for t in toks)

    def is_character(self, row: int) -> bool:
        return self._character[row]

    def is_cosplay(self, row: int) -> bool:
        return self._cosplay[row]

    # ---- franchises --------------------------------------------------------------------------------------
    def _franchise_vocab(self, cards: list, strong: list) -> None:
        """Franchises are what character cards write as a qualifier - 'Makima (Chainsaw Man)', 'Yor Forger -
        Spy x Family' - and also carry as a tag, or a tag that titles of several characters start or end with
        ('Girls und Panzer Anchovy', 'Girls und Panzer Kay'). Not one: a qualifier more often some
        character's own title ('Yor Briar (Yor Forger)'), one with a word of a kind of picture, costume or
        person, a bare number, or an everyday word that only one character's cards use as a qualifier."""
        seen, confirmed, spelled, heads = Counter(), Counter(), defaultdict(Counter), Counter()
        owners, beside = defaultdict(set), defaultdict(set)
        for c, s in zip(cards, strong):
            if not s:
                continue
            heads[_compact(c.head)] += 1  # a name: the title head, a first trigger, a "name (series)" -
            # not a first trigger that the title starts or ends with ('Girls und Panzer Kay': the series)
            first = list(c.first)
            edge = 0 < len(first) < len(c.head) and first in (c.head[:len(first)], c.head[-len(first):])
            heads.update({_compact(name) for name, _ in c.forms})
            if first and not edge:
                heads[_compact(first)] += 1
            for q in {tuple(q) for q in c.quals}:
                key = _compact(q)
                if len(q) > MAX_FRANCHISE_WORDS or len(key) < 3 or set(q) & _NOT_FRANCHISE \
                        or all(is_numeral(t) or gender_of_word(t) or t in COLOURS for t in q):
                    continue
                seen[key] += 1
                confirmed[key] += key in c.tag_keys
                spelled[key][" ".join(q)] += 1
                owners[key].add(_compact(c.head))
            for toks in c.tag_texts:  # a tag written at an edge of the title, beside a name
                n = len(toks)
                if 1 < n < len(c.head) and (c.head[:n] == list(toks) or c.head[-n:] == list(toks)):
                    key = _compact(toks)
                    seen[key] += 1
                    spelled[key][" ".join(toks)] += 1
                    beside[key].add(_compact(c.head[n:] if c.head[:n] == list(toks) else c.head[:-n]))
        # folded spellings (for matching) and the spelling the cards' tags use most (for people)
        self._folded, self._support = {}, seen
        spelling = {key: spelled[key].most_common(1)[0][0] for key in seen}
        self._franchise_words = {t for key in seen for t in spelling[key].split()} | set(seen)
        for key, n in seen.items():
            everyday = all(self._df(t) > COMMON_RATIO * n + COMMON_SLACK for t in spelling[key].split())
            qualifier = confirmed[key] and (len(owners[key]) > 1 or not everyday)
            if (qualifier or len(beside[key]) > 1) and n > NAME_USES * heads[key]:
                self._folded[key] = spelling[key]
        tags = defaultdict(Counter)
        for c in cards:
            for tag, toks in zip(c.tags, c.tag_texts):
                if _compact(toks) in self._folded:
                    tags[_compact(toks)][" ".join(tag.casefold().split())] += 1
        self.franchise_names = {k: tags[k].most_common(1)[0][0] if tags[k] else v
                                for k, v in self._folded.items()}
        self._franchise_len = max((len(v.split()) for v in self._folded.values()), default=0)
        self._franchise_words = {t for v in self._folded.values() for t in v.split()} | set(self._folded)

    def _franchises_of(self, c: _Card) -> set:
        keys = (c.tag_keys | {_compact(q) for q in c.quals}) & self.franchise_names.keys()
        keys |= {k for k, _, _ in self._franchise_runs(c.head)}
        return {self.franchise_names[k] for k in keys}

    def _franchise_runs(self, toks) -> list:
        """(key, start, end) of every known franchise written in a token list, longest first."""
        out = []
        if not any(t in self._franchise_words for t in toks):
            return out
        for n in range(min(self._franchise_len, len(toks)), 0, -1):
            for i in range(len(toks) - n + 1):
                key = _compact(toks[i:i + n])
                if key in self.franchise_names:
                    out.append((key, i, i + n))
        return out

    def _strip_franchise(self, toks) -> list:
        """The words without the franchises written in them ('ganyu genshin impact' -> 'ganyu'); unchanged
        when nothing else would be left, or a one-word franchise would leave one word: 'naruto uzumaki'."""
        toks = list(toks)
        if not any(t in self._franchise_words for t in toks):
            return toks
        for _, a, b in self._franchise_runs(toks):
            rest = toks[:a] + toks[b:]
            if rest and (b - a > 1 or len(rest) > 1):
                return self._strip_franchise(rest)
        return toks

    def without_franchises(self, toks) -> list:
        """Folded words with every franchise written in them removed: 'chainsaw man anime style' -> 'anime
        style' (so the 'man' of a series' name says nothing about who a LoRA shows)."""
        toks = list(toks)
        for _, a, b in self._franchise_runs(toks):
            return self.without_franchises(toks[:a] + toks[b:])
        return toks

    def franchises(self, row: int) -> set:
        return set(self._card_franchises[row])

    def only_franchises(self, text: str) -> set:
        """The franchises a prompt segment names when it names nothing else ("genshin impact", "spy x
        family"), else an empty set."""
        words = _Segment(text).words
        if not words or self.without_franchises(words):
            return set()
        return {self.franchise_names[k] for k, _, _ in self._franchise_runs(words)}

    def franchise_rows(self, name: str) -> list:
        if self._by_franchise is None:
            self._by_franchise = defaultdict(list)
            for row, names in enumerate(self._card_franchises):
                for franchise in names:
                    self._by_franchise[franchise].append(row)
        return list(self._by_franchise.get(name, ()))

    # ---- names -------------------------------------------------------------------------------------------
    def _everyday(self, tok: str) -> bool:
        """A word the library uses far more often than in character names ('hat', 'black', 'standing')."""
        return self._df(tok) > COMMON_RATIO * self._head_df[tok] + COMMON_SLACK

    def _variants(self, c: _Card, known: set) -> list:
        """Name variants of a character card: the title head (a costume's: only when it is a known name) and
        its 'name (series)' forms - or, when it has neither, the known names among its tags and triggers -
        then the tags and trigger words that share a telling word (or the spelling without spaces) with
        those. Franchise words are stripped; a variant of only franchise, category or attribute words goes."""
        strip = self._strip_franchise
        head = c.head if _compact(c.head) not in self.franchise_names else []  # "KonoSuba" (a pack)
        base = [head] if head and (not c.costume or _compact(head) in known) else []
        base += [name for name, _ in c.forms]
        texts = c.texts
        if not base:
            base = [toks for toks in texts if toks and _compact(strip(toks)) in known]
        base = [strip(v) for v in base]
        # a one-word variant only from a name of at most two words ('yor' of 'yor forger'), never from a
        # long title ('slime' of 'Tensei Shitara Slime Datta Ken') or beside a number ('android 18')
        anchor_words = {t for v in base for t in v if not is_numeral(t) and not self._everyday(t)}
        short_words = {t for v in base if len(v) <= 2 and not any(is_numeral(w) for w in v) for t in v}
        anchor_keys = {_compact(v) for v in base}
        out = list(base)
        for toks in texts:
            toks = strip(toks)
            shares = set(toks) & anchor_words and (len(toks) > 1 or toks[0] in short_words)
            if toks and len(toks) <= MAX_NAME_WORDS and (shares or _compact(toks) in anchor_keys):
                out.append(toks)
        first = strip(c.first)
        if first and _compact(first) in c.tag_keys and len(first) <= MAX_NAME_WORDS:
            out.append(first)  # the main trigger word, also one of its labels: 'yorha no. 2 type b' on 2B
        if not out and c.stem and len(c.stem) <= 2 and not c.costume:
            out.append(c.stem)
        uniq = []
        for v in out:
            v = tuple(t for t in v if t not in COSPLAY)
            # no name has a garment, a kind of picture or a sexual word: 'school uniform', 'see-through'
            thing = set(v) & _THING_WORDS or found(SEXUAL, list(v))
            series = _compact(v) in self.franchise_names or all(
                is_numeral(t) or t in self._franchise_words for t in v)
            if v and v not in uniq and not _generic(v) and not thing and not series:
                uniq.append(v)
        return uniq

    def names(self, row: int) -> list:
        return list(self._names[row])

    def _index_names(self) -> None:
        name_df = Counter(t for vs in self._names for t in {t for v in vs for t in v})
        self._common = {t: self._df(t) > COMMON_RATIO * name_df[t] + COMMON_SLACK or gender_of_word(t) != ""
                        or t in COLOURS or t in CATEGORY or is_numeral(t) or len(t) < 2 for t in name_df}
        # variant id -> (tokens, rows); postings: anchor token (the variant's rarest) -> variant ids
        self._variant_rows: dict = defaultdict(list)
        for row, vs in enumerate(self._names):
            for v in vs:
                self._variant_rows[v].append(row)
        self._anchor = defaultdict(list)
        self._compact_names = defaultdict(list)
        self._long_words = {}
        for v in self._variant_rows:
            self._anchor[min(v, key=lambda t: (name_df[t], t))].append(v)
            self._compact_names[_compact(v)].append(v)
            if len(v) == 2:
                self._compact_names[_compact(v[::-1])].append(v)
            for t in v:
                if len(t) >= FUZZY_MIN_LEN and len(v) > 1:
                    for d in _edits1(t) | {t}:
                        self._long_words.setdefault(d, set()).add(t)
        # Names of what is no character (artists, places, styles) a character's name may be part of
        self._other_anchor = defaultdict(list)
        for row, c in enumerate(self._cards):
            if not self._character[row]:
                v = tuple(t for t in self._strip_franchise(c.head) if t not in _GENERIC and not is_numeral(t))
                if len(v) >= 2:
                    self._other_anchor[min(v, key=lambda t: (self._df(t), t))].append(v)
        # Single name words that may name a character of a franchise the prompt names ("raiden" + genshin)
        self._partial = defaultdict(set)
        for row, vs in enumerate(self._names):
            if self._card_franchises[row]:
                for t in {t for v in vs for t in v}:
                    telling = not self._common[t] and t not in self._franchise_words
                    if len(t) >= 3 and telling and not t.isdigit():
                        self._partial[t].add(row)

    # ---- prompts -----------------------------------------------------------------------------------------
    @staticmethod
    def _segments(prompt: str) -> list:
        return [_Segment(s.plain) for s in split_segments(prompt)]

    def _prompt_franchises(self, segs: list) -> set:
        keys = set()
        for toks in segs:
            keys |= {k for k, _, _ in self._franchise_runs(toks)}
        return keys

    def franchises_in(self, prompt: str) -> set:
        segs = self._segments(prompt)
        return {self.franchise_names[k] for k in self._prompt_franchises([s.words for s in segs])}

    def _fuzzy(self, toks: list) -> dict:
        """Name words within one edit of a long prompt word: {name word: prompt word}."""
        out = {}
        for t in toks:
            if len(t) >= FUZZY_MIN_LEN:
                for d in _edits1(t) | {t}:
                    for w in self._long_words.get(d, ()):
                        if w != t and _within_one_edit(w, t):
                            out[w] = t
        return out

    def _matches(self, toks: list, present: set, fuzzy: dict, anchors: dict, compacts: dict) -> set:
        """Variants whose words are all in the segment (any order; one edit on long words of a name with an
        exact word), or written without spaces ('hutao' / 'hu tao')."""
        matched = set()
        for i in range(len(toks)):
            for n in range(1, 5):
                if i + n <= len(toks):
                    matched.update(compacts.get(_compact(toks[i:i + n]), ()))
        for t in present | set(fuzzy):
            for v in anchors.get(t, ()):
                exact = [w in present for w in v]
                if any(exact) and all(e or w in fuzzy for e, w in zip(exact, v)):
                    matched.add(v)
        return matched

    def named_in(self, prompt: str) -> dict:
        segs = self._segments(prompt)
        asked = {self.franchise_names[k] for k in self._prompt_franchises([s.words for s in segs])}
        quals = {_compact(s.words[i:i + n]) for s in segs for n in range(1, 4)
                 for i in range(len(s.words) - n + 1)}
        found: dict = {}
        for seg in segs:
            toks = seg.words
            present = set(toks)
            fuzzy = self._fuzzy(toks)
            matched = self._matches(toks, present, fuzzy, self._anchor, self._compact_names)
            others = self._matches(toks, present, {}, self._other_anchor, {}) if matched else set()
            # The longest names win: "hoshino ai" is not also a character called "ai", "ilya kuvshinov" (an
            # artist) is no character "ilya" - franchise words aside: "star kafka" is no longer a name than
            # "kafka" in "kafka (honkai: star rail)".
            series_runs = self._franchise_runs(toks)
            series = {t for _, a, b in series_runs for t in toks[a:b]} | self._franchise_words
            here = {self.franchise_names[k] for k, _, _ in series_runs}
            longer = matched | others
            matched = {v for v in matched if not any(set(v) - series < set(w) - series for w in longer)}
            used = set()
            for v in sorted(matched, key=lambda v: (-len(v), v)):  # never set order: it varies by process
                rows = [r for r in self._variant_rows[v] if self._allowed(v, r, seg, quals, asked)]
                # "serena (pokemon)": not the Serena of another series
                for series_named in (here, asked):
                    if series_named and any(self._card_franchises[r] & series_named for r in rows):
                        rows = [r for r in rows if self._card_franchises[r] & series_named
                                or not self._card_franchises[r]]
                        break
                if rows:
                    used |= set(v) | {fuzzy.get(w, w) for w in v}
                for row in rows:
                    found.setdefault(row, " ".join(v))
            for t in sorted(present - used):  # one word of a name, with the character's franchise named too
                for row in self._partial.get(t, ()):
                    if row not in found and self._card_franchises[row] & asked:
                        found[row] = t
        return found

    def _allowed(self, v: tuple, row: int, seg: "_Segment", quals: set, asked: set) -> bool:
        """A name made only of everyday words ('black cat', 'jade') names this row's character only with one
        of its franchises or its own qualifier ('jade (dq11)') in the prompt; so does a one-word name inside a
        sentence ('a misty lake') unless it is written with a capital ('Misty by the lake')."""
        own_qualifier = (self._qualifiers[row] - {_compact(v)}) & quals
        with_series = bool(self._card_franchises[row] & asked or own_qualifier)
        # 'au ra' is written 'aura': everyday as one word
        everyday = all(self._common.get(t, False) for t in v) or len(v) > 1 and self._everyday(_compact(v))
        if everyday or v in self._form_only[row]:
            return with_series
        if len(v) == 1 and (seg.sentence and v[0] not in seg.capitalized or v[0] in seg.described):
            return with_series
        return True

    def franchise_asked(self, prompt: str, named: dict | None = None) -> set:
        named = self.named_in(prompt) if named is None else named
        covered = set().union(*(self._card_franchises[r] for r in named)) if named else set()
        return self.franchises_in(prompt) - covered

    def refusal(self, row: int, prompt_names: dict) -> str:
        if row in prompt_names or not self._character[row]:
            return ""
        mine = self._names[row][0] if self._names[row] else ()
        who = f" ({' '.join(mine)})" if mine else ""
        if prompt_names:
            asked = ", ".join(sorted(set(prompt_names.values())))
            if self._cosplay[row]:
                return f"{OTHER_COSPLAY}{who}: the prompt names {asked}"
            return f"{ANOTHER_CHARACTER}{who}: the prompt names {asked}"
        return f"{GENERIC_SUBJECT}{who}"


def character_index(snapshot) -> CharacterIndex:
    """The CharacterIndex of an index snapshot, built on first use and kept on it (a refresh swaps in a new
    snapshot, which gets a new one)."""
    idx = getattr(snapshot, "_stylus_characters", None)
    if idx is None:
        idx = CharacterIndex(snapshot.entries)
        snapshot._stylus_characters = idx
    return idx
