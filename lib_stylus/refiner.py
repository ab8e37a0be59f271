"""The paper's refiner, done locally: AdapterCard -> one clean description, a recommended weight and a topic.
Pluggable: extra `captioners` (e.g. a vision-language model describing the preview) add text to the
description."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .catalog.card import AdapterCard
from .purpose import plain_title
from .text import collapse

REFINER_VERSION = 3  # bump when the text changes: indexes are keyed by it and rebuild
DEFAULT_WEIGHT = 0.8
TOPICS = ("concept", "style", "pose", "action", "character", "clothing", "background", "building", "vehicle",
          "animal")

# Prompt boilerplate that says nothing about what an adapter does (the composer skips such segments too).
BOILERPLATE = {
    "masterpiece", "best quality", "high quality", "highest quality", "top quality", "ultra detailed",
    "ultra-detailed", "highres", "absurdres", "8k", "4k", "hdr", "uhd", "extremely detailed", "detailed",
    "intricate details", "official art", "illustration", "1girl", "1boy", "solo", "looking at viewer",
    "realistic", "photorealistic", "raw photo", "best quality", "high resolution",
    "extremely detailed cg unity 8k wallpaper", "beautiful", "sharp focus",
}
_GENERIC_TAGS = {"lora", "character", "style", "concept", "anime", "girl", "girls", "woman", "women",
                 "female", "male", "man", "sexy", "cute", "beautiful", "photorealistic", "realistic",
                 "art style", "artstyle", "clothing"}

PURPOSE_TAGS = 6  # tags in the purpose text: the first ones are the author's main labels
_PURPOSE_GENERIC = _GENERIC_TAGS | {
    "character", "characters", "concept", "concepts", "style", "styles", "anime", "clothing", "clothes",
    "poses", "pose", "lora", "objects", "tool"}

# Topic rules: tag/name words -> topic; first match in priority order wins (a "cyberpunk car" is a vehicle).
_TOPIC_WORDS = [
    ("character", r"character|celebrity|real person|actress|actor|vtuber|idol|kpop|waifu|cosplay|"
                  r"game character|anime character"),
    ("clothing", r"clothing|clothes|outfit|dress|uniform|costume|armor|armour|swimsuit|bikini|kimono|hanfu|"
                 r"fashion|lingerie|shoes|hat|gloves|jacket|suit"),
    ("vehicle", r"vehicle|car|cars|motorcycle|aircraft|airplane|plane|ship|train|tank|mecha|gundam|"
                r"spaceship|truck|bike"),
    ("building", r"building|buildings|architecture|interior|house|castle|temple|city|tower|room"),
    ("background", r"background|landscape|scenery|environment|world|place|location"),
    ("animal", r"animal|animals|cat|dog|horse|bird|dragon|fox|wolf|creature|pokemon|monster|fish"),
    ("pose", r"pose|poses|posing|gesture|hands"),
    ("action", r"action|fighting|running|jumping|dancing|sitting|holding|eating"),
    ("style", r"style|art style|artstyle|artist|painting|illustration|aesthetic|drawing|sketch|watercolor|"
              r"render|3d|2d|manga|comic|photography|film"),
]
_WEIGHT_RANGE = re.compile(r"(?:weight|strength|lora|recommend\w*).{0,40}?(-?\d(?:\.\d+)?)"
                           r"\s*(?:-|~|to|–)\s*(-?\d(?:\.\d+)?)", re.I)
_LORA_TAG = re.compile(r"<[^>]*>")
_EMPHASIS = re.compile(r"[()\[\]{}]|:\s*-?\d+(?:\.\d+)?(?=\s*[)\],])")


@dataclass
class Refined:
    text: str                # full description, for lexical indexing
    dense_text: str          # what the adapter is for, in a few words (purpose_text): the encoder's input
    weight: float
    topic: str
    extra: dict = field(default_factory=dict)


Captioner = Callable[[AdapterCard], str]


def refine(card: AdapterCard, captioners: Sequence[Captioner] = ()) -> Refined:
    words = card_words(card)
    captions = [c for c in (cap(card) for cap in captioners) if c]
    head = " . ".join(p for p in [card.title, ", ".join(words["tags"]), ", ".join(card.trigger_words)] if p)
    samples = " . ".join(words["samples"])
    text = collapse(" . ".join(p for p in [card.stem, head, ", ".join(words["freq"]), card.description[:2000],
                                           samples, *captions] if p))
    return Refined(text=text, dense_text=purpose_text(card), weight=recommended_weight(card),
                   topic=topic(card))


def purpose_text(card: AdapterCard) -> str:
    """What the adapter is for, in a few words for the sentence encoder: its title and its specific tags
    ("Clouds - Style. 2.5d" vs "Beautiful sky. sky, clouds, scenery"). The description and trigger words are
    left out: they describe the training images (and make embedding a library 10x slower)."""
    tags = [t for t in card.tags if t.casefold().strip() not in _PURPOSE_GENERIC][:PURPOSE_TAGS]
    return collapse(". ".join(p for p in [plain_title(card.title or card.stem), ", ".join(tags)] if p))


def title_text(card: AdapterCard) -> str:
    """The card's title as the sentence encoder reads it (no format words, no CJK half), else its file name:
    what the adapter is called, without what its tags add."""
    return plain_title(card.title or card.stem) or card.stem


def card_words(card: AdapterCard) -> dict:
    """The card's describing words, boilerplate and duplicates removed."""
    tags = [t for t in card.tags if t.lower() not in {"lora"}]
    freq = [t for t in card.tag_frequency if t.lower() not in BOILERPLATE][:20]
    return {"tags": tags, "freq": freq, "samples": [clean_prompt(p) for p in card.sample_prompts[:10]]}


