"""What a prompt asks for and what a LoRA would add, so the composer never adds what the prompt does not ask
for (issue 10 items 3 and 8, "never add sexual content"): sexual or revealing content, another gender, an
ethnicity, a real person's likeness.

Interface (stable; the composer uses it - extend, do not rename):

* ``Profile``: ``genders`` (frozenset of "female"/"male"), ``explicit`` / ``revealing`` (sex or nudity /
  underwear, swimwear, cleavage, "sexy"; ``nsfw`` is either), ``sexual_words``, ``ethnicities``,
  ``real_person``, ``named`` (rows a prompt names, see characters.named_in) and ``subject`` ("named" or
  "generic"); for a card also ``row`` (its row in the snapshot, -1 if unknown), ``civitai_nsfw`` and
  ``explicit_modes`` (the explicit words of its other trigger words: a mode the author trained it for).
* ``profile_prompt(prompt, named=None) -> Profile``: ``named`` is ``CharacterIndex.named_in(prompt)`` when the
  caller has it (a named real person is then asked for).
* ``profile_card(entry, row=-1, characters=None) -> Profile``: from the Civitai ``model.nsfw`` flag
  (AdapterCard.nsfw) and the words of its title head, stem, tags and main trigger word; ``characters`` (the
  snapshot's CharacterIndex) drops franchise names first ('Chainsaw Man' has no gender). Gender and ethnicity
  count where they say who the LoRA shows: its name and main trigger (not for a style, background, building,
  vehicle or animal LoRA), and the who-tags ('man', 'korean woman') of a character / clothing LoRA (a style
  tagged "woman" has no gender); an ethnicity only next to a person word ("korean woman", not a "chinese ink"
  style or a hanfu).
* ``card_profile(snapshot, row) -> Profile``: ``profile_card`` of a snapshot's row with the snapshot's
  CharacterIndex, computed once and kept on the snapshot.
* ``media`` / ``medium_words``: "photo" and/or "drawn" (words.PHOTO_MEDIUM, DRAWN_MEDIUM) and the words that
  say so: what a prompt asks its picture to be made in (not a photograph it shows being held), and for a card
  the one medium its name says, or a style's name and tags say (none when they say both).
* ``skin``: the skin tones (words.SKIN_TONES) a prompt writes, or a card's name or one of its tags is.
* ``material`` (a card: what it makes things of, 'smoke' of a 'Smoke' LoRA that makes "objects out of
  smoke") and ``made_of`` (a prompt: what it asks things made of); the composer's gate compares them.
* ``conflict(card, prompt, character=False) -> str``: the reason the card adds what the prompt does not ask
  for, "" when none.
  Each reason starts with one of the constants below.

Word classes live in words.py. Where unsure it says "conflict": a lost pick costs less than a spoiled
image."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .characters import character_index, title_head
from .prompt import split_segments
from .words import (BETWEEN_MEDIA, CATEGORY, DRAWN_MEDIUM, ETHNIC, ETHNIC_PERSON, EXPLICIT, FEMALE, HELD,
                    FUNCTION, LENS, MALE, NOT_MEDIA, PERSON, PHOTO_MEDIUM, REAL_PERSON, REVEALING,
                    SKIN_TONES, STYLE_WORDS, fold, folded, found, found_each, gender_of_word)

UNASKED_SEXUAL = "sexual content the prompt does not ask for"
UNASKED_REVEALING = "revealing content the prompt does not ask for"
OTHER_GENDER = "another gender than the prompt asks for"
UNASKED_ETHNICITY = "an ethnicity the prompt does not ask for"
REAL_LIKENESS = "a real person's likeness for a generic subject"
ANOTHER_MEDIUM = "another medium than the prompt asks for"
UNASKED_SKIN = "a skin tone the prompt does not ask for"

# Topics whose tags say who is pictured (a style or pose LoRA is tagged "woman" for its sample images).
PERSON_TOPICS = {"character", "clothing"}
# Topics whose LoRAs show no one in particular: a gender word in their name is a series' or a sample's.
_NO_PERSON_TOPICS = {"style", "background", "building", "vehicle", "animal"}
# "asian" is asked by any of these, and asks for them.
_ASIAN = {fold(w) for w in """asian east asian southeast asian south asian japanese korean chinese taiwanese
    thai vietnamese filipino filipina indonesian malaysian indian mongolian""".split()}
_PERSON_WORDS = PERSON | FEMALE | MALE


@dataclass(frozen=True)
class Profile:
    genders: frozenset = frozenset()
    explicit: bool = False
    revealing: bool = False
    sexual_words: tuple = ()
    ethnicities: frozenset = frozenset()
    real_person: bool = False
    named: frozenset = frozenset()
    subject: str = "generic"
    row: int = -1
    civitai_nsfw: bool = False
    media: frozenset = frozenset()
    medium_words: tuple = ()
    skin: tuple = ()
    material: frozenset = frozenset()
    made_of: frozenset = frozenset()
    explicit_modes: tuple = ()

    @property
    def nsfw(self) -> bool:
        return self.explicit or self.revealing


def _genders(toks: list) -> set:
    return {g for g in (gender_of_word(t) for t in toks) if g}


def _ethnic_people(phrases: list) -> set:
    """Ethnicity words in phrases that also name a person: 'korean woman', 'asian man', 'latina' - not the
    'chinese' of a hanfu or an ink-painting LoRA."""
    out = set()
    for toks in phrases:
        ethnic = found(ETHNIC, toks)
        person = found(ETHNIC_PERSON, toks) or any(t in _PERSON_WORDS or gender_of_word(t) for t in toks)
        if ethnic and person:
            out.update(ethnic)
    return out


_MEDIA = (("photo", PHOTO_MEDIUM), ("drawn", DRAWN_MEDIUM))


def _without(toks: list, cls: frozenset) -> list:
    """The tokens with every phrase of a word class taken out."""
    out = []
    i = 0
    while i < len(toks):
        n = next((n for n in (3, 2) if " ".join(toks[i:i + n]) in cls), 0)
        if n:
            out.append("|")  # no phrase spans the gap
        else:
            out.append(toks[i])
        i += n or 1
    return out


def _media(toks: list, held: bool = False) -> tuple:
    """(media, words) one text says: a medium between the two says both; with ``held``, a medium word a few
    words after 'holding' / 'reading' is a thing in the picture ('reading a manga'), not its medium."""
    media = set()
    said = []
    toks = _without(toks, NOT_MEDIA)
    for n in (3, 2, 1):
        for i in range(len(toks) - n + 1):
            phrase = " ".join(toks[i:i + n])
            before = toks[max(0, i - 3):i]
            if held and found(HELD, before):
                continue
            if phrase in BETWEEN_MEDIA:
                return frozenset(m for m, _ in _MEDIA), (phrase,)
            if n == 1 and LENS.match(phrase):
                media.add("photo")
                said.append(phrase)
            for medium, cls in _MEDIA:
                if phrase in cls:
                    media.add(medium)
                    said.append(phrase)
    return frozenset(media), tuple(dict.fromkeys(said))


_MEDIUM_WORDS = PHOTO_MEDIUM | DRAWN_MEDIUM | BETWEEN_MEDIA | STYLE_WORDS


def medium_only(tokens) -> bool:
    """Whether the words only say how the picture is made ('watercolor', 'oil painting', 'pixel art style'): a
    medium's sense does not depend on what the picture shows."""
    toks = [fold(t) for t in tokens]
    rest = [t for t in _without(toks, _MEDIUM_WORDS) if t != "|" and t not in _MEDIUM_WORDS]
    return bool(toks) and not rest


