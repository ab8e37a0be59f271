"""Web UI prompt syntax in and out: read ``<lora:…>`` tags, reduce a prompt to plain words, split it into
segments, and write Stylus' picks (tags, trigger words, negative text) back into it.

Plain library: nothing here imports the web UI. The rules mirror AUTOMATIC1111 v1.10.1:

* extra networks: regex ``<(\\w+):([^>]+)>``; the argument string is split on ``:``; an item with exactly one
  ``=`` becomes a *named* argument (``te=0.5``), every other item is positional. For ``lora`` (and its alias
  ``lyco``) positional 0 is the name, 1 the text-encoder weight (default 1.0), 2 the UNet weight (default: the
  text-encoder weight); named ``te``/``unet`` override them.
* attention: ``(x)``, ``[x]``, ``(x:1.2)``, escapes ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\``; ``BREAK``;
  prompt editing ``[a:b:0.5]``, ``[a:0.5]``, ``[a::0.5]``; alternation ``[a|b]``.
* composable diffusion: subprompts split on the word ``AND``; each may end with ``:weight``.

Wildcards of other extensions (``__animals__``, ``{a|b}``) are left as written: normally sd-dynamic-prompts
has already expanded them before Stylus runs; if not, their text still carries the words a matcher needs
(``__animals__`` is one word token, ``{red|blue}`` splits on punctuation like any other text).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

__all__ = [
    "TAG_RE", "LORA_TYPES", "Tag", "Segment", "Pick", "Written", "RewriteResult",
    "parse_tags", "tagged_names", "has_tag", "strip_syntax", "split_segments", "format_weight",
    "format_tag", "tag_problem", "contains_phrase", "rewrite", "remove_added", "HostTag", "host_tags",
    "lora_args_error", "prompt_problems", "added_problems", "chunk_index",
]

# The web UI's extra-network pattern (same meaning, written here independently).
TAG_RE = re.compile(r"<(\w+):([^>]+)>")
LORA_TYPES = ("lora", "lyco")  # v1.10 registers "lyco" as an alias of the lora extra network

# Composable-diffusion keyword and weight: a subprompt may end with ":<number>" (optional spaces around).
_AND_RE = re.compile(r"\bAND\b")
_BREAK_RE = re.compile(r"\bBREAK\b")
_COMMA_RE = re.compile(r"[,\n]")
_NUMBER = r"[-+]?(?:\d+\.?|\d*\.\d+)"
_TRAILING_WEIGHT_RE = re.compile(r"\s*:\s*" + _NUMBER + r"\s*$")
# Attention weight / editing step right before a closing bracket: "(x:1.2)", "[a:b:0.5]".
_BRACKET_NUMBER_RE = re.compile(r":\s*[-+]?[.\d]+\s*$")


# --------------------------------------------------------------------------------------------- reading tags

@dataclass(frozen=True)
class Tag:
    """One extra-network tag found in a prompt; ``span`` indexes the original string."""
    kind: str
    name: str
    te_weight: float
    unet_weight: Optional[float]  # None when the tag does not set it (web UI then reuses te_weight)
    span: Tuple[int, int]
    items: Tuple[str, ...]


def _split_args(args: str) -> Tuple[List[str], dict]:
    """Positional and named arguments, by the web UI's rule (exactly one '=' makes an item named)."""
    positional, named = [], {}
    for item in args.split(":"):
        parts = item.split("=", 2)
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(item)
    return positional, named


def _to_float(text: Optional[str]) -> Optional[float]:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None  # the web UI would raise on this tag; we just report the weight as unknown


def parse_tags(prompt: str, kinds: Optional[Sequence[str]] = LORA_TYPES) -> List[Tag]:
    """All extra-network tags of ``kinds`` (None = every kind) in prompt order.

    Tags with no positional name (e.g. ``<lora:te=1>``) are skipped: the web UI cannot load them either."""
    wanted = None if kinds is None else {k.lower() for k in kinds}
    tags = []
    for m in TAG_RE.finditer(prompt):
        kind = m.group(1)
        if wanted is not None and kind.lower() not in wanted:
            continue
        positional, named = _split_args(m.group(2))
        if not positional:
            continue
        te = _to_float(positional[1]) if len(positional) > 1 else 1.0
        te = _to_float(named["te"]) if "te" in named else te
        unet = _to_float(positional[2]) if len(positional) > 2 else None
        unet = _to_float(named["unet"]) if "unet" in named else unet
        tags.append(Tag(kind, positional[0], te if te is not None else float("nan"), unet,
                        m.span(), tuple(m.group(2).split(":"))))
    return tags