def clean_prompt(prompt: str) -> str:
    """A sample prompt without <lora> tags, emphasis syntax and quality boilerplate."""
    text = _EMPHASIS.sub(" ", _LORA_TAG.sub(" ", prompt.replace("BREAK", ",")))
    parts = [collapse(p) for p in re.split(r"[,\n]", text)]
    return ", ".join(p for p in parts if p and p.lower() not in BOILERPLATE)


def recommended_weight(card: AdapterCard) -> float:
    """Sidecar preferred weight > the author's own sample prompts > a range in the description > 0.8."""
    if card.preferred_weight:
        return _clamp(card.preferred_weight)
    if card.sample_weights:
        ws = sorted(card.sample_weights)
        return _clamp(ws[len(ws) // 2])
    match = _WEIGHT_RANGE.search(card.description or "")
    if match:
        lo, hi = float(match.group(1)), float(match.group(2))
        if 0 < lo <= hi <= 2:
            return _clamp(round((lo + hi) / 2, 2))
    return DEFAULT_WEIGHT


# Civitai's own category tags: when the author filed the model under one, that is its main purpose.
_CATEGORY_TAGS = {"character": "character", "celebrity": "character", "style": "style", "concept": "concept",
                  "clothing": "clothing", "poses": "pose", "pose": "pose", "background": "background",
                  "buildings": "building", "building": "building", "vehicle": "vehicle",
                  "vehicles": "vehicle", "animal": "animal", "animals": "animal", "action": "action",
                  "objects": "concept", "tool": "concept"}


def topic(card: AdapterCard) -> str:
    """One topic from the paper's list: the card's first Civitai category tag, else rules on tags and name."""
    for tag in card.tags:
        if tag.lower() in _CATEGORY_TAGS:
            return _CATEGORY_TAGS[tag.lower()]
    tags = {t.lower() for t in card.tags}
    for source in (" | ".join(sorted(tags - _GENERIC_TAGS)), " | ".join(sorted(tags)), card.title.lower()):
        for name, pattern in _TOPIC_WORDS:
            if re.search(rf"\b(?:{pattern})\b", source):
                return name
    return "concept"


def _clamp(w: float) -> float:
    return max(-2.0, min(2.0, float(w)))
