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
* ``.franchises(row) -> set[str]``: the franchises (series, games, groups) the card belongs to: what titles
  write as a qualifier or at their edge (in either order: 'Makima (Chainsaw Man)', 'Elden Ring (Malenia)'),
  or a tag characters of several other names carry ('super mario' on Peach, Rosalina and Daisy).
* ``.named_in(prompt) -> dict[int, str]``: rows whose character the prompt names -> the name as found. Names
  match in any word order, with or without spaces/underscores, through web-UI emphasis and escapes, across
  long-vowel romanizations (ou/oh/uu/oo), with one edit on long words in a name that has another exact word,
  and a single name word counts when the row's franchise is named too ("raiden ei, genshin impact"). A name
  made only of everyday words counts only with its franchise. Never from "1girl", colours or outfits, nor
  from words of a franchise's title the prompt writes ('madoka' of "mahou shoujo madoka magica"). A given
  name that characters of several franchises share names only those of the franchise the prompt says
  ("yui \\(k-on!\\)", "yui, k-on") and those whose franchise is unknown.
* ``.unambiguous(prompt, names, everyday=frozenset()) -> dict``: ``names`` (``named_in``) without the rows
  named by one common word, or by one word characters with other given names share, without their franchise,
  or by one word of someone else's full name ("Chris Foss": a capitalised word beside it that neither the
  language nor the library knows).
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

from .text import collections_deferred
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
# A tag that character cards of this many other names carry (names without its words) is a franchise, though
# no title writes it as one: 'super mario' on Peach, Rosalina and Daisy.
SPREAD = 3
# A name word is an everyday word when the library uses it on many more cards than carry it in a name.
COMMON_RATIO, COMMON_SLACK = 3.0, 4

_BRACKETS = re.compile(r"[(\[{【「『（［<]([^)\]}】」』）］>]*)[)\]}】」』）］>]")
_PARTS = re.compile(r"[|/｜,+&]|\s[-–—~:]+|[-–—~]+\s|\s(?:from|in)\s", re.I)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TRAILING_DIGITS = re.compile(r"^([a-z]{3,}?)\d+$")
_CAPITALIZED = re.compile(r"\b[A-Z][^\W_]*")
_NAME_FORM = re.compile(r"^\s*([^()]+?)\s*\(([^()]+)\)\s*$")  # "makima (chainsaw man)"
# A lone letter hyphenated to a word is one word with it: 'K-ON!' is 'kon' (else 'on' goes as a joining word
# and 'k' is too short to name anything), 'X-Men' is 'xmen'.
_INITIAL = re.compile(r"(?<![^\W_])([^\W\d_])-(?=[^\W\d_]{2})")


def _names_text(text: str) -> str:
    return _INITIAL.sub(r"\1", text)


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
    for raw in words(_names_text(_CAMEL.sub(" ", text) if camel else text)):
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


def _unpackaged(title: str) -> str:
    """A title without the packaging words after its last bracket: 'Neon (Valorant) LoRA' -> 'Neon
    (Valorant)', the "name (series)" form of most character titles on Civitai."""
    head, bracket, tail = title.rpartition(")")
    if bracket and all(w.casefold() in PACKAGING or is_version(w.casefold()) for w in tail.split()):
        return head + bracket
    return title


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
        self.title_form = None  # where the title's own "X (Y)" is in forms, when it may be "series (name)"
        texts = [(t, False, False) for t in self.tags + self.triggers]
        if title.count("(") == 1:
            titled = _unpackaged(title)
            texts.append((titled, titled != title, True))  # True: packaging words were cut after the bracket
        for text, cut, titled in texts:
            m = _NAME_FORM.match(text)
            if m:
                name, qual = _clean_tokens(m.group(1), keep_digits=True), _clean_tokens(m.group(2))
                if cut and _compact(name) in self.tag_keys:
                    continue  # 'Product Design (minimalism) LoRA' tagged 'product design': a concept
                thing = all(t in THING_KINDS for t in qual)  # "pom pom (clothes)": a thing, not a name
                if name and qual and not thing and len(name) <= MAX_NAME_WORDS and not _generic(name):
                    if not titled or not self._reversible(name, qual):
                        self.forms.append((name, qual))
                    elif (name, qual) not in self.forms:
                        self.title_form = len(self.forms)
                        self.forms.append((name, qual))
        self.as_cut = list(self.forms)
        self.split_title({})

    def _reversible(self, name: list, qual: list) -> bool:
        """Whether the title "X (Y)" may be written series first ('Elden Ring (Malenia)'): X is the whole
        title part and one of the card's tags (as series are), the card itself says Y (a tag, or words of
        its main trigger) and its main trigger does not say X ('faye valentine' of 'Faye Valentine (Cowboy
        Bebop)'), so Y may be the name."""
        first = set(self.first)
        said = _compact(qual) in self.tag_keys or set(qual) <= first
        named = set(name) <= first or _compact(name) in _compact(self.first)
        tagged = _compact(name) in self.tag_keys
        return said and tagged and not named and self.parts == [name] and self.brackets == [qual] \
            and not _generic(qual)

    @property
    def texts(self) -> list:
        """Tags then trigger words, cut as names."""
        if self._texts is None:
            self._texts = self.tag_texts + [_clean_cached(t, True, False) for t in self.triggers]
        return self._texts

    def split_title(self, franchises: dict, own=()) -> None:
        """Head = the first title part (digits out) that is not a franchise, else the least known one
        ('Pokemon - Serena (Game)': franchises = {key: cards using it as a series}, ``own``: this card's part
        of those counts); qualifiers = the other parts, the bracketed ones and those of "name (series)"
        forms. A title "X (Y)" is "series (name)" when other cards use X as a series more often than Y
        ('Elden Ring (Malenia)'). The head (or the stem) also says the kind of LoRA: a costume, or a style /
        pose / effect."""
        self.forms = list(self.as_cut)
        if self.title_form is not None:
            name, qual = self.forms[self.title_form]
            # how often other cards use each part as a series
            used = {key: franchises.get(key, 0) - own.count(key) for key in (_compact(name), _compact(qual))}
            if used[_compact(name)] > used[_compact(qual)]:
                self.forms[self.title_form] = (qual, name)
                self.head = list(qual)
                self.quals = [q for _, q in self.forms]  # the title's first part among them
                self._kinds()
                return
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
        self._kinds()

    def _kinds(self) -> None:
        kinds = set(self.head) or set(self.stem)
        self.costume = bool(kinds & CLOTHING_KINDS)
        self.not_character = bool(kinds & NOT_CHARACTER_KINDS)