def tagged_names(prompt: str) -> set:
    """Case-folded names of every LoRA/LyCORIS the prompt already tags."""
    return {t.name.casefold() for t in parse_tags(prompt)}


def has_tag(prompt: str, name: str) -> bool:
    return name.casefold() in tagged_names(prompt)


# ------------------------------------------------------------------------------- the host's own reading

# The web UI's Lora network reads its positional/named arguments with these converters (extra_networks_lora.py
# ExtraNetworkLora.activate): a value they reject raises inside activate, and extra_networks.activate then
# drops the WHOLE lora network for that prompt - every LoRA of it, not just the broken tag.
_LORA_ARGS = (("text-encoder weight", 1, "te", float), ("UNet weight", 2, "unet", float),
              ("dyn dim", 3, "dyn", int))


@dataclass(frozen=True)
class HostTag:
    """One match of the web UI's ``re_extra_net`` with what its network would make of it."""
    kind: str
    args: str
    span: Tuple[int, int]
    error: Optional[str]  # why the Lora network's activate would raise on it; None if it reads it

    @property
    def text(self) -> str:
        return f"<{self.kind}:{self.args}>"


def lora_args_error(args: str) -> Optional[str]:
    """What ``ExtraNetworkLora.activate`` would raise on a tag's argument string (``name:te:unet:dyn``, items
    split on ':', an item with exactly one '=' named), as text; None when it reads them."""
    positional, named = _split_args(args)
    if not positional:
        return "no name (every argument is name=value)"
    for label, position, key, convert in _LORA_ARGS:
        texts = [positional[position]] if len(positional) > position else []
        texts += [named[key]] if key in named else []
        for text in texts:
            try:
                convert(text)
            except ValueError:
                return f"{label} {text!r} is not {'an integer' if convert is int else 'a number'}"
    return None


def host_tags(prompt: str) -> List[HostTag]:
    """Every extra-network tag exactly as the web UI's ``parse_prompt`` finds it (any kind), with the parse
    error of the lora/lyco ones. Kinds are matched case-sensitively, as the host's registry does."""
    tags = []
    for m in TAG_RE.finditer(prompt):
        kind, args = m.group(1), m.group(2)
        error = lora_args_error(args) if kind in LORA_TYPES else None
        tags.append(HostTag(kind, args, m.span(), error))
    return tags


def prompt_problems(prompt: str) -> List[str]:
    """Everything in ``prompt`` that the web UI would not read as a clean tag or as plain text: a lora tag its
    network cannot parse (which drops every LoRA of the prompt), a tag that swallowed another '<' (an unclosed
    tag runs on to the next '>'), and a stray '<' or '>' outside tags. Messages name no position, so two
    prompts' lists can be compared as multisets (see ``added_problems``)."""
    problems = []
    covered = []
    for tag in host_tags(prompt):
        covered.append(tag.span)
        if tag.error:
            problems.append(f"{tag.text} does not parse in the web UI ({tag.error}); it then drops "
                            f"every LoRA of the prompt")
        if "<" in tag.args:
            problems.append(f"{tag.text} swallows a '<': an unclosed tag runs on into the next one")
    outside = []
    pos = 0
    for a, b in covered:
        outside.append(prompt[pos:a])
        pos = b
    outside.append(prompt[pos:])
    rest = "".join(outside)
    problems += ["stray '<' outside any tag"] * rest.count("<")
    problems += ["stray '>' outside any tag"] * rest.count(">")
    return problems


