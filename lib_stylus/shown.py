"""What a LoRA's own sample images show, read from their prompts (AdapterCard.sample_prompts: the Civitai
images' prompts), as the other direction of a match (issue 10: "the adapter adds nothing the prompt does not
ask for"). A card's name may say one thing and its images show another: "still life, Oil paintings, Flowers"
paints still lifes whatever the prompt's oil painting shows; a clothing LoRA tagged "elephant" shows a girl
in elephant-print trousers, not elephants. The images are what the LoRA puts into a picture.

Two checks, each saying nothing when the card has no usable sample prompt:

* ``SHOWN_NOT_ASKED``: every sample (two different sample prompts at least: one image posted twice says
  nothing of what the LoRA always shows) shows one of the card's own name pieces (a phrase of everyday words,
  not a made-up trigger token), the piece the prompt matched appears in no sample, and the prompt does not
  ask for what is shown: the images show the shown piece, not the matched one.
* ``SOMEONE_NOT_ASKED``: a clothing or character LoRA (content.py's person topics) whose every sample
  pictures a person, matched on a tag or a part of a phrase, for a prompt that pictures no one.

``Shown`` per card is worked out once from its sample prompts at index time (``prepare``, from the
composer's) and kept for the card: the next snapshot reuses it for the cards of unchanged files, so a
refresh works out only edited cards; a compose only looks up the few candidates that reach the rules."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .characters import character_index
from .content import PERSON_TOPICS
from .purpose import NAME_KIND, TAG_KIND, purpose_index, purpose_words
from .refiner import clean_prompt
from .words import BODY_ATTRIBUTES, CLOTHING_KINDS, PERSON, fold, folded, found, gender_of_word

SHOWN_NOT_ASKED = "its sample images show"
SOMEONE_NOT_ASKED = "its sample images all show a person"
# A word of the language, not a made-up trigger token ("still", "life" vs "zydink"): used in the text of at
# least this share of the cards (and of COMMON_MIN cards in a small library).
COMMON_SHARE = 0.002
COMMON_MIN = 3


@dataclass(frozen=True)
class Shown:
    """``samples``: the words (folded like purpose phrases) of each different usable sample prompt;
    ``person``: every sample pictures someone and none says 'no humans'."""
    samples: tuple = ()
    person: bool = False


def shown_of(card) -> Shown:
    samples, people = [], []
    for prompt in card.sample_prompts or ():
        if not isinstance(prompt, str):
            continue
        text = clean_prompt(prompt).replace("_", " ")
        words = frozenset(purpose_words(text))
        if not words:
            continue  # empty, or only a <lora:> tag and boilerplate: says nothing
        if words not in samples:
            samples.append(words)
        if _NOBODY.search(prompt):
            people.append(False)
            continue
        toks = folded(prompt)  # the raw prompt: cleaning drops '1girl' with the boilerplate
        people.append(any(gender_of_word(t) or t in PERSON for t in toks))
    return Shown(tuple(samples), bool(people) and all(people))


_NOBODY = re.compile(r"(?i)\bno[\s_]+humans?\b")  # Danbooru's tag for a picture of no one


def card_shown(snapshot, row: int) -> Shown:
    """The snapshot's Shown of a row (prepare() fills them all; else worked out on first use)."""
    cache = _cache(snapshot)
    if row not in cache:
        cache[row] = shown_of(snapshot.entries[row].card)
    return cache[row]


def prepare(snapshot) -> None:
    """Every row's Shown now (the index's refresh, before the snapshot is in use): about 0.3 ms a card the
    first time; the previous snapshot's are reused for the same card objects (a refresh keeps the cards of
    unchanged files), so a one-file refresh works out one card. One generation is kept."""
    global _LAST
    cache = _cache(snapshot)
    fresh = {}
    for row, entry in enumerate(snapshot.entries):
        card = entry.card
        hit = _LAST.get(id(card))
        shown = hit[1] if hit is not None and hit[0] is card else cache.get(row) or shown_of(card)
        cache[row] = shown
        fresh[id(card)] = (card, shown)
    _LAST = fresh


def _cache(snapshot) -> dict:
    cache = getattr(snapshot, "_stylus_shown", None)
    if cache is None:
        cache = snapshot._stylus_shown = {}
    return cache


_LAST: dict = {}  # id(card) -> (card, Shown) of the last snapshot prepared


def pictures_someone(prompt: str, profile) -> bool:
    """The prompt pictures a person: a gender or person word ('1girl', 'a woman', 'people'), a named
    character, a body attribute ('long hair', 'blue eyes'), or a garment or someone wearing one ('pilot
    suit', 'wearing a chinese dress': the wearer may be a knight or a mechanic, words no class lists)."""
    if profile.genders or profile.named:
        return True
    toks = folded(prompt or "")
    return any(t in PERSON or t in _WEARING for t in toks) or bool(found(_WORN, toks))


_WEARING = frozenset(fold(w) for w in "wearing wear wears worn dressed clad".split())
_WORN = BODY_ATTRIBUTES | CLOTHING_KINDS


class ShownCheck:
    """One compose's check of candidates against what their sample images show."""

    def __init__(self, snapshot, prompt: str, profile):
        self.snap = snapshot
        self.words = frozenset(purpose_words(prompt or ""))
        self.someone = pictures_someone(prompt, profile)
        self._pidx = None

    def conflict(self, doc: int, unit: int, named: bool = False) -> str:
        """Why the card's images add what the prompt does not ask for ('' if they do not, or cannot say).
        ``unit``: the purpose phrase matched (< 0: the prompt names the card's character: never refused)."""
        if named or unit < 0 or character_index(self.snap).is_character(doc):
            return ""  # who a character LoRA shows is the character rules' (characters.py) to judge
        shown = card_shown(self.snap, doc)
        if not shown.samples:
            return ""
        pidx = self._pidx = self._pidx or purpose_index(self.snap)
        matched = pidx.unit_words(unit)
        if len(shown.samples) > 1 and not any(matched & words for words in shown.samples):
            piece = self._shown_piece(pidx, doc, matched, shown)
            if piece:
                asked = pidx.unit_text[unit]
                return f"{SHOWN_NOT_ASKED} '{piece}', which the prompt does not ask for (not '{asked}')"
        topic = self.snap.entries[doc].refined.topic
        partial = int(pidx.unit_kind[unit]) == TAG_KIND or not matched <= self.words
        if shown.person and not self.someone and topic in PERSON_TOPICS and partial:
            return f"{SOMEONE_NOT_ASKED} (a {topic} LoRA), and the prompt pictures no one"
        return ""

    def _shown_piece(self, pidx, doc: int, matched: frozenset, shown: Shown) -> str:
        """A title piece of the card, in everyday words, that every sample shows and the prompt does not
        ask."""
        lo, hi = np.searchsorted(pidx.unit_doc, [doc, doc + 1])
        least = max(COMMON_MIN, COMMON_SHARE * pidx.n)
        for u in range(int(lo), int(hi)):
            words = pidx.unit_words(u)
            if int(pidx.unit_kind[u]) != NAME_KIND or words & matched or words <= self.words:
                continue
            if all(words <= sample for sample in shown.samples) and \
                    all(pidx.full_df(w) >= least for w in words):
                return pidx.unit_text[u]
        return ""