# The cut cards of the last index built, with what each build made of them (see _Row): a refresh keeps the
# AdapterCard objects of unchanged files, so the next build cuts only new or edited cards and, when what they
# change is local, recomputes only the cards that read it (CharacterIndex._update). One generation is kept.
_LAST = None
# What _index_names makes (a build whose cards' names are all unchanged shares them with the previous one).
_NAME_POSTINGS = ("_name_df", "_common", "_variant_rows", "_anchor", "_compact_names", "_long_words",
                  "_other_anchor", "_other_words", "_partial", "_labels", "_shared")
# A refresh that changes more cards than this (or 1/20 of them) is built whole: cheaper than tracing it.
MAX_UPDATE = 64


class _Row:
    """One card's part in a CharacterIndex, stage by stage (what a later build reuses when the card and what
    it read of the others are unchanged). A build never changes a row it was given: it changes a copy."""
    __slots__ = ("cut", "topic", "strong", "seen1", "split", "fv", "franchises", "head", "first",
                 "character", "cosplay", "names", "form_only", "qualifiers", "other")

    def __init__(self, card, topic: str):
        cut = self.cut = _Card(card)  # as first cut: head and qualifiers from its own words only
        self.topic = topic
        tags = {t.casefold() for t in cut.tags}
        self.strong = not cut.not_character and not cut.costume and (
            bool(tags & _CHARACTER_TAGS) or topic == "character")
        # what it tells the first franchise pass (seen as a qualifier or beside a name), as first cut
        self.seen1 = tuple(k for k in _fv_part(cut)[1]) if self.strong else ()
        self.split = self.fv = self.franchises = self.head = self.first = None
        self.character = self.cosplay = False
        self.names, self.form_only, self.qualifiers, self.other = [], set(), set(), None

    def own(self) -> set:
        """Its words for the document frequencies (word -> cards using it in their own words: name, tags,
        trigger words and description). Not the sample prompts (nor the BM25 text that holds them): a popular
        character ("hatsune miku") is written in the sample prompts of hundreds of other LoRAs and would pass
        for an everyday word. Not kept (a description has many words): a build sums them, an update cuts
        those of the changed cards again."""
        cut = self.cut
        said = cut.title_words | {fold(w) for t in cut.tags + cut.triggers for w in words(_names_text(t))}
        return said | {fold(w) for w in words(cut.card.description or "")}

    def copy(self) -> "_Row":
        new = object.__new__(_Row)
        for name in _Row.__slots__:
            setattr(new, name, getattr(self, name))
        return new

    def at_split(self) -> "_Card":
        """The cut card as the franchise split left it (head with its franchise words)."""
        c = self.cut
        c.head, c.quals, c.costume, c.not_character, c.forms = self.split
        return c

    def at_names(self) -> "_Card":
        """The cut card with its head stripped of franchises, as the name stages read it."""
        c = self.at_split()
        c.head = self.head
        return c

    def tokens(self) -> set:
        """Every word the row's stages read the library's statistics at: a key they look up is one of these
        words or written with them ('genshinimpact'), so it starts with one of them."""
        c = self.cut
        toks = set(c.title_words) | set(c.stem) | set(c.first)
        for group in (c.parts, c.brackets, c.texts):
            for t in group:
                toks.update(t)
        for name, qual in c.forms:
            toks.update(name)
            toks.update(qual)
        return toks


def _fv_part(c) -> tuple:
    """A strong character card's part in the franchise vocabulary (see _franchise_vocab): name keys (its
    head, "name (series)" forms, its first trigger word unless the title starts or ends with it), qualifier
    keys with (confirmed by a tag, spelling, owner), tags written at an edge of the title (spelling, the
    rest of the title), and tags carried beside a name without their words (spelling, the name, the card's
    qualifier keys)."""
    # a name: the title head, a first trigger, a "name (series)" - not a first trigger that the title starts
    # or ends with ('Girls und Panzer Kay': the series)
    heads = [_compact(c.head)]
    heads += list({_compact(name) for name, _ in c.forms})
    first = list(c.first)
    edge = 0 < len(first) < len(c.head) and first in (c.head[:len(first)], c.head[-len(first):])
    if first and not edge:
        heads.append(_compact(first))
    quals = []
    for q in {tuple(q) for q in c.quals}:
        key = _compact(q)
        if _series_like(q):
            quals.append((key, key in c.tag_keys, " ".join(q), _compact(c.head)))
    edges = []
    for toks in c.tag_texts:
        n = len(toks)
        if 1 < n < len(c.head) and (c.head[:n] == list(toks) or c.head[-n:] == list(toks)):
            edges.append((_compact(toks), " ".join(toks),
                          _compact(c.head[n:] if c.head[:n] == list(toks) else c.head[:-n])))
    # tags beside a name that has none of their words (the character's series, group, game - or an
    # attribute, which the library's word counts tell apart: see CharacterIndex._franchise)
    carried = []
    owner = _compact(c.head)
    names = [c.head] + [name for name, _ in c.forms]
    keys = [q[0] for q in quals] + [e[0] for e in edges]
    for toks in {tuple(t) for t in c.tag_texts}:
        key = _compact(toks)
        if owner and _series_like(toks) and not found(SEXUAL, list(toks)) and not any(
                set(toks) & set(name) or key in _compact(name) or _compact(name) in key for name in names):
            carried.append((key, " ".join(toks), owner, tuple(sorted(set(keys) - {key}))))
    return heads, keys, quals, edges, sorted(carried)


def _series_like(toks) -> bool:
    """Words that may be a series' name: not too many, no kind of picture, costume or person, not only a
    number, a gender or a colour."""
    return len(toks) <= MAX_FRANCHISE_WORDS and len(_compact(toks)) >= 3 and not set(toks) & _NOT_FRANCHISE \
        and not all(is_numeral(t) or gender_of_word(t) or t in COLOURS for t in toks)