def added_problems(original: str, rewritten: str) -> List[str]:
    """The problems of ``rewritten`` that ``original`` did not have (Stylus must never add one)."""
    before = Counter(prompt_problems(original))
    after = Counter(prompt_problems(rewritten))
    return sorted((after - before).elements())


# ------------------------------------------------------------------------------------------- plain words

_ESCAPABLE = "()[]\\"


def _drop_bracket_number(out: List[str], start: int) -> None:
    """Remove a ':<number>' ending ``out[start:]`` (an attention weight or an editing step)."""
    m = _BRACKET_NUMBER_RE.search("".join(out[start:]))
    if m:
        del out[start + m.start():]


def _strip_attention(text: str) -> str:
    """Drop emphasis / editing brackets and their numbers; keep every word (editing keeps both sides).
    ``out`` holds one character per item so bracket positions can be remembered as indexes."""
    out: List[str] = []
    stack: List[Tuple[str, int]] = []  # (opening bracket, index in out where its content starts)
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
            out.append(text[i + 1])  # an escaped bracket is literal text, e.g. "nahida \\(genshin\\)"
            i += 2
            continue
        if ch in "([":
            out.append(" ")  # brackets separate words, as the web UI tokenizes bracket chunks apart
            stack.append((ch, len(out)))
        elif ch in ")]":
            opener, start = stack.pop() if stack else (ch, 0)
            _drop_bracket_number(out, start)
            if opener == "[":
                # "[a:b:0.5]" / "[a|b]": both alternatives are words of the prompt
                out[start:] = [" " if c in ":|" else c for c in out[start:]]
            out.append(" ")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def strip_syntax(prompt: str) -> str:
    """The plain words of a prompt, for matching: tags, BREAK, AND (+ its ``:weight``), emphasis, editing,
    alternation and escapes removed; commas kept; BREAK/AND become commas; whitespace collapsed.

    >>> strip_syntax("(masterpiece:1.2), [cat|dog] BREAK a \\(hat\\) :0.5 AND [a:b:3] <lora:x:1>")
    'masterpiece, cat dog, a (hat), a b'

    A ``:weight`` counts only where the web UI reads one: at the very end of an AND-subprompt (after tags are
    removed) or right before a closing bracket; elsewhere (``a:2 BREAK b``) it stays literal text, as there.
    """
    text = TAG_RE.sub(" ", prompt)
    parts = [_TRAILING_WEIGHT_RE.sub("", sub) for sub in _AND_RE.split(text)]
    text = " , ".join(parts)
    text = _BREAK_RE.sub(" , ", text)
    text = _strip_attention(text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r",(?:\s*,)+", ",", text)  # empty segments left by removed syntax
    return text.strip(" ,")


@dataclass(frozen=True)
class Segment:
    """A comma/newline/BREAK/AND-separated piece of the prompt: ``prompt[start:end] == text``."""
    text: str
    start: int
    end: int
    plain: str


def _separators_outside_tags(prompt: str, patterns: Sequence["re.Pattern"]) -> List[Tuple[int, int]]:
    """Sorted spans of the patterns' matches that are not inside an extra-network tag (aliases may hold
    commas, 'AND' or 'BREAK'; the host removes tags before it splits)."""
    tag_spans = [m.span() for m in TAG_RE.finditer(prompt)]

    def inside_tag(pos: int) -> bool:
        return any(a <= pos < b for a, b in tag_spans)

    return sorted(m.span() for rx in patterns for m in rx.finditer(prompt) if not inside_tag(m.start()))


def _separator_spans(prompt: str) -> List[Tuple[int, int]]:
    """Spans that separate segments: commas, newlines, AND, BREAK."""
    return _separators_outside_tags(prompt, (_COMMA_RE, _AND_RE, _BREAK_RE))


def split_segments(prompt: str) -> List[Segment]:
    """Segments with their spans in the original prompt, whitespace-trimmed; segments whose plain text is
    empty (a lone tag, a bare weight) are left out. Commas inside emphasis split too:
    ``(red hair, blue eyes:1.2)`` gives two segments, since they are two concepts."""
    return list(_segments(prompt))