def _prompt_media(prompt: str) -> tuple:
    media = set()
    said = []
    for segment in split_segments(prompt):
        m, w = _media(folded(segment.plain), held=True)
        media |= m
        said += w
    return frozenset(media), tuple(dict.fromkeys(said))


def _card_media(card, topic: str) -> tuple:
    """The one medium a card's name says (a style's tags too): 'fashion watercolor', a 'Comic Cover', a
    'Lynx - Style' tagged 'anime'. None when they say both. The tags of a LoRA that its name does not call a
    style say what its samples were drawn in ('Lara Croft' tagged 'anime' and 'style'), not the look it
    gives."""
    toks = folded(card.title or "") + folded(card.stem or "")
    media, said = _media(toks)
    if topic == "style" and found(STYLE_WORDS, toks):
        for tag in card.tags or ():
            if isinstance(tag, str):
                m, w = _media(folded(tag))
                media |= m
                said += w
    if len(media) != 1:
        return frozenset(), ()
    return frozenset(media), tuple(dict.fromkeys(said))


# "people, animals, objects out of smoke", "Made of Ice": a LoRA that makes things of a material
_DESCRIBED = 1000  # a card's description is read this far for what it makes things of
_MADE = r"\b(?:made (?:out )?of|made from|formed (?:of|from)|composed of|consisting of)\s+"
_MATERIAL = r"([^\W_]+(?:\s+[^\W_]+){0,2})"
_MADE_OF = re.compile(_MADE + _MATERIAL, re.I)
# in a description also "creates objects out of smoke" (a title's "Out of Frame" is no material)
_DESCRIBED_MADE_OF = re.compile(r"(?:" + _MADE + r"|\bout of\s+)" + _MATERIAL, re.I)