class _Vocab:
    """The franchise pass's counts: per key, how often it is a name (heads), a qualifier or an edge tag
    (seen), confirmed by a tag, its spellings (in the order the cards first write them: the tie-break), the
    names it qualifies (owners) and the names written beside it."""

    def __init__(self):
        self.seen, self.confirmed, self.heads = Counter(), Counter(), Counter()
        self.spelled, self.owners, self.beside = defaultdict(Counter), defaultdict(set), defaultdict(set)
        # tags carried beside other names: key -> cards, the names they carry it beside, their spellings
        self.carried, self.carriers, self.tag_spelled = Counter(), defaultdict(set), defaultdict(Counter)
        self.carrier_series = defaultdict(set)  # key -> what its carriers' titles write as their series

    TABLES = ("seen", "confirmed", "heads", "spelled", "owners", "beside", "carried", "carriers",
              "tag_spelled", "carrier_series")

    def keys(self) -> set:
        """Every key the franchise decision is made for."""
        return set(self.seen) | set(self.carried)

    def spelling(self, key: str) -> str:
        """The spelling its cards write most often as a series (the first one written: the tie-break), else
        as a tag."""
        return (self.spelled[key] if key in self.seen else self.tag_spelled[key]).most_common(1)[0][0]

    def add(self, fv, only: str | None = None) -> None:
        heads, _, quals, edges, carried = fv
        for key, spelling, owner, series in carried:
            if only is None or key == only:
                self.carried[key] += 1
                self.carriers[key].add(owner)
                self.tag_spelled[key][spelling] += 1
                self.carrier_series[key].update(series)
        for key in heads:
            if only is None or key == only:
                self.heads[key] += 1
        for key, confirmed, spelling, owner in quals:
            if only is None or key == only:
                self.seen[key] += 1
                self.confirmed[key] += confirmed
                self.spelled[key][spelling] += 1
                self.owners[key].add(owner)
        for key, spelling, beside in edges:
            if only is None or key == only:
                self.seen[key] += 1
                self.spelled[key][spelling] += 1
                self.beside[key].add(beside)

    def copy(self) -> "_Vocab":
        new = _Vocab()
        for name in _Vocab.TABLES:
            mine = getattr(self, name)
            theirs = getattr(new, name)
            theirs.update(mine) if isinstance(mine, Counter) else theirs.update(dict(mine))
        return new

    def recount(self, key: str, fvs) -> None:
        """The counts of one key again, from the parts of the cards that may hold it (in row order)."""
        for name in _Vocab.TABLES:
            getattr(self, name).pop(key, None)
        for fv in fvs:
            self.add(fv, key)


class _Segment:
    """One prompt segment: its folded words (joining words out, as in the names), the words written with a
    capital, and whether it reads as a sentence (a one-word name there needs a capital or its series).
    Segments are cached and shared by every reader of one prompt, so each field is immutable (tuples and
    frozensets): a reader that edited one would change what the next reader sees."""
    SENTENCE = 4

    def __init__(self, plain: str):
        raw = words(_names_text(plain))
        self.words = tuple(fold(t) for t in raw if t not in FUNCTION and not is_cjk(t))
        self.tokens = tuple(fold(t) for t in raw if not is_cjk(t))  # joining words kept: what stands beside
        self.capitalized = frozenset(fold(t.lower()) for t in _CAPITALIZED.findall(plain))
        # "yui (k-on!)": the words of the series the name is said to belong to (Danbooru's form), which make
        # no sentence of it ("saber (fate/stay night)")
        form = _NAME_FORM.match(plain)
        said = words(_names_text(form.group(2))) if form else []
        self.qualifier = tuple(fold(t) for t in said if t not in FUNCTION)
        self.sentence = len(raw) - len(said) >= self.SENTENCE
        self.artist = self._after_by(raw)
        pairs = zip(self.words, self.words[1:])
        self.described = frozenset(b for a, b in pairs if a in COLOURS or a in BODY_ATTRIBUTES)

    @staticmethod
    def _after_by(raw: list) -> frozenset:
        """The words of "by Anton Pieck", "art by pieck": who made the picture, never a character in it.
        They run from 'by' to the next joining word ("by the sea" names no one)."""
        if "by" not in raw:
            return frozenset()
        out = set()
        for t in raw[raw.index("by") + 1:]:
            if t in FUNCTION:
                break
            out.add(fold(t))
        return frozenset(out)


@lru_cache(maxsize=64)
def _segments_of(prompt: str) -> tuple:
    """The prompt's segments cut as names, kept for the last prompts: a compose reads them four times
    (names, franchises, full names). Never changed by their readers."""
    return tuple(_Segment(s.plain) for s in split_segments(prompt))