@functools.lru_cache(maxsize=64)
def _segments(prompt: str) -> Tuple[Segment, ...]:
    """split_segments, kept for the last prompts: one compose splits its prompt five times (tasks, the
    prompt's words, character names, franchises), a fifth of its time outside the encoder at 6.4K cards.
    Segments are frozen, so the callers share them safely."""
    segments, pos = [], 0
    for a, b in _separator_spans(prompt) + [(len(prompt), len(prompt))]:
        if a < pos:
            continue  # overlapping separator (cannot happen with these patterns, kept for safety)
        raw = prompt[pos:a]
        lead = len(raw) - len(raw.lstrip())
        text = raw.strip()
        plain = strip_syntax(text).strip(" ,")
        if plain:
            start = pos + lead
            segments.append(Segment(text, start, start + len(text), plain))
        pos = b
    return tuple(segments)


# ------------------------------------------------------------------------------------------ writing tags

@dataclass(frozen=True)
class Pick:
    """An adapter to write. ``alias`` is what the web UI shows (tag text); ``name`` is the registry name to
    fall back on when the alias cannot be written as a tag; ``negative`` goes into the negative prompt."""
    alias: str
    weight: float
    triggers: Tuple[str, ...] = ()
    negative: str = ""
    name: Optional[str] = None
    chunk: Optional[int] = None  # AND/BREAK chunk its triggers belong in (see chunk_index); None: the last


@dataclass(frozen=True)
class Written:
    """What ``rewrite`` actually added for one pick (record it to undo later with ``remove_added``)."""
    pick: Pick
    tag_name: str
    tag: str
    triggers: Tuple[str, ...]
    negatives: Tuple[str, ...]


@dataclass(frozen=True)
class RewriteResult:
    prompt: str
    negative_prompt: Optional[str]
    written: Tuple[Written, ...] = ()
    skipped: Tuple[Tuple[Pick, str], ...] = ()  # (pick, human-readable reason)
    notes: Tuple[str, ...] = ()  # card text left out because it would break the prompt, and why

    @property
    def tag_names(self) -> Tuple[str, ...]:
        return tuple(w.tag_name for w in self.written)

    @property
    def triggers(self) -> Tuple[str, ...]:
        return tuple(t for w in self.written for t in w.triggers)

    @property
    def negatives(self) -> Tuple[str, ...]:
        return tuple(t for w in self.written for t in w.negatives)


def format_weight(weight: float) -> str:
    """Compact decimal, at most 4 places, never exponent notation: 0.8000000001 -> '0.8', 1.0 -> '1'."""
    text = f"{round(float(weight), 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def tag_problem(name: str, weight: float = 1.0) -> Optional[str]:
    """Why ``<lora:name:weight>`` would not read back as (name, weight) in the web UI; None if it does."""
    if not name or not name.strip():
        return "empty name"
    if any(c in name for c in ":<>"):
        return "name contains ':', '<' or '>'"
    if not math.isfinite(weight):
        return "weight is not a finite number"
    tag = f"<lora:{name}:{format_weight(weight)}>"
    found = parse_tags(tag)
    # The decisive check: what the web UI would read back. Catches e.g. a single '=' (named argument).
    if len(found) != 1 or found[0].span != (0, len(tag)) or found[0].name != name:
        return "name does not survive the web UI's tag parser"
    if found[0].te_weight != round(float(weight), 4) or found[0].unet_weight is not None:
        return "weight does not survive the web UI's tag parser"
    return None


def format_tag(name: str, weight: float) -> str:
    """``<lora:name:w>``; raises ValueError when it would not round-trip (see ``tag_problem``)."""
    problem = tag_problem(name, weight)
    if problem:
        raise ValueError(f"cannot write LoRA tag for {name!r}: {problem}")
    return f"<lora:{name}:{format_weight(weight)}>"


def _words(text: str) -> List[str]:
    return re.findall(r"\w+", text.casefold())


_SYNTAX_RE = re.compile(r"[()\[\]\\:<>]|\bAND\b|\bBREAK\b")


def _chunks(text: str) -> List[List[str]]:
    """Word lists of the comma-separated chunks of a text's plain form."""
    plain = strip_syntax(text) if _SYNTAX_RE.search(text) else text  # most card phrases are plain words
    return [w for w in (_words(c) for c in plain.split(",")) if w]