def _head(text: str) -> str:
    """The word a material phrase ends on, before a joining word: 'smoke' of 'smoke and fire', 'cream' of
    'strawberry ice cream'."""
    out = ""
    for w in folded(text):
        if w in FUNCTION or w in ("a", "and", "or"):
            break
        out = w
    return out


def _material(card) -> frozenset:
    """The material a LoRA makes things of, when it is the LoRA's purpose (a word of its title or main
    trigger): said after 'made of' in the title or the main trigger ('Made of Ice', 'made_of_ice'), or after
    'out of' / 'made of' in its description ('Smoke': 'objects out of smoke')."""
    triggers = [t for t in card.trigger_words or () if isinstance(t, str)][:1]
    named = " | ".join([card.title or ""] + triggers).replace("_", " ")
    purpose = set(folded(named))
    said = [m.group(1) for m in _MADE_OF.finditer(named)]
    described = (getattr(card, "description", "") or "")[:_DESCRIBED]
    said += [m.group(1) for m in _DESCRIBED_MADE_OF.finditer(described)]
    return frozenset(w for w in map(_head, said) if w in purpose)


def _made_of(prompt: str) -> frozenset:
    """What the prompt asks things made of ('smoke' of 'a wolf made of smoke')."""
    return frozenset(_head(m.group(1)) for m in _DESCRIBED_MADE_OF.finditer(prompt.replace("_", " ")))


def profile_prompt(prompt: str, named: dict | None = None) -> Profile:
    toks = folded(prompt or "")
    explicit = found(EXPLICIT, toks)
    revealing = found(REVEALING, toks)
    named_rows = frozenset(named or ())
    media, medium_words = _prompt_media(prompt or "")
    return Profile(genders=frozenset(_genders(toks)), explicit=bool(explicit), revealing=bool(revealing),
                   sexual_words=tuple(dict.fromkeys(explicit + revealing)),
                   ethnicities=frozenset(found(ETHNIC, toks)),
                   real_person=bool(found(REAL_PERSON, toks)), named=named_rows,
                   subject="named" if named_rows else "generic", media=media, medium_words=medium_words,
                   skin=tuple(dict.fromkeys(found(SKIN_TONES, toks))), made_of=_made_of(prompt or ""))


def _who_tag(toks: list) -> bool:
    """A tag that says who is pictured: 'man', 'korean woman', 'anime girl' - not a series' name that holds
    a gender word ('chainsaw man', 'the king of fighters')."""
    return len(toks) == 1 or len(toks) == 2 and (gender_of_word(toks[-1]) != "" or toks[-1] in PERSON) \
        and (toks[0] in ETHNIC or toks[0] in CATEGORY or gender_of_word(toks[0]) != "")