class CharacterIndex:
    def __init__(self, entries, previous: "CharacterIndex | None" = None):
        """``previous``: an index of an earlier snapshot to start from (default: the last one built). Its
        rows of the cards this snapshot still has are reused, and when few cards changed only what they
        touch is computed again; the result is the same as a build from nothing."""
        global _LAST
        self.entries = entries
        self.n = len(entries)
        prev = _LAST if previous is None else previous
        if prev is not None and getattr(prev, "_rows", None) is None:
            prev = None
        rows = self._cut(entries, prev)
        self._names_from = None
        self._own = None
        if prev is None or not self._update(rows, prev):
            rows = [r.copy() for r in rows]
            self._build(rows)  # with the document frequencies of _update when it made them
        self._keep(rows)
        if self._names_from is not None:  # no card's names changed: the name postings are the previous ones
            for name in _NAME_POSTINGS:
                setattr(self, name, getattr(self._names_from, name))
        else:
            self._index_names(rows)
        del self._names_from
        _LAST = self

    @staticmethod
    def _cut(entries, prev) -> list:
        """A row per entry: the previous build's when the card object and its topic are the same, else new."""
        old = prev._by_card if prev is not None else {}
        rows, made = [], {}
        for e in entries:
            card = e.card
            topic = getattr(e.refined, "topic", "")
            r = made.get((id(card), topic)) or old.get(id(card))
            if r is None or r.cut.card is not card or r.topic != topic:
                r = _Row(card, topic)
            made[(id(card), topic)] = r  # the same card twice (a synthetic library) is cut once
            rows.append(r)
        return rows

    def _keep(self, rows: list) -> None:
        """The per-row answers the queries read, as lists."""
        self._rows = rows
        self._by_card = {id(r.cut.card): r for r in rows}
        self._card_franchises = [r.franchises for r in rows]
        self._character = [r.character for r in rows]
        self._cosplay = [r.cosplay for r in rows]
        self._names = [r.names for r in rows]
        self._form_only = [r.form_only for r in rows]
        self._qualifiers = [r.qualifiers for r in rows]
        self._by_franchise = None  # franchise -> rows, made on first use
        self._series_label = {}  # name -> whether several characters' cards write it as a series (lazy)
        self._name_holders = None  # name -> the rows whose names have it, made on first use
        self._tag_counts = None  # tag -> cards carrying it, and how many are characters' (on first use)

    # ---- a build from nothing ----------------------------------------------------------------------------
    def _build(self, rows: list) -> None:
        self._tokens = None  # the word -> cards postings of _update, made when first needed
        self.updated = None
        own = self._own
        if own is None:
            own = Counter()
            for r in rows:
                own.update(r.own())
        self._own = own
        self._df = own.__getitem__
        seen1 = Counter()
        for r in rows:
            seen1.update(r.seen1)
        self._seen1 = seen1
        for r in rows:  # a title that starts with its franchise: the name is the next part
            self._split(r)
        vocab = _Vocab()
        for r in rows:
            if r.strong:
                vocab.add(r.fv)
        self._vocab = vocab
        self._spelling = {key: vocab.spelling(key) for key in vocab.keys()}
        self._folded = {}
        for key in self._spelling:
            spelling = self._franchise(key)
            if spelling is not None:
                self._folded[key] = spelling
        self._titled = {key for key in self._folded if self._series(key)}  # decides carried tags' series
        tags = defaultdict(Counter)
        for r in rows:
            c = r.cut
            for tag, toks in zip(c.tags, c.tag_texts):
                if _compact(toks) in self._folded:
                    tags[_compact(toks)][" ".join(tag.casefold().split())] += 1
        self._tag_spelling = tags
        self.franchise_names = {k: self._franchise_name(k) for k in self._folded}
        self._franchise_len = max((len(v.split()) for v in self._folded.values()), default=0)
        self._franchise_words = {t for v in self._folded.values() for t in v.split()} | set(self._folded)
        for r in rows:
            self._strip(r)
        self._head_df = Counter(t for r in rows if r.strong for t in set(r.head))
        for r in rows:
            if r.strong:
                r.first = self._variants(r.at_names(), set())
        self._known = Counter(_compact(v) for r in rows if r.strong for v in r.first)
        for r in rows:
            self._name_stage(r)

    @property
    def _support(self) -> Counter:
        return self._vocab.seen

    def _franchise(self, key: str):
        """The folded spelling of a franchise key, or None when it is none. Franchises are what character
        cards write as a qualifier - 'Makima (Chainsaw Man)', 'Yor Forger - Spy x Family' - and also carry as
        a tag, or a tag that titles of several characters start or end with ('Girls und Panzer Anchovy',
        'Girls und Panzer Kay'). Not one: a qualifier more often some character's own title ('Yor Briar (Yor
        Forger)'), one with a word of a kind of picture, costume or person, a bare number, or an everyday
        word that only one character's cards use as a qualifier. Also one: a tag that characters of several
        other names carry, though no title writes it (see below)."""
        if self._series(key):
            return self._spelling[key]
        # A tag carried beside several other names that the library does not use far more often elsewhere
        # ('super mario' on Peach, Rosalina, Daisy; not 'horror' or 'monster'), and whose characters belong
        # to no two other series: 'vampire' or 'villain' beside characters of several series is a kind.
        v = self._vocab
        n = v.seen[key] + v.carried[key]
        spelling = self._spelling[key]
        if len(v.carriers[key]) < SPREAD or n <= NAME_USES * v.heads[key]:
            return None
        if self._common_spelling(spelling, n):
            return None
        other = {q for q in v.carrier_series[key] if q not in key and key not in q and self._series(q)}
        return spelling if len(other) < 2 else None

    def _common_spelling(self, spelling: str, uses: int) -> bool:
        """Every word of the spelling is used far more often in the library than as this name (``uses``), as
        _everyday says of one word and its uses in character names."""
        return all(self._df(t) > COMMON_RATIO * uses + COMMON_SLACK for t in spelling.split())

    def _series(self, key: str) -> bool:
        """Whether the key is a franchise by the way titles write it (see _franchise)."""
        v = self._vocab
        n = v.seen[key]
        if not n:
            return False
        everyday = self._common_spelling(self._spelling[key], n)
        qualifier = v.confirmed[key] and (len(v.owners[key]) > 1 or not everyday)
        return bool(qualifier or len(v.beside[key]) > 1) and n > NAME_USES * v.heads[key]

    def _franchise_name(self, key: str) -> str:
        """The spelling the cards' tags use most (for people), else the folded one."""
        tags = self._tag_spelling.get(key)
        return tags.most_common(1)[0][0] if tags else self._folded[key]

    def _split(self, r: "_Row") -> None:
        c = r.cut
        c.split_title(self._seen1, r.seen1)
        r.split = (c.head, c.quals, c.costume, c.not_character, c.forms)
        r.fv = _fv_part(c) if r.strong else None

    def _strip(self, r: "_Row") -> None:
        c = r.at_split()
        r.franchises = self._franchises_of(c)
        r.head = self._strip_franchise(c.head)  # a franchise in the head is no part of the name

    def _name_stage(self, r: "_Row") -> None:
        """Names of the sure characters first; a costume or an uncategorized card is a character's when it
        carries one of those names or a "name (series)" form."""
        c = r.at_names()
        known = self._known
        r.character = self._decide(c, r.strong, known)
        r.cosplay = r.character and (c.costume or bool((c.title_words | set(c.stem) | c.tag_keys) & COSPLAY))
        # ``known`` changes the variants of a costume or of a card with no name of its own only
        own = not c.costume and (c.forms or _compact(c.head) not in self.franchise_names)
        r.names = r.first if r.strong and own else self._variants(c, known) if r.character else []
        # names a card writes only as "name (series)": ambiguous without the series
        only = set()
        if r.names and c.forms:
            plain = {tuple(self._strip_franchise(toks)) for t, toks in zip(c.tags + c.triggers, c.texts)
                     if not _NAME_FORM.match(t)} | {tuple(c.head)}
            only = {tuple(name) for name, _ in c.forms} - plain
        r.form_only = only
        r.qualifiers = {_compact(q) for q in c.quals if not _generic(q)}
        # the name of what is no character (an artist, a place, a style) a character's name may be part of
        r.other = None
        if not r.character:
            v = tuple(t for t in self._strip_franchise(c.head) if t not in _GENERIC and not is_numeral(t))
            r.other = v if len(v) >= 2 else None

    # ---- a build from the previous one -------------------------------------------------------------------
    def _update(self, rows: list, prev: "CharacterIndex") -> bool:
        """Build from ``prev`` when few cards changed: stage by stage, the statistics are updated by the
        changed cards' parts, and only the cards that read a changed key are computed again (the keys a card
        reads are written with its own words: see _Row.tokens). False (nothing kept) when the franchise
        vocabulary changes or too many cards did: the caller builds from nothing."""
        old_rows = prev._rows
        new_ids = {id(r) for r in rows}
        old_ids = {id(r) for r in old_rows}
        added = [i for i, r in enumerate(rows) if id(r) not in old_ids]
        removed = [r for r in old_rows if id(r) not in new_ids]
        if len(added) + len(removed) > max(MAX_UPDATE, len(rows) // 20):
            return False
        pos = {id(r.cut): i for i, r in enumerate(rows)}
        if len(pos) != len(rows) or len(new_ids) != len(rows):
            return False  # the same card twice (a synthetic library): rows cannot be told apart by card
        tokens = prev._tokens if prev._tokens is not None else _postings(old_rows)
        prev._tokens = None  # this build updates them in place: the previous index never reads them again
        for r in removed:
            for t in r.tokens():
                tokens[t].discard(r.cut)
        for i in added:
            for t in rows[i].tokens():
                tokens.setdefault(t, set()).add(rows[i].cut)
        self._tokens = tokens

        def readers(keys, prefix: bool = True) -> set:
            """Rows that may read these keys: that have the word (prefix=False), or whose words can write
            the key ('genshinimpact': 'genshin' + 'impact')."""
            out = set()
            for k in keys:
                if not k:
                    return set(range(len(rows)))
                if not prefix:
                    out.update(pos[id(cut)] for cut in tokens.get(k, ()))
                    continue
                for j in range(1, len(k) + 1):
                    out.update(i for i in (pos[id(cut)] for cut in tokens.get(k[:j], ()))
                               if i not in out and _written_with(k, rows[i].tokens()))
            return out

        def own(i: int) -> "_Row":  # a row this build may change: a copy unless it is new
            if id(rows[i]) in old_ids:
                rows[i] = rows[i].copy()
            return rows[i]

        old = {i: rows[i] for i in range(len(rows)) if id(rows[i]) in old_ids}  # i -> the previous row
        # document frequencies and the first franchise pass: counts, updated by the changed cards
        gone_words, came_words = [r.own() for r in removed], [rows[i].own() for i in added]
        self._own = _recount(prev._own, gone_words, came_words)
        self._df = self._own.__getitem__
        changed_df = {t for ws in gone_words + came_words for t in ws if self._own[t] != prev._own[t]}
        self._seen1 = _recount(prev._seen1, [r.seen1 for r in removed], [rows[i].seen1 for i in added])
        touched = {k for r in removed for k in r.seen1} | {k for i in added for k in rows[i].seen1}
        touched = {k for k in touched if self._seen1[k] != prev._seen1[k]}
        # the title split of the new cards and of those whose title parts' counts changed
        redo = set(added) | readers(touched)
        split_changed = set(added)
        for i in sorted(redo):
            r = own(i)
            self._split(r)
            if i in old and r.split == old[i].split:
                rows[i] = old[i]  # nothing it made changed
            else:
                split_changed.add(i)
        # the franchise vocabulary: counts of the keys the changed parts hold, then their decisions
        gone = [r.fv for r in removed if r.strong]
        gone += [old[i].fv for i in split_changed if i in old and old[i].strong]
        came = [rows[i].fv for i in split_changed if rows[i].strong]
        keys = {k for fv in gone + came for k in fv[0] + fv[1] + [t[0] for t in fv[4]]}
        vocab = prev._vocab.copy()
        for k in keys:
            vocab.recount(k, [rows[i].fv for i in sorted(readers([k])) if rows[i].strong])
        self._vocab = vocab
        self._spelling = dict(prev._spelling)
        known = vocab.keys()
        for k in keys:
            self._spelling.pop(k, None)
            if k in known:
                self._spelling[k] = vocab.spelling(k)
        decide = keys | {k for k, s in self._spelling.items() if any(t in changed_df for t in s.split())}
        self._folded = prev._folded
        self._tag_spelling = prev._tag_spelling
        self._titled = prev._titled
        for k in decide:
            if (self._franchise(k) if k in self._spelling else None) != prev._folded.get(k):
                return False
            if (k in self._spelling and self._series(k)) != (k in prev._titled):
                return False
        tag_keys = {_compact(t) for r in removed for t in r.cut.tag_texts} | {
            _compact(t) for i in added for t in rows[i].cut.tag_texts}
        tag_keys &= self._folded.keys()
        if tag_keys:
            self._tag_spelling = dict(prev._tag_spelling)
            for k in tag_keys:
                tags = Counter()
                for i in sorted(readers([k])):
                    c = rows[i].cut
                    for tag, toks in zip(c.tags, c.tag_texts):
                        if _compact(toks) == k:
                            tags[" ".join(tag.casefold().split())] += 1
                self._tag_spelling[k] = tags
                if self._franchise_name(k) != prev.franchise_names[k]:
                    return False
        self.franchise_names = prev.franchise_names
        self._franchise_len = prev._franchise_len
        self._franchise_words = prev._franchise_words
        # franchises and stripped heads of the cards whose split changed; then the name word counts
        for i in split_changed:
            self._strip(own(i))
        gone_heads = [set(r.head) for r in removed if r.strong] + [
            set(old[i].head) for i in split_changed if i in old and old[i].strong]
        came_heads = [set(rows[i].head) for i in split_changed if rows[i].strong]
        self._head_df = _recount(prev._head_df, gone_heads, came_heads)
        # words whose everyday test changed: every card that has one computes its names again
        maybe = changed_df | {t for h in gone_heads + came_heads for t in h}
        flipped = {t for t in maybe if (prev._own[t] > COMMON_RATIO * prev._head_df[t] + COMMON_SLACK) != (
            self._own[t] > COMMON_RATIO * self._head_df[t] + COMMON_SLACK)}
        everyday = readers(flipped, prefix=False)
        redo = split_changed | everyday
        for i in redo:
            if rows[i].strong:
                own(i).first = self._variants(rows[i].at_names(), set())
        gone_known = [[_compact(v) for v in r.first] for r in removed if r.strong] + [
            [_compact(v) for v in old[i].first] for i in redo if i in old and old[i].strong]
        came_known = [[_compact(v) for v in rows[i].first] for i in redo if rows[i].strong]
        self._known = _recount(prev._known, gone_known, came_known)
        known_changed = {k for ks in gone_known + came_known for k in ks
                         if (k in self._known) != (k in prev._known)}
        names = redo | readers(known_changed)
        for i in names:
            self._name_stage(own(i))
        same = len(rows) == len(old_rows) and all(
            a is b or (a.names == b.names and a.other == b.other and a.franchises == b.franchises
                       and a.head == b.head and a.character == b.character  # what _labels reads
                       and a.cut.tag_keys == b.cut.tag_keys)
            for a, b in zip(rows, old_rows))
        # ... and no word of theirs changed its everyday test, nor the order of rarity of a non-character name
        if same and not any(prev._common[t] != self._is_common(t, prev._name_df) for t in changed_df
                            if t in prev._common) and not changed_df & prev._other_words:
            self._names_from = prev
        # what this update computed again (for benchmarks): cards split, franchise keys, cards named
        self.updated = {"split": len(split_changed), "keys": len(keys), "first": len(redo),
                        "names": len(names)}
        return True

    # ---- what is a character -----------------------------------------------------------------------------
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
        return bool(c.forms) or any(self._telling_name(self._strip_franchise(t), known) for t in texts) \
            or bool(c.costume and self._known_prefix(c.head, known))

    def _known_prefix(self, head: list, known: set) -> list:
        """The known character's name of two words or more a costume's title starts with ('minato aqua' of
        'Minato Aqua 7th Costume School Uniform'): whose costume it is. [] when none."""
        head = self._strip_franchise(head)
        for n in range(min(len(head) - 1, MAX_NAME_WORDS), 1, -1):
            if self._telling_name(head[:n], known):
                return head[:n]
        return []

    def _telling_name(self, toks: list, known: set) -> bool:
        return bool(toks) and _compact(toks) in known and not all(self._everyday(t) for t in toks)

    def is_character(self, row: int) -> bool:
        return self._character[row]

    def is_cosplay(self, row: int) -> bool:
        return self._cosplay[row]

    # ---- franchises --------------------------------------------------------------------------------------
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

    def only_franchises(self, text: str, card: bool = False) -> set:
        """The franchises a prompt segment names when it names nothing else ("genshin impact", "spy x
        family"), else an empty set. ``card``: the text is a card's phrase, whose packaging and version words
        say nothing ('Super Mario LoRA')."""
        words = _clean_tokens(text) if card else _Segment(text).words
        if not words or self.without_franchises(words):
            return set()
        return {self.franchise_names[k] for k, _, _ in self._franchise_runs(words)}

    def prepare(self) -> None:
        """Make the lookups a compose reads over the whole library (names' holders, tag counts) now: the web
        UI's refresh calls it (composer.prepare) so that no generation waits for them (0.3 s at 100,000
        cards); otherwise the first compose that needs one makes it."""
        self._holders()
        self._tags_counted()

    def _tags_counted(self) -> tuple:
        if self._tag_counts is None:
            counts, chars = Counter(), Counter()
            with collections_deferred():
                for row, r in enumerate(self._rows):
                    for key in r.cut.tag_keys:
                        counts[key] += 1
                        chars[key] += self._character[row]
            self._tag_counts = counts, chars
        return self._tag_counts

    def characters_share(self, tag: str) -> tuple:
        """(how many cards carry the tag, the share of them that are characters' cards): a tag nearly only
        characters' cards carry ('virtual youtuber') says who a picture shows."""
        counts, chars = self._tags_counted()
        key = _compact(_clean_cached(tag, True, False))
        return counts[key], chars[key] / max(counts[key], 1)

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
        if head and not base and c.costume:
            base = [self._known_prefix(head, known)] if self._known_prefix(head, known) else []
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

    def _is_common(self, t: str, name_df: Counter) -> bool:
        return self._df(t) > COMMON_RATIO * name_df[t] + COMMON_SLACK or gender_of_word(t) != "" \
            or t in COLOURS or t in CATEGORY or is_numeral(t) or len(t) < 2

    def _index_names(self, rows: list) -> None:
        name_df = Counter(t for vs in self._names for t in {t for v in vs for t in v})
        self._name_df = name_df
        self._common = {t: self._is_common(t, name_df) for t in name_df}
        self._labels = _labels(rows)
        # variant id -> (tokens, rows); postings: anchor token (the variant's rarest) -> variant ids. A label
        # is no name, unless the card says it is its own (its title head or a "name (series)" form).
        self._variant_rows: dict = defaultdict(list)
        for row, vs in enumerate(self._names):
            own = {tuple(rows[row].head)} | {tuple(name) for name, _ in rows[row].cut.forms}
            for v in vs:
                if v in own or _compact(v) not in self._labels:
                    self._variant_rows[v].append(row)
        # one-word names characters of several known franchises have ('yui' of Sword Art Online and of
        # Princess Connect; not 'ahri', whose cards say 'league of legends', some also 'star guardian'): a
        # franchise named in the prompt says which one it means
        self._shared = {v[0] for v, vrows in self._variant_rows.items() if len(v) == 1 and _apart(
            [self._card_franchises[r] for r in vrows]) > 1}
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
        for r in rows:
            if r.other is not None:
                self._other_anchor[min(r.other, key=lambda t: (self._df(t), t))].append(r.other)
        self._other_words = {t for vs in self._other_anchor.values() for v in vs for t in v}
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
    def _segments(prompt: str) -> tuple:
        return _segments_of(prompt)

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

    def unambiguous(self, prompt: str, names: dict, everyday: frozenset = frozenset()) -> dict:
        """``names`` (named_in(prompt)) without the rows named by one word alone, unless their franchise is
        named too ('misty, pokemon'), when that word is a common word of the language ('misty mountains',
        'sage mode', 'neon', 'noir': the library's own statistics miss it when few cards use the word
        otherwise; ``everyday``, a sentence encoder's vocabulary, says which words are common) or is shared by
        characters with other given names ('Uzumaki' of Naruto, Kushina and Himawari: the manga 'Uzumaki')."""
        asked = self.franchises_in(prompt)
        alone: dict = {}  # word -> rows it names alone
        for row, name in names.items():
            words = name.casefold().split()
            if len(words) == 1 and not self.franchises(row) & asked:
                alone.setdefault(words[0], []).append(row)
        dropped = set()
        for word, rows in alone.items():
            given = {frozenset(n[0] for n in self.names(r) if len(n) == 1 and n[0] != word) for r in rows}
            if word in everyday or len(given - {frozenset()}) > 1:
                dropped.update(rows)
        by_word = Counter(name.casefold() for name in names.values())
        strangers = self._beside_strangers(prompt, everyday, {w for w, n in by_word.items() if n > 1})
        dropped.update(row for row, name in names.items()
                       if name.casefold() in strangers and not self.franchises(row) & asked)
        return {row: name for row, name in names.items() if row not in dropped}

    def _beside_strangers(self, prompt: str, everyday: frozenset, shared: set) -> set:
        """The words the prompt writes only as part of someone else's name, beside a word that is neither a
        word of the language (``everyday``) nor one any card of the library says: 'Chris' of "Chris Foss" (a
        painter), both words capitalised; 'nagisa' of the tag "misumi nagisa", a tag of the two words, when
        several characters are called so (``shared``: 'chibi megumin' still names the one Megumin). Words
        right beside each other only ("Megumin and Frieren" is two people) and in every segment that writes
        the word ("Momo, Momo Kessler" names Momo). Without a vocabulary ('Kessler' may be a word) none."""
        if not everyday:
            return set()

        def stranger(w: str) -> bool:
            return w not in everyday and not self._df(w) and w not in self._franchise_words

        flagged, clear = set(), set()
        for seg in self._segments(prompt):
            toks = seg.tokens
            for i, t in enumerate(toks):
                near = toks[max(0, i - 1):i] + toks[i + 1:i + 2]
                if t in seg.capitalized:
                    near_written = [w for w in near if w in seg.capitalized]
                else:
                    near_written = []
                if len(seg.words) == 2 and len(toks) == 2 and not seg.qualifier and t in shared:
                    near_written = near  # a tag that is a full name
                (flagged if any(stranger(w) for w in near_written) else clear).add(t)
        return flagged - clear

    def _series_runs(self, toks: list) -> list:
        """(start, end) of the franchises and labels ('mahou shoujo madoka magica') written in the words."""
        out = [(a, b) for _, a, b in self._franchise_runs(toks)]
        for n in range(2, min(MAX_FRANCHISE_WORDS, len(toks)) + 1):
            out += [(i, i + n) for i in range(len(toks) - n + 1) if _compact(toks[i:i + n]) in self._labels]
        return out

    def named_in(self, prompt: str) -> dict:
        segs = self._segments(prompt)
        asked = {self.franchise_names[k] for k in self._prompt_franchises([s.words for s in segs])}
        quals = {_compact(s.words[i:i + n]) for s in segs for n in range(1, 4)
                 for i in range(len(s.words) - n + 1)}
        found: dict = {}
        written = {t for s in segs for t in s.words}
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
            # Words of a franchise phrase written in the prompt are no character's name: 'madoka' of 'mahou
            # shoujo madoka magica' (a franchise named after its hero, 'naruto', is one word: still his name).
            titles = [set(toks[a:b]) for a, b in self._series_runs(toks) if b - a > 1]
            matched = {v for v in matched if not any(set(v) < t for t in titles)}
            # so are those of a "(series)" qualifier, known or not: 'rin' of "(kaoru hana wa rin to saku)"
            matched = {v for v in matched if not set(v) <= set(seg.qualifier)}
            # and so are an artist's: 'pieck' of "by Anton Pieck"
            matched = {v for v in matched if not set(v) <= seg.artist}
            # A one-word name inside a longer name the prompt writes is someone else's: 'momo' of "ayase momo"
            # is not Momo Yaoyorozu when none of her names has 'ayase', a name word of the library (another
            # character's) written next to it and named by no card here.
            taken = {t for v in matched if len(v) > 1 for t in v}
            beside = self._beside(toks, {v[0] for v in matched if len(v) == 1}, taken | series)
            used = set(seg.qualifier).union(*titles) | seg.artist
            # "yui (k-on!)": the series the name is said to belong to
            said = {self.franchise_names[k] for k, _, _ in self._franchise_runs(seg.qualifier)}
            for v in sorted(matched, key=lambda v: (-len(v), v)):  # never set order: it varies by process
                rows = [r for r in self._variant_rows[v] if self._allowed(v, r, seg, quals, asked)]
                if len(v) == 1 and beside.get(v[0]):
                    rows = [r for r in rows if self._has_words(r, beside[v[0]], fuzzy)]
                # A given name characters of several franchises share names none of another franchise than
                # the one the prompt says (the card's franchise known and not named; crossovers name both;
                # a series of the same family, 'fate/grand order' for 'fate/stay night', is no other one).
                mine = (said or asked) if len(v) == 1 and v[0] in self._shared else set()
                if mine:
                    rows = [r for r in rows if _related(self._card_franchises[r], mine)
                            or not self._card_franchises[r]]
                # "serena (pokemon)": not the Serena of another series
                for series_named in (here, asked):
                    if series_named and any(self._card_franchises[r] & series_named for r in rows):
                        rows = [r for r in rows if self._card_franchises[r] & series_named
                                or not self._card_franchises[r]]
                        break
                if len(v) == 1:  # a full name is one character's whatever series it is said of
                    rows = self._of_said_series(rows, seg)
                # 'cyberpunk edgerunner' names only a card whose own words the prompt writes too (or one
                # titled with it alone); read as the series, its words name no one by themselves either
                label = self._is_series_label(v)
                if label:
                    rows = [r for r in rows if self._names_with(r, v, written)]
                if rows or label:
                    used |= set(v) | {fuzzy.get(w, w) for w in v}
                for row in rows:
                    found.setdefault(row, " ".join(v))
            for t in sorted(present - used):  # one word of a name, with the character's franchise named too
                rows = [r for r in sorted(self._partial.get(t, ())) if self._card_franchises[r] & asked]
                if self._one_character(rows, t):
                    for row in rows:
                        found.setdefault(row, t)
        return found

    def _beside_label(self, row: int, v: tuple) -> set:
        """The words of the card's title pieces that share no word with the name ``v`` ('david martinez' of
        'David Martinez - Cyberpunk Edgerunner -'), or of its other names when the title gives no piece
        ('angewomon' of 'Angewomon天女獸-Digimon數碼寶貝', whose trigger word is 'Digimon(Angewomon)'), less
        numbers, kind words and a word the library reads as its series ('Girlpack')."""
        c = self._rows[row].cut
        pieces = c.parts + c.brackets
        pieces = [p for p in pieces if not set(p) & set(v)] if pieces else list(self._names[row])
        series = {_compact(_clean_cached(f, True, False)) for f in self._card_franchises[row]}
        return {t for p in pieces for t in p
                if t not in v and not t.isdigit() and t not in _GENERIC and t not in series}

    def _names_with(self, row: int, v: tuple, written: set) -> bool:
        """Whether the series name ``v`` names the card with the prompt's words: its title says nothing
        else, or the prompt writes a word of the rest of its title."""
        rest = self._beside_label(row, v)
        return not rest or bool(rest & written)

    def _holders(self) -> dict:
        """Name key -> the cards the library reads it on, as their name or not, and the characters' cards
        whose titles write it after their own names ('Renamon / Digimon'). Made once per index (prepare),
        with no garbage collection set off by its many small objects on the way."""
        if self._name_holders is not None:
            return self._name_holders
        out = defaultdict(set)
        with collections_deferred():
            for row, names in enumerate(self._names):
                for name in names:
                    out[_compact(name)].add(row)
                if self._character[row]:
                    c = self._rows[row].cut
                    for piece in c.parts[1:] + c.brackets:
                        out[_compact(piece)].add(row)
            self._name_holders = {key: sorted(rows) for key, rows in out.items()}
        return self._name_holders

    def _is_series_label(self, v: tuple) -> bool:
        """Whether the name ``v`` is a series that cards of several characters write after their own names
        ('Lucy / Cyberpunk Edgerunners', 'David Martinez - Cyberpunk Edgerunner -'; 'Lila Decyrus 3 outfits
        (Atelier Ryza)', 'Reisalin Stout 9 outfits (Atelier Ryza)'): the library took it for their name, yet
        the words beside it differ from card to card. Titles that start with the name ('Hatsune Miku - Magical
        Mirai', 'Hatsune Miku / Append') say whose they are: the name is that character's."""
        known = self._series_label.get(v)
        if known is None:
            later = []
            for row in self._holders().get(_compact(v), ()):
                c = self._rows[row].cut
                first = c.parts[0] if c.parts else ()
                if not set(first) & set(v):
                    later.append(self._beside_label(row, v))
            known = self._series_label[v] = _apart(w for w in later if w) > 1
        return known

    def _one_character(self, rows: list, word: str) -> bool:
        """Whether the rows' names holding ``word`` are one character's: every card shares one of them with
        another ('raiden' of 'raiden shogun' and 'raiden ei' on cards of the one Raiden). Several characters'
        names that share a word ('cure' of Cure Peace and Cure Flora, both Precure) leave it no one's."""
        names = [{frozenset(v) for v in self._names[r] if word in v} for r in rows]  # in any word order
        if len(names) < 2:
            return True
        group = set(names[0])
        left = names[1:]
        while left:
            joined = [n for n in left if n & group]
            if not joined:
                return False
            for n in joined:
                group |= n
            left = [n for n in left if not n & group]
        return True

    def _of_said_series(self, rows: list, seg: "_Segment") -> list:
        """The rows a "given-name (series)" segment may name: 'riko (made in abyss)' names no Riko whose card
        says another series (Pokemon) and no word of that one. Where a card of the name has that qualifier,
        the library knows the name with it (a version of the character, 'saber (alter)'): all stay. A card
        that says no series of its own may be of the one written: it stays too."""
        said = seg.qualifier
        if not said or not _series_like(said):
            return rows
        key = _compact(said)
        if any(key in self._qualifiers[r] for r in rows):
            return rows
        return [r for r in rows if not (self._card_franchises[r] or self._qualifiers[r])
                or set(said) & self._card_words(r)]

    def _card_words(self, row: int) -> set:
        """The words of a card's title, file name, tags and main trigger word, as names are cut."""
        c = self._rows[row].cut
        return set(c.title_words) | set(c.stem) | c.said

    def _beside(self, toks: list, singles: set, taken: set) -> dict:
        """{one-word name: the telling name words written right next to it}: words that are in the library's
        names, not everyday, and not part of another name or franchise found in the segment."""
        out: dict = {}
        for i, t in enumerate(toks):
            if t in singles:
                near = {toks[j] for j in (i - 1, i + 1) if 0 <= j < len(toks)}
                out.setdefault(t, set()).update(
                    w for w in near if w != t and w not in taken and self._name_df[w]
                    and not self._common.get(w, True))
        return out

    def _has_words(self, row: int, toks: set, fuzzy: dict) -> bool:
        """Whether the row's names hold every one of the words (a name word within one edit counts)."""
        own = {t for v in self._names[row] for t in v}
        own |= {fuzzy[t] for t in own if t in fuzzy}
        return toks <= own

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
        with collections_deferred():  # see index.refresh
            idx = CharacterIndex(snapshot.entries)
        snapshot._stylus_characters = idx
    return idx


def _labels(rows: list) -> set:
    """Phrases (keys) of several words that tag characters of two or more other names: the title of their
    franchise ('mahou shoujo madoka magica' on Homura's and Mami's cards), which is no name, though it holds
    one ('madoka'). Read whether the library knows it as a franchise or not."""
    owners = defaultdict(set)
    for r in rows:
        if r.character and r.head:
            head = frozenset(r.head)
            for toks in r.cut.tag_texts:
                if len(toks) > 1 and not head & set(toks) and _series_like(toks):
                    owners[_compact(toks)].add(head)
    # 'homura' and 'homura akemi' are one character
    return {key for key, heads in owners.items() if sum(not any(h < o for o in heads) for h in heads) > 1}


def _related(franchises: set, others: set) -> bool:
    """Whether two sets of franchises share a word ('fate/grand order', 'fate/stay night')."""
    mine = {t for f in franchises for t in _clean_cached(f, True, False)}
    return any(t in mine for f in others for t in _clean_cached(f, True, False))


def _apart(groups) -> int:
    """How many groups of franchises remain when the sets that share a franchise are merged."""
    merged = []
    for group in groups:
        group = set(group)
        for other in [m for m in merged if m & group]:
            group |= other
            merged.remove(other)
        if group:
            merged.append(group)
    return len(merged)


def _recount(base: Counter, gone, came) -> Counter:
    """A copy of ``base`` less the keys of each of ``gone`` and plus those of ``came``; no zero counts left (a
    key's presence is read as "some card has it")."""
    out = Counter(base)
    for keys in gone:
        for k in keys:
            out[k] -= 1
    for keys in came:
        for k in keys:
            out[k] += 1
    for k in {k for keys in list(gone) + list(came) for k in keys}:
        if out[k] <= 0:
            del out[k]
    return out


def _written_with(key: str, toks: set) -> bool:
    """Whether ``key`` is some of these words written one after another."""
    ends = {0}
    for i in range(len(key)):
        if i in ends:
            ends.update(j for j in range(i + 1, len(key) + 1) if key[i:j] in toks)
    return len(key) in ends


def _postings(rows: list) -> dict:
    """Word -> the cut cards whose stages read the library at a key starting with it (see _Row.tokens)."""
    out: dict = {}
    for r in rows:
        for t in r.tokens():
            out.setdefault(t, set()).add(r.cut)
    return out