def _has_run(words: List[str], run: List[str]) -> bool:
    n = len(run)
    return any(words[i:i + n] == run for i in range(len(words) - n + 1))


def contains_phrase(prompt: str, phrase: str) -> bool:
    """Case-insensitive whole-phrase match on the prompt's plain words: emphasis, escapes and punctuation
    are ignored ("(Blue Hair:1.2)" contains "blue hair"), but a phrase never matches across a comma and
    never inside a longer word ("red" is not in "tired"). A phrase with commas needs each of its parts."""
    parts = _chunks(phrase)
    if not parts:
        return False
    chunks = _chunks(prompt)
    return all(any(_has_run(c, part) for c in chunks) for part in parts)


def _top_level_pieces(text: str) -> List[str]:
    """Split a trigger list on commas outside brackets: a Civitai 'trained word' is often 'a, b, c', while
    '(a, b:1.2)' must stay whole so its brackets stay balanced."""
    pieces, depth, current = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}" and depth:
            depth -= 1
        if ch == "," and depth == 0:
            pieces.append("".join(current))
            current = []
        else:
            current.append(ch)
    pieces.append("".join(current))
    return [p.strip() for p in pieces if p.strip()]


_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _balanced(text: str) -> bool:
    """Brackets pair up (escaped ones are text): an unclosed '(' from a card would weight the rest of the
    prompt, a stray ')' would end the user's own emphasis early."""
    expected: List[str] = []
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in _CLOSERS:
            expected.append(_CLOSERS[ch])
        elif ch in ")]}" and (not expected or expected.pop() != ch):
            return False
    return not expected


def _piece_problem(piece: str) -> Optional[str]:
    """Why a phrase taken from a card cannot go into a prompt as it is; None when it can."""
    angles = [c for c in "<>" if c in piece]
    if angles:
        shown = " and ".join(repr(c) for c in angles)
        return f"it contains {shown}, which would open or close a <lora:...> tag"
    if not _balanced(piece):
        return "its brackets are unbalanced, which would change the weights of the rest of the prompt"
    if _AND_RE.search(piece) or _BREAK_RE.search(piece):
        return "it contains AND or BREAK, which would split the prompt"
    if _TRAILING_WEIGHT_RE.search(piece):
        return "it ends in ':<number>', which the web UI would read as the weight of a subprompt"
    return None


class _PhraseIndex:
    """The plain words of a text's comma chunks, for 'is this phrase already there' in time proportional to
    the phrase: a suffix automaton over words, with a separator symbol between chunks (no phrase contains it,
    so a match never crosses a comma). Adding text costs its length. Rescanning the whole prompt for every
    phrase, as before, made merging a card's 1,000-phrase negative text take seconds (quadratic)."""

    _SEPARATOR = ","  # never a word: words are \\w+ runs

    def __init__(self, text: str = ""):
        self.next: List[dict] = [{}]
        self.link: List[int] = [-1]
        self.length: List[int] = [0]
        self.last = 0
        if text:
            self.add(text)

    def add(self, text: str) -> None:
        self.add_chunks(_chunks(text))

    def add_chunks(self, chunks: List[List[str]]) -> None:
        for words in chunks:
            for word in words:
                self._extend(word)
            self._extend(self._SEPARATOR)

    def contains(self, phrase: str) -> bool:
        """Same answer as ``contains_phrase(text, phrase)`` for the text added so far."""
        return self.contains_chunks(_chunks(phrase))

    def contains_chunks(self, chunks: List[List[str]]) -> bool:
        return bool(chunks) and all(self._has_run(words) for words in chunks)

    def _has_run(self, words: List[str]) -> bool:
        state: Optional[int] = 0
        for word in words:
            state = self.next[state].get(word)
            if state is None:
                return False
        return True

    def _extend(self, symbol: str) -> None:
        """The textbook online construction (one new state, at most one clone per symbol)."""
        cur = len(self.next)
        self.next.append({})
        self.length.append(self.length[self.last] + 1)
        self.link.append(0)
        p = self.last
        while p != -1 and symbol not in self.next[p]:
            self.next[p][symbol] = cur
            p = self.link[p]
        if p != -1:
            q = self.next[p][symbol]
            if self.length[p] + 1 == self.length[q]:
                self.link[cur] = q
            else:
                clone = len(self.next)
                self.next.append(dict(self.next[q]))
                self.length.append(self.length[p] + 1)
                self.link.append(self.link[q])
                while p != -1 and self.next[p].get(symbol) == q:
                    self.next[p][symbol] = clone
                    p = self.link[p]
                self.link[q] = clone
                self.link[cur] = clone
        self.last = cur


