"""Trigger-word hygiene (issue 10 item 8): which of a card's trigger words Stylus may write into a prompt.

Interface (stable; the composer uses it - extend, do not rename):

* ``clean_triggers(card, task_words, prompt) -> tuple[str, ...]``: at most ``MAX_TRIGGERS`` trigger words of
  ``card`` (an AdapterCard, or anything with ``trigger_words``, ``title``, ``stem``), in the card's order: the
  main one (the first that says the card's name or title - "kirisame marisa", not "witch hat" - else the first
  that names something, not "1girl", "solo" or "red eyes") plus those about the task (sharing a telling word
  with ``task_words``, the task's words as the composer tokenized them). A Danbooru qualifier written with
  bare brackets, "hu tao(genshin impact)", is written escaped, as the web UI reads it literally:
  "hu tao\\(genshin impact\\)". Never written:
  - placeholders: "*see description*", "trigger word", "none", "n/a", an empty string;
  - prompt syntax: ``<`` ``>`` ``:`` unescaped brackets, ``|``, BREAK/AND - "lora:zenny", "(underboob:1.3)"
    could break a tag or re-weight the prompt (escaped ``\\(series\\)`` stays: it is literal text);
  - sentences: more than ``MAX_WORDS`` words or ``MAX_CHARS`` characters;
  - sexual or revealing words when the prompt has none (words.SEXUAL);
  - a variant that contradicts the prompt: the same noun with another word of one attribute class
    ("white dress" when the prompt says "black dress", "long hair" for "short hair").
* ``trigger_problem(text) -> str``: why one trigger word is never written for its shape ("" when fine).
* ``escape_qualifier(text) -> str``: a bare-bracket Danbooru qualifier escaped; anything else unchanged.

Rules are about shapes and general word classes (words.py), never about particular prompts."""
from __future__ import annotations

import re

from .words import (ATTRIBUTE_CLASSES, BODY_ATTRIBUTES, CATEGORY, COLOURS, FUNCTION, PLACEHOLDERS, SEXUAL,
                    fold, folded, found, gender_of_word, words)

MAX_TRIGGERS = 3
MAX_WORDS = 6
MAX_CHARS = 40
_SYNTAX = re.compile(r"[<>:|{}]|(?<!\\)[()\[\]]|\bBREAK\b|\bAND\b")
_BARE_QUALIFIER = re.compile(r"^[^()\[\]:<>|{}\\]+\([^()\[\]:<>|{}\\]+\)\s*$")
_BARE_OPEN = re.compile(r"(?<!\\)\(")
_MARKUP = re.compile(r"^[\W_]|[\W_]$")  # "*see description*", "-", "..."


def escape_qualifier(text: str) -> str:
    """'hu tao(genshin impact)' -> 'hu tao\\(genshin impact\\)': bare round brackets around words (no weight,
    nothing nested) are a Danbooru qualifier, not emphasis; anything else is returned unchanged."""
    if _BARE_QUALIFIER.match(text or ""):
        return _BARE_OPEN.sub(r"\\(", text).replace(")", "\\)")
    return text


def trigger_problem(text: str) -> str:
    """The reason a trigger word must never be written, for its shape alone ('' when it may be)."""
    text = escape_qualifier((text or "").strip())
    toks = words(text)
    if not toks:
        return "empty"
    if _SYNTAX.search(text):
        return "prompt syntax"
    if len(toks) > MAX_WORDS or len(text) > MAX_CHARS:
        return "a sentence, not a trigger word"
    folded_toks = [fold(t) for t in toks]
    if " ".join(folded_toks) in PLACEHOLDERS or all(t in PLACEHOLDERS or t in FUNCTION for t in folded_toks) \
            or _MARKUP.search(text.strip("\\()")) and any(t in PLACEHOLDERS for t in folded_toks):
        return "a placeholder"
    return ""


def _names_something(toks: list) -> bool:
    """Not only count, category, gender, colour or body-attribute words ('1girl', 'solo', 'red eyes')."""
    return any(not (gender_of_word(t) or t in CATEGORY or t in BODY_ATTRIBUTES or t in FUNCTION
                    or any(t in cls for cls in ATTRIBUTE_CLASSES)) for t in toks)


def _contradicts(toks: list, prompt_toks: list) -> bool:
    """The trigger puts one attribute word on a noun the prompt gives another word of the same class."""
    asked = {}
    for a, noun in zip(prompt_toks, prompt_toks[1:]):
        for cls in ATTRIBUTE_CLASSES:
            if a in cls:
                asked.setdefault((noun, id(cls)), set()).add(a)
    for a, noun in zip(toks, toks[1:]):
        for cls in ATTRIBUTE_CLASSES:
            if a in cls and (noun, id(cls)) in asked and a not in asked[(noun, id(cls))]:
                return True
    return False


def clean_triggers(card, task_words, prompt: str) -> tuple:
    prompt_toks = folded(prompt or "")
    sfw = not found(SEXUAL, prompt_toks)
    task = {fold(t) for t in task_words or ()} - FUNCTION
    purpose = set(folded(getattr(card, "title", "") or "")) | set(folded(getattr(card, "stem", "") or ""))
    purpose -= FUNCTION | CATEGORY
    usable = []
    for text in getattr(card, "trigger_words", None) or ():
        if not isinstance(text, str) or trigger_problem(text):
            continue
        text = escape_qualifier(text.strip())
        toks = folded(text)
        if sfw and found(SEXUAL, toks) or _contradicts(toks, prompt_toks) or not _names_something(toks):
            continue
        usable.append((text, toks))
    main = [text for text, toks in usable if purpose & set(toks)][:1] or [text for text, _ in usable[:1]]
    about = [text for text, toks in usable if task & set(toks) - CATEGORY - COLOURS]
    return tuple(dict.fromkeys(main + about))[:MAX_TRIGGERS]