def profile_card(entry, row: int = -1, characters=None) -> Profile:
    """``characters`` (the snapshot's CharacterIndex, if at hand) drops franchise names from the card's words
    first: the 'man' of 'Chainsaw Man' is nobody's gender."""
    card = getattr(entry, "card", entry)
    topic = getattr(getattr(entry, "refined", None), "topic", "")
    triggers = [t for t in card.trigger_words or () if isinstance(t, str)]
    heads = [title_head(t) for t in [card.title or ""] + triggers[:1]]
    purpose = [folded(t) for t in heads] + [folded(card.stem or "")]
    tags = [folded(t) for t in card.tags or () if isinstance(t, str)]
    if characters is not None:
        purpose = [characters.without_franchises(toks) for toks in purpose]
        tags = [characters.without_franchises(toks) for toks in tags]
    explicit = found_each(EXPLICIT, purpose + tags)
    # Past the main one's head, trigger words describe the training images, so they do not say what the LoRA
    # is for; but an author who lists "nsfw" among its modes ('white bodysuit, nsfw') trained it on such
    # images: it is no LoRA for a safe prompt (a character's own card aside: conflict)
    modes = found_each(EXPLICIT, [folded(trigger) for trigger in triggers])
    # "sexy" is Civitai's catch-all tag: as a tag it says little; in the LoRA's name it is its purpose
    revealing = found_each(REVEALING, purpose + tags)
    revealing = [w for w in revealing if w != "sexy" or any(w in toks for toks in purpose)]
    who = [] if topic in _NO_PERSON_TOPICS else purpose
    who += [toks for toks in tags if _who_tag(toks)] if topic in PERSON_TOPICS else []
    genders = _genders([t for toks in who for t in toks])
    media, medium_words = _card_media(card, topic) if topic != "character" else (frozenset(), ())
    skin = found(SKIN_TONES, [t for toks in purpose for t in toks])
    skin += [" ".join(toks) for toks in tags if " ".join(toks) in SKIN_TONES]
    return Profile(genders=frozenset(genders if len(genders) == 1 else ()),
                   explicit=bool(explicit) or bool(card.nsfw), revealing=bool(revealing),
                   sexual_words=tuple(dict.fromkeys(explicit + revealing)),
                   ethnicities=frozenset(_ethnic_people(purpose + tags)),
                   real_person=bool(found(REAL_PERSON, [t for toks in tags for t in toks])),
                   row=row, civitai_nsfw=bool(card.nsfw), media=media, medium_words=medium_words,
                   skin=tuple(dict.fromkeys(skin)), material=_material(card),
                   explicit_modes=tuple(dict.fromkeys(modes)))


def card_profile(snapshot, row: int) -> Profile:
    """The snapshot's card profiles, each made on first use and kept (a refresh swaps in a new snapshot)."""
    cache = getattr(snapshot, "_stylus_profiles", None)
    if cache is None:
        cache = snapshot._stylus_profiles = {}
    if row not in cache:
        cache[row] = profile_card(snapshot.entries[row], row, character_index(snapshot))
    return cache[row]


def _ethnicity_asked(card: set, prompt: set) -> bool:
    if card & prompt:
        return True
    return bool(card & {"asian"} and prompt & _ASIAN or prompt & {"asian"} and card & _ASIAN)


def conflict(card: Profile, prompt: Profile, character: bool = False) -> str:
    """``character``: the card is a character (the prompt names her, or the LoRA is one): her medium and her
    skin are her own look, which the character rules decide on, and an explicit mode among her card's trigger
    words is one costume of several."""
    if card.explicit and not prompt.explicit:
        why = ", ".join(card.sexual_words) or "Civitai marks the model NSFW"
        return f"{UNASKED_SEXUAL} ({why})"
    if card.explicit_modes and not character and not prompt.explicit:
        # a character the prompt names (or a character's LoRA) keeps her card: its safe modes are her look
        return f"{UNASKED_SEXUAL} (a trigger word: {', '.join(card.explicit_modes)})"
    if card.revealing and not prompt.nsfw:
        return f"{UNASKED_REVEALING} ({', '.join(card.sexual_words)})"
    if card.genders and prompt.genders and not card.genders & prompt.genders:
        return f"{OTHER_GENDER} ({'/'.join(sorted(card.genders))} for {'/'.join(sorted(prompt.genders))})"
    if card.ethnicities and not _ethnicity_asked(set(card.ethnicities), set(prompt.ethnicities)):
        return f"{UNASKED_ETHNICITY} ({', '.join(sorted(card.ethnicities))})"
    if card.real_person and card.row not in prompt.named and not prompt.real_person:
        return REAL_LIKENESS
    if character:
        return ""
    if card.skin and not prompt.skin:
        return f"{UNASKED_SKIN} ({', '.join(card.skin)})"
    if card.media and prompt.media and not card.media & prompt.media:
        theirs = ", ".join(card.medium_words)
        asked = ", ".join(prompt.medium_words)
        return f"{ANOTHER_MEDIUM} ('{theirs}' for '{asked}')"
    return ""