def _new_phrases(texts: Iterable[str], index: _PhraseIndex, label: str, notes: List[str]) -> List[str]:
    """Phrases of ``texts`` not yet in ``index`` (which then learns them), in order. A phrase that would break
    the prompt is left out, with a note."""
    added: List[str] = []
    for text in texts:
        for piece in _top_level_pieces(text or ""):
            problem = _piece_problem(piece)
            if problem:
                notes.append(f"{label} {piece!r} left out: {problem}")
                continue
            chunks = _chunks(piece)
            if chunks and not index.contains_chunks(chunks):
                added.append(piece)
                index.add_chunks(chunks)
    return added


def _append_phrases(text: str, phrases: Sequence[str]) -> str:
    """Append ', a, b' to ``text`` without touching its bytes; a trailing composable weight (':0.8') stays
    last so the web UI still reads it as the weight of the last subprompt."""
    if not phrases:
        return text
    joined = ", ".join(phrases)
    m = _TRAILING_WEIGHT_RE.search(text)
    head, tail = (text[:m.start()], text[m.start():]) if m else (text, "")
    if not head.strip():
        return head + joined + tail
    stripped = head.rstrip()
    sep = ("" if head != stripped else " ") if stripped.endswith(",") else ", "
    return head + sep + joined + tail


def _append_tags(text: str, tags: Sequence[str]) -> str:
    if not tags:
        return text
    sep = "" if not text or text[-1].isspace() else " "
    return text + sep + " ".join(tags)


def _chunk_spans(prompt: str) -> List[Tuple[int, int]]:
    """(start, end) of each AND / BREAK chunk of the prompt, separators left out; an AND or BREAK inside a tag
    separates nothing (the host removes tags before it splits)."""
    spans, pos = [], 0
    for a, b in _separators_outside_tags(prompt, (_AND_RE, _BREAK_RE)):
        spans.append((pos, a))
        pos = b
    spans.append((pos, len(prompt)))
    return spans


def chunk_index(prompt: str, pos: int) -> int:
    """The AND / BREAK chunk of ``prompt`` that holds position ``pos`` (0 = the first): where a task found at
    ``pos`` gets its trigger words (``Pick.chunk``)."""
    found = 0
    for i, (start, _) in enumerate(_chunk_spans(prompt)):
        if start <= pos:
            found = i
    return found


def _insert_phrases(text: str, pos: int, phrases: Sequence[str]) -> str:
    """``phrases`` appended to the text before ``pos`` (see _append_phrases), the rest kept after a space."""
    if not phrases:
        return text
    head = _append_phrases(text[:pos], phrases)
    tail = text[pos:]
    sep = " " if tail and not tail[0].isspace() else ""
    return head + sep + tail


def _write_triggers(prompt: str, by_chunk: Dict[Optional[int], List[str]]) -> str:
    """Each chunk's trigger words at the end of that chunk's own text; a chunk the prompt does not have (a
    shorter hires or batch prompt) or None means the last one."""
    spans = _chunk_spans(prompt)
    last = len(spans) - 1
    grouped: Dict[int, List[str]] = {}
    for chunk, phrases in by_chunk.items():
        k = last if chunk is None else max(0, min(chunk, last))
        grouped.setdefault(k, []).extend(phrases)
    for k in sorted(grouped, reverse=True):  # right to left: earlier positions stay valid
        start, end = spans[k]
        pos = len(prompt) if k == last else start + len(prompt[start:end].rstrip())
        prompt = _insert_phrases(prompt, pos, grouped[k])
    return prompt


_OPENER_RE = re.compile(r"<\w+:")


def _unclosed_tag_start(prompt: str) -> Optional[int]:
    """Where a tag opens that no '>' closes ('... <lora:red_fox:0.5' typed unfinished): the host's pattern
    would run from there to the next '>', so nothing holding a '>' may be written after it."""
    m = _OPENER_RE.search(prompt, prompt.rfind(">") + 1)
    return m.start() if m else None


def _write_prompt(prompt: str, by_chunk: Dict[Optional[int], List[str]], tags: Sequence[str]) -> str:
    """Triggers into their chunks and tags at the end, or, when the prompt ends in an unclosed tag, all of it
    before that tag, which stays last and untouched."""
    cut = _unclosed_tag_start(prompt)
    if cut is None:
        return _append_tags(_write_triggers(prompt, by_chunk), tags)
    body = prompt[:cut].rstrip()
    text = _append_tags(_write_triggers(body, by_chunk), tags)
    if text == body:
        return prompt
    gap = prompt[len(body):cut]
    return text + (gap or " ") + prompt[cut:]


def _choose_tag_name(pick: Pick) -> Tuple[Optional[str], Optional[str]]:
    """(name to write, None) or (None, reason). The alias is preferred because users recognise it."""
    problem = tag_problem(pick.alias, pick.weight)
    if problem is None:
        return pick.alias, None
    if pick.name and pick.name != pick.alias:
        fallback_problem = tag_problem(pick.name, pick.weight)
        if fallback_problem is None:
            return pick.name, None
        return None, f"alias {pick.alias!r}: {problem}; registry name {pick.name!r}: {fallback_problem}"
    return None, f"alias {pick.alias!r}: {problem}"


def rewrite(prompt: str, picks: Sequence[Pick], negative_prompt: Optional[str] = None,
            add_triggers: bool = True) -> RewriteResult:
    """Write each pick's trigger words (once) at the end of its AND/BREAK chunk (``Pick.chunk``, default the
    last) and its ``<lora:…:w>`` tag at the end of ``prompt``; with a ``negative_prompt`` given, append the
    picks' negative texts to it. The user's text is kept byte for byte, except that a trailing composable
    ``:weight`` stays last in its chunk (see _append_phrases) and an unclosed tag at the end stays last.

    A pick is skipped (with a reason) when the prompt already tags it (by alias or registry name,
    case-insensitive), when an earlier pick wrote it, when its weight is 0, or when neither its alias nor
    its registry name can be written as a tag. Card text that would break a tag or the prompt's brackets is
    left out (``notes`` says what). The result is checked against the web UI's own reading (``host_tags``):
    a rewrite that would add a problem is not made."""
    taken = tagged_names(prompt)
    written: List[Written] = []
    skipped: List[Tuple[Pick, str]] = []
    notes: List[str] = []
    trigger_index = _PhraseIndex(prompt) if add_triggers else None
    negative_index = _PhraseIndex(negative_prompt) if negative_prompt is not None else None
    by_chunk: Dict[Optional[int], List[str]] = {}
    all_negatives: List[str] = []
    for pick in picks:
        names = {pick.alias.casefold()} | ({pick.name.casefold()} if pick.name else set())
        if names & taken:
            skipped.append((pick, "already in the prompt"))
            continue
        if math.isfinite(pick.weight) and format_weight(pick.weight) == "0":
            skipped.append((pick, "weight rounds to 0"))
            continue
        tag_name, reason = _choose_tag_name(pick)
        if tag_name is None:
            skipped.append((pick, reason))
            continue
        taken |= names | {tag_name.casefold()}
        triggers: List[str] = []
        if trigger_index is not None:
            triggers = _new_phrases(pick.triggers, trigger_index, f"{pick.alias}: trigger word", notes)
        negatives: List[str] = []
        if negative_index is not None and pick.negative:
            negatives = _new_phrases([pick.negative], negative_index, f"{pick.alias}: negative text", notes)
        by_chunk.setdefault(pick.chunk, []).extend(triggers)
        all_negatives += negatives
        written.append(Written(pick, tag_name, format_tag(tag_name, pick.weight), tuple(triggers),
                               tuple(negatives)))
    new_prompt = _write_prompt(prompt, by_chunk, [w.tag for w in written])
    new_negative = None if negative_prompt is None else _append_phrases(negative_prompt, all_negatives)
    result = RewriteResult(new_prompt, new_negative, tuple(written), tuple(skipped))
    return _checked(prompt, negative_prompt, result, notes)


def _checked(prompt: str, negative_prompt: Optional[str], result: RewriteResult,
             notes: List[str]) -> RewriteResult:
    """The safety net after writing: the web UI must read the new prompt as the old one plus Stylus's tags."""
    if result.written:
        for tag in host_tags(prompt):
            if tag.error:
                notes.append(f"the prompt's own {tag.text} does not parse in the web UI ({tag.error}): "
                             f"the web UI drops every LoRA of this prompt, the ones Stylus adds too")
    read_back = {t.text for t in host_tags(result.prompt) if not t.error}
    problems = added_problems(prompt, result.prompt)
    lost = [w.tag for w in result.written if w.tag not in read_back]
    if problems or lost:
        why = "; ".join(problems + [f"{tag} would not read back" for tag in lost])
        notes.append(f"nothing written into the prompt: it would not parse in the web UI ({why})")
        refused = tuple((w.pick, "writing it would break the prompt") for w in result.written)
        skipped = result.skipped + refused
        result = replace(result, prompt=prompt, written=(), skipped=skipped)
    if negative_prompt is not None and added_problems(negative_prompt, result.negative_prompt or ""):
        notes.append("nothing written into the negative prompt: it would not parse in the web UI")
        result = replace(result, negative_prompt=negative_prompt)
    return replace(result, notes=tuple(notes))


# ------------------------------------------------------------------------------------------------ undoing

def _delete_spans(text: str, spans: List[Tuple[int, int]]) -> str:
    for a, b in sorted(spans, reverse=True):
        text = text[:a] + text[b:]
    return text


def _tag_removal_spans(prompt: str, names: set) -> List[Tuple[int, int]]:
    spans = []
    for tag in parse_tags(prompt):
        if tag.name.casefold() in names:
            a, b = tag.span
            while a > 0 and prompt[a - 1] in " \t":  # the space rewrite put before the tag
                a -= 1
            if a == 0:
                while b < len(prompt) and prompt[b] in " \t":
                    b += 1
            spans.append((a, b))
    return spans


def _remove_phrase(text: str, phrase: str) -> str:
    """Remove the LAST whole-phrase occurrence written as plain text (rewrite appends, so the last one is
    ours), together with the ', ' that joined it."""
    words = phrase.split()
    if not words:
        return text
    body = r"\s+".join(map(re.escape, words))
    hits = list(re.finditer(r"(?<![\w\\])" + body + r"(?!\w)", text, re.IGNORECASE))
    if not hits:
        return text
    a, b = hits[-1].span()
    before = re.search(r",[ \t]*$", text[:a])
    after = re.match(r"[ \t]*,[ \t]*", text[b:])
    if before:
        a = before.start()
    elif after:
        b += after.end()
    return text[:a] + text[b:]


def remove_added(prompt: str, tag_names: Iterable[str] = (), phrases: Iterable[str] = ()) -> str:
    """Undo ``rewrite``: drop the tags of ``tag_names`` and the last occurrence of each added phrase
    (trigger words, or negative texts when applied to the negative prompt).

    On an unedited rewrite result this gives back the original prompt exactly (when it had no trailing
    whitespace); on an edited one it removes only what Stylus added, so a pasted prompt is not tagged twice.
    Typical use: ``remove_added(res.prompt, res.tag_names, res.triggers)``."""
    names = {n.casefold() for n in tag_names}
    text = _delete_spans(prompt, _tag_removal_spans(prompt, names)) if names else prompt
    for phrase in reversed(list(phrases)):
        text = _remove_phrase(text, phrase)
    return text
