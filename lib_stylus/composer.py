"""The paper's composer, done locally: prompt -> tasks (groups of the prompt's own words) -> 0-3 adapters per
task, every pick and every drop explained as data.

Rules (Stylus, arXiv 2404.18928 §3.3): each adapter at most once; its main purpose must match the task (its
name/tags/trigger words cover the task's telling words, see purpose.py) - sharing one word is not enough; no
character adapter unless the prompt names that character; at most 2 style adapters in all; a task may get
none. LoRAs already tagged in the prompt count as chosen and are never written twice."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from . import masking as masking_
from .embedding import BM25, tokenize
from .prompt import Pick, chunk_index, rewrite, split_segments, tagged_names
from .characters import character_index
from .content import card_profile, conflict, medium_only, profile_prompt
from .shown import ShownCheck, prepare as prepare_shown
from .meaning import EncoderUnavailable, meaning_of
from .purpose import (GENERIC_TAGS, KIND_WORDS, NAME, STEM, TAG, TAG_KIND, TRIGGER, prompt_words,
                      plain_title, purpose_index, purpose_words, title_pieces)
from .refiner import BOILERPLATE, title_text
from .triggers import clean_triggers
from .retriever import allowed_families

log = logging.getLogger("stylus")
MAX_PER_TASK = 3
ALREADY_TAGGED = "already in the prompt"
CHARACTER_WORD = "character"  # tokenize() folds "characters"
CHARACTER_NOT_NAMED = "character not named in the prompt"
MAX_STYLES = 2
TIEBREAK = 1e-3  # retrieval score's share in a task's ranking: orders equal purpose matches only
NAMED = -1       # a candidate's phrase when the prompt names the character
MODIFIER_ONLY = "asks only what qualifies its purpose"
ANOTHER_KIND = "asks another kind of"
NAMED_SERIES = "asked only by the series of a character the prompt names"
SERIES_OF = "asked only by the series its name says it is of"
CHARACTERS_TAG = "asked only by a tag that says which characters a picture shows"
EVERYDAY_TAG = "asked only by one everyday word, one of its tags"
MADE_OF = "makes things of a material the prompt asks nothing made of"
REFUSED_SHOWN = 3  # common-word candidates the meaning check refused, reported per task (closest first)


@dataclass
class Assigned:
    """An adapter given to a task: ``score`` is its purpose match, ``coverage`` the share of the task it
    explains."""
    entry: object
    score: float
    coverage: float
    reason: str
    task: int = -1
    unit: int = -1       # the purpose phrase asked (PurposeIndex unit)
    named: bool = False  # the prompt names it outright (a character, all of a name phrase): masks keep it

    @property
    def stem(self) -> str:
        return self.entry.card.stem

    @property
    def alias(self) -> str:
        return self.entry.card.alias

    @property
    def weight(self) -> float:
        return self.entry.refined.weight


@dataclass
class Drop:
    stem: str
    task: int            # -1: not tied to one task
    score: float
    reason: str


@dataclass
class Task:
    text: str            # as written in the prompt
    span: tuple          # (start, end) in the prompt
    plain: str           # words only
    tokens: list = field(default_factory=list)
    adapters: list = field(default_factory=list)
    note: str = ""       # why it got none

    @property
    def asked(self) -> frozenset:
        """The task's words folded like purpose phrases (worked out once: each candidate's gate reads
        them)."""
        words = self.__dict__.get("_asked")
        if words is None:
            words = self.__dict__["_asked"] = frozenset(prompt_words(self.tokens))
        return words


@dataclass
class Composition:
    prompt: str
    base: str
    tasks: list
    drops: list
    existing: list = field(default_factory=list)   # LoRA names already tagged in the prompt
    composer: str = "local"
    fallback: str = ""                             # why the LLM composer was not used, if it was asked for

    @property
    def picks(self) -> list:
        """Assigned adapters in task order."""
        return [a for t in self.tasks for a in t.adapters]

    @property
    def stems(self) -> list:
        return [a.stem for a in self.picks]

    def mask(self, seed: int, masking: bool = True, **draw_options) -> "masking_.Mask":
        """The paper's per-task masks: which picks go into the image with this seed, and at what weight.
        draw_options go to masking.draw_mask (e.g. multiplier)."""
        tasks = [[masking_.Candidate(a.alias, a.weight) for a in t.adapters] for t in self.tasks]
        required = [any(a.named for a in t.adapters) for t in self.tasks]
        return masking_.draw_mask(tasks, seed, enabled=masking, required=required, **draw_options)

    def masked_out(self, seed: int, masking: bool = True) -> list:
        """The picks this seed's mask leaves out of the image, each with its reason (for the user to see)."""
        by_alias = {a.alias: a for a in self.picks}
        return [{"stem": by_alias[m.key].stem, "alias": m.key, "task": m.task, "reason": m.reason}
                for m in self.mask(seed, masking).masked_out]

    def rewrite(self, prompt: Optional[str] = None, seed: int = 0, negative_prompt: Optional[str] = None,
                add_triggers: bool = True, masking: bool = True, **draw_options):
        """``prompt`` (default: the composed one) with the masked picks' tags and trigger words appended."""
        mask = self.mask(seed, masking, **draw_options)
        by_alias = {a.alias: a for a in self.picks}
        picks = [Pick(alias=k, weight=w, triggers=self.triggers(by_alias[k]),
                      negative=by_alias[k].entry.card.negative_text or "", name=by_alias[k].stem,
                      chunk=self.chunk(by_alias[k]))
                 for k, w in mask.weights().items()]
        return rewrite(self.prompt if prompt is None else prompt, picks, negative_prompt, add_triggers)

    def chunk(self, a: "Assigned") -> Optional[int]:
        """The AND/BREAK chunk of the composed prompt that holds the adapter's task: its trigger words go
        there, so "knight AND dragon" conditions the knight with the knight's trigger."""
        if 0 <= a.task < len(self.tasks) and self.tasks[a.task].span[0] >= 0:
            return chunk_index(self.prompt, self.tasks[a.task].span[0])
        return None

    def triggers(self, a: "Assigned") -> tuple:
        """The trigger words to write for an adapter (triggers.clean_triggers): the one that names its purpose
        plus those about its task, never placeholders, prompt syntax, sentences, unasked sexual words or a
        variant that contradicts the prompt ("white dress" for "black dress")."""
        task = self.tasks[a.task].tokens if 0 <= a.task < len(self.tasks) else ()
        return clean_triggers(a.entry.card, task, self.prompt)

    def to_dict(self, seed: Optional[int] = None, masking: bool = True) -> dict:
        """JSON-ready explanation (CLI, UI, infotext); with a seed, also the picks its mask leaves out."""
        data = {"composer": self.composer, "fallback": self.fallback, "existing": self.existing,
                "tasks": [{"text": t.text, "span": list(t.span), "note": t.note,
                           "adapters": [{"stem": a.stem, "score": round(a.score, 3), "reason": a.reason,
                                         "named": a.named} for a in t.adapters]} for t in self.tasks],
                "drops": [d.__dict__ for d in self.drops]}
        if seed is not None:
            data["seed"] = seed
            data["masked_out"] = self.masked_out(seed, masking)
        return data


def prepare(snapshot) -> None:
    """Build the composer's per-snapshot indexes (purpose phrases, characters, the BM25 word lookup) now. The
    web UI's refresh calls this before it swaps the new snapshot in: built on the first compose instead, they
    would hold up a generation in a large library. Each is built from the previous snapshot's (purpose.py,
    characters.py): after a one-file edit that costs about 0.2 s at 6.4K cards."""
    if snapshot.entries:
        purpose_index(snapshot)
        character_index(snapshot).prepare()
        prepare_shown(snapshot)  # what each card's sample images show
        if "bm25" in snapshot.states:
            BM25().scores(snapshot.states["bm25"], "")  # builds its word lookup (~25 ms at 6.4K cards) now


# Where a sentence changes phrase: "a knight in ornate plate armor kneeling in a ruined chapel" asks for armor
# and for a chapel, each its own task (a slot each, and each judged on its own words).
_PHRASE_BREAK = re.compile(
    r"\s+(?:with|in|on|at|inside|under|over|through|across|against|near|behind|beside|beneath|into|onto|from|"
    r"wearing|holding|and|while|surrounded by|filled with)\s+", re.I)


def split_tasks(prompt: str, phrases: int = 0) -> list:
    """One task per prompt segment (commas, newlines, BREAK, AND; tags and emphasis removed) that has words
    worth matching; quality boilerplate ("masterpiece", "best quality") and bare tags make no task. With
    ``phrases`` > 0, a segment of more than that many words is split into its phrases (_PHRASE_BREAK)."""
    tasks = []
    for seg in split_segments(prompt):
        if seg.plain.casefold() in BOILERPLATE:
            continue
        parts = [seg.plain]
        if phrases and len(seg.plain.split()) > phrases:
            parts = [p for p in _PHRASE_BREAK.split(seg.plain) if p.strip()]
        for part in parts:
            toks = list(dict.fromkeys(tokenize(part)))
            if toks:
                text = seg.text if len(parts) == 1 else part
                tasks.append(Task(text, (seg.start, seg.end), part, toks))
    return tasks


@dataclass(frozen=True)
class ComposerConfig:
    """Every weight and threshold of the local composer, in one place (chosen on half of the judged realistic
    prompts and checked on the other half: see tests/bench/bench_realistic.py).

    threshold: share of one of an adapter's purpose phrases (x the phrase's field strength) a task must ask;
    rare_share: the asked words must together be as rare (idf sum) as one word on this share of the cards (on
    one card at least, so it means the same in a library of 50 cards and of 100,000), unless they are
    min_cover of the segment's word weight (a tag-list entry asks for what it says; a sentence's "glass"
    asks nothing);
    margin: a further adapter for the same words of a task must reach this share of the first one's score;
    strengths: field strength of a purpose phrase found in the name, stem, a tag, the main trigger;
    name_weight: how much the share of a card's whole name the task asks counts in its rank (0..1);
    min_name_share: share of a card's whole name (title without bracketed qualifiers, or stem) the prompt must
    hold: the other direction of a match - the adapter adds little the prompt does not ask for (for a match on
    a tag, only if gate_tags or the card is a character's);
    meaning: with a dense index (meaning.py), a match on common words (under rare_share) still counts when the
    cosine similarity of the task's words around it (``window`` words each side) to the card's purpose text
    reaches this; such a match must also hold ``meaning_name_share`` of the card's whole name, tags included;
    short: a task of this many words or fewer (a lone tag: 'smoke') is judged with ``window`` words of the
    tasks before and after it ('titan, giant, smoke, dust') when alone it reaches ``meaning`` but not
    ``meaning_alone``: the words around may veto a lone word's match, never make one; a medium ('watercolor',
    'oil painting') is judged alone: it says how the picture is made, whatever the picture shows;
    context_weight: how much the similarity with those words around counts against a two-word task's own in
    that judgment (1: theirs alone decides). Words around that are about other things lower the similarity
    of any window, and two words carry a sense of their own ('purple kimono', 'cinematic lighting'), so the
    words around count in part; one word has nothing of its own to fix its sense ('smoke' of a battle or of
    a cigarette), so for a one-word task the words around decide. Shipped at 1: below it, realistic-dev gains
    little (0.6: one concept, 'purple kimono'; 0.4: three, with three more wrong picks) and the blind-judged
    prompts written after the composer lose relevant picks (BENCHMARKS.md, session 6);
    heads: a phrase asked in part must have its head asked ('linen curtains' asks no 'Linen dress');
    contrast: a match on the one word that heads the card's name ('palette' of 'Neon Palette') asks nothing
    when the prompt gives that word a modifier of its own and none of those the card tags ('desaturated
    palette');
    phrase_floor: a window close to the card's whole purpose is meant only when it is also this close to the
    card's title or to the purpose phrase it matched: one vector for a whole purpose ('floating on water.
    water, lying, float, floating') is near a word that the window uses in another sense ('floating' of a
    levitating girl). Chosen on the meaning-checked candidates of realistic-dev and unseen sets 1-7, each
    half of the prompts alone giving the same choice; a window close to the title alone (0.7) making a
    match was tried too and left out: its picks, judged blind, were mostly plausible (BENCHMARKS.md,
    session 10);
    phrases: split a segment of more than this many words into its phrases (0: never);
    skip_series: a segment naming only the series of a character the prompt names asks for nothing, nor do
    the words of a segment that match only such a series in a card;
    everyday_tag: one everyday word (the sentence encoder's whole words) that is only one of a card's tags,
    and that neither its title nor its file name holds, asks nothing ('needle' of a syringe card): a card's
    pictures show many everyday things it is not for. On the judged sets 8 wrong picks go and 2 relevant
    ones (each half of the prompts alone chooses it; BENCHMARKS.md, session 12);
    characters_tag: a tag that at least ``characters_tag_cards`` cards carry, this share of them characters'
    cards ('virtual youtuber': 35 of 37), asks no other card by itself (not a franchise's tag, nor one whose
    words the card's name holds): it says who the pictures show. Any share from 0.8 to 0.94 gives the same
    picks on every judged set (each half of the prompts alone too), and so does any count from 5 to 20
    (BENCHMARKS.md, session 12); 1 switches it off."""
    threshold: float = 0.75
    rare_share: float = 0.0005
    min_cover: float = 1.01
    margin: float = 0.999
    per_task: int = 2
    max_styles: int = MAX_STYLES
    pool: int = 30
    name_strength: float = NAME
    stem_strength: float = STEM
    tag_strength: float = TAG
    trigger_strength: float = TRIGGER
    name_weight: float = 0.5
    min_name_share: float = 0.3
    gate_tags: bool = False
    meaning: float = 0.6
    window: int = 2
    meaning_name_share: float = 0.5
    short: int = 2
    meaning_alone: float = 0.8
    context_weight: float = 1.0
    phrase_floor: float = 0.5
    heads: bool = True
    contrast: bool = True
    phrases: int = 0
    skip_series: bool = True
    everyday_tag: bool = True
    characters_tag: float = 0.9
    characters_tag_cards: int = 10

    @property
    def strengths(self) -> tuple:
        return (self.name_strength, self.stem_strength, self.tag_strength, self.trigger_strength)


class Composer:
    """Local composer: purpose phrases asked by each task, over the retriever's index snapshot. ``config``
    (ComposerConfig) holds every threshold; keyword overrides are applied on top of it."""

    def __init__(self, retriever, config: Optional[ComposerConfig] = None, **overrides):
        self.retriever = retriever
        self.config = replace(config or ComposerConfig(), **overrides)

    # ---- public ------------------------------------------------------------------------------------------
    def compose(self, prompt: str, base: str = "sd1", allow_unknown: bool = False,
                max_adapters: int = 6) -> Composition:
        snap = self.retriever.index.snapshot  # read once: a refresh may swap it while we compose
        cfg = self.config
        tasks = split_tasks(prompt, cfg.phrases)
        comp = Composition(prompt, base, tasks, [])
        if not snap.entries:
            return comp
        pidx = purpose_index(snap)
        allowed = snap.allowed(allowed_families(base, allow_unknown))
        meaning = meaning_of(snap, self.retriever.index)
        state = Selection(snap, prompt, cfg, max_adapters, meaning.everyday() if meaning else frozenset())
        comp.existing = sorted(state.existing_names)
        comp.tasks = tasks = _without_trigger_tasks(tasks, [snap.entries[i] for i in state.used])
        if cfg.skip_series:
            tasks = [t for t in tasks if not state.names_series_of_named(t)]
            comp.tasks = tasks
        everything = set(prompt_words(tokenize(" ".join(t.plain for t in split_tasks(prompt)))))
        matches = [self._match(pidx, task, meaning, state, everything, _around(tasks, t))
                   for t, task in enumerate(tasks)]
        if meaning is not None:  # one encoder pass for the whole prompt (the floor may need a second)
            try:
                texts = [m.alone.get(u, w) for m in matches for u, w in m.windows.items()]
                texts += [w for m in matches for w in self._contexts_needed(m, meaning)]
                meaning.prefetch(texts)
                self._judge_by_meaning(matches, meaning, pidx)
            except EncoderUnavailable as e:  # a broken model folder costs the meaning check, never the picks
                log.warning("Stylus: %s: composing by words only", e)
                meaning = None
                matches = [self._match(pidx, task, None, state, everything) for task in tasks]
        queues = [self._task_candidates(snap, t, task, pidx, allowed, comp.drops, everything, state, meaning,
                                        matches[t]) for t, task in enumerate(tasks)]
        _add_named(state, pidx, tasks, queues, allowed)
        # Round by round, best-asked task first: every task gets its first adapter before any gets a
        # second, so the global limits (styles, total) cost a task its extras, not its only match.
        order = sorted(range(len(tasks)), key=lambda t: -(queues[t][0][5] if queues[t] else 0))
        for _ in range(min(cfg.per_task, MAX_PER_TASK)):
            for t in order:
                self._fill_one(state, comp, t, queues[t])
        for task in tasks:
            if not task.adapters and not task.note:
                task.note = "every candidate was dropped"
        return comp

    # ---- per task ----------------------------------------------------------------------------------------
    def _lexical(self, snap, task: Task, n: int) -> np.ndarray:
        """BM25 of the task over the whole card text (the retriever's lexical state), scaled to [0, 1]: breaks
        ties between equal purpose matches in favour of the card most about the task."""
        state = snap.states.get("bm25")
        if state is None:
            return np.zeros(n, np.float32)
        lex = BM25().scores(state, task.plain)
        top = float(lex.max()) if len(lex) else 0.0
        return lex / top if top > 0 else lex

    def _match(self, pidx, task: Task, meaning, state: "Selection", everything: set,
               around: tuple = ((), ())) -> "_Match":
        """The task's purpose matches: rare words as they are; with a meaning encoder, also the common-word
        matches (to be checked by meaning) and the words around each (the window its meaning is judged on)."""
        cfg = self.config
        words = prompt_words(task.tokens)
        rare = pidx.idf_of(cfg.rare_share)
        if meaning is None:
            docs, ((scores, best),) = pidx.matches_at(words, (rare,), cfg.min_cover, cfg.strengths)
            return _Match(words, docs, scores, best)
        # The rare-word match and the loose one (common words too) in one pass over the phrases asked
        docs, ((scores, best), (loose, loose_best)) = pidx.matches_at(words, (rare, 0.0), cfg.min_cover,
                                                                      cfg.strengths)
        m = _Match(words, docs, scores, best)
        extra = docs[(loose > scores) & (loose >= cfg.threshold)]
        # Only those that could pass _gate's name rule for a meaning match are worth encoding words for.
        least = max(cfg.min_name_share, cfg.meaning_name_share)
        franchise = CHARACTER_WORD in task.tokens
        shares = state.name_shares  # the whole prompt's words: the same share for every task that asks
        todo = [d for d in extra.tolist() if d not in shares]
        shares.update(zip(todo, pidx.name_shares(todo, everything)))
        keep = [d for d in extra.tolist()
                if d in state.named or (franchise and state.is_character(d)) or shares[d] >= least]
        # A card refused whatever its words mean here (a character the prompt does not name, content it does
        # not ask for) is not worth encoding a window for: a quarter of the windows of queries-dev.
        m.extra = np.array([d for d in keep if not state.not_wanted(d, task.tokens)], np.int64)
        m.loose, m.loose_best = loose, loose_best
        tokens, lo = list(task.tokens), 0
        if len(tokens) <= cfg.short and not medium_only(tokens):
            before = list(around[0])[-cfg.window:] if cfg.window else []
            after = list(around[1])[:cfg.window]
            tokens, lo = before + tokens + after, len(before)
        for unit in loose_best[m.at(m.extra)].tolist():
            if unit not in m.windows:
                m.windows[unit] = _window(tokens, words, pidx.unit_words(unit), cfg.window, lo)
                if len(tokens) > len(task.tokens):  # it borrowed words: its own are judged first
                    m.alone[unit] = _window(task.tokens, words, pidx.unit_words(unit), cfg.window)
        return m

    def _alone(self, m: "_Match", meaning, d: int, unit: int) -> float | None:
        """A short task's candidate judged on the task's own words: that similarity when it decides (it
        reaches meaning_alone, or falls short of meaning: the words around may veto a match, never make
        one), else None (the words around decide)."""
        if unit not in m.alone:
            return None
        alone = float(meaning.vectors[d] @ meaning.vector(m.alone[unit]))
        if alone >= self.config.meaning_alone or alone < self.config.meaning:
            return alone
        return None

    def _contexts_needed(self, m: "_Match", meaning) -> list:
        """The windows with the neighbouring tasks' words that some candidate's decision may need: those
        whose own words are not encoded yet, and those whose own words leave the decision to them (a lone tag
        seen before - most are - costs the encoder nothing unless its context decides)."""
        at = m.at(m.extra)
        out = []
        for d, unit in zip(m.extra.tolist(), m.loose_best[at].tolist()):
            if unit not in m.alone:
                continue
            if not meaning.has(m.alone[unit]) or self._alone(m, meaning, d, unit) is None:
                out.append(m.windows[unit])
        return out

    @staticmethod
    def _phrase(pidx, unit: int) -> str:
        """The purpose phrase as the encoder reads a title: without format words or a CJK half ('Pixel style
        lora 像素化lora')."""
        return plain_title(pidx.unit_text[unit]) or pidx.unit_text[unit]

    def _common_by_meaning(self, m: "_Match", meaning, pidx) -> None:
        """One task's meaning check (_judge_by_meaning)."""
        self._judge_by_meaning([m], meaning, pidx)

    def _judge_by_meaning(self, matches: list, meaning, pidx) -> None:
        """A common word asks for an adapter only when the words around it mean what the adapter is for:
        "storm clouds" asks for a clouds LoRA, not for "Clouds - Style", an art style (their purpose vectors
        are far apart); "a cat sleeping on a laptop" asks for a cat LoRA (the window, not the whole sentence,
        is compared). A window close to the whole purpose must also be close to the card's title or to the
        phrase it matched (phrase_floor): those windows and phrases are encoded for the whole prompt in one
        pass."""
        close = [self._similarities(m, meaning) for m in matches]
        texts = [t for m, units in zip(matches, close) for d, unit in units
                 for t in (m.windows[unit], self._phrase(pidx, unit))]
        if meaning.titles is None:  # the index's titles are not embedded yet (Meaning.title encodes them)
            texts += [title_text(pidx.entries[d].card) for units in close for d, _ in units]
        meaning.prefetch(texts)
        for m, units in zip(matches, close):
            for d, unit in units:
                window = meaning.vector(m.windows[unit])
                by_title = float(meaning.title(d, pidx.entries[d].card) @ window)
                by_phrase = float(meaning.vector(self._phrase(pidx, unit)) @ window)
                m.nearest[d] = max(by_title, by_phrase)
            self._keep_meant(m)

    def _similarities(self, m: "_Match", meaning) -> list:
        """Each candidate's similarity to the window (m.sims, to its purpose); the (document, phrase) pairs
        close enough that the floor must be checked (see _judge_by_meaning)."""
        if not len(m.extra):
            return []
        at = m.at(m.extra)
        cfg = self.config
        weight = cfg.context_weight if len(m.words) > 1 else 1.0
        close = []
        for d, unit in zip(m.extra.tolist(), m.loose_best[at].tolist()):
            sim = self._alone(m, meaning, d, unit)
            if sim is None:
                sim = float(meaning.vectors[d] @ meaning.vector(m.windows[unit]))
                if unit in m.alone:  # a short task's own words undecided: they and the words around weigh in
                    alone = float(meaning.vectors[d] @ meaning.vector(m.alone[unit]))
                    sim = (1 - weight) * alone + weight * sim
            m.sims[d] = sim
            if sim >= cfg.meaning:
                close.append((d, unit))
        return close

    def _keep_meant(self, m: "_Match") -> None:
        """Keep the candidates the meaning check lets through (their scores and best phrases count)."""
        if not len(m.extra):
            return
        cfg = self.config
        at = m.at(m.extra)
        docs = m.extra.tolist()
        sims = np.array([m.sims[d] for d in docs], np.float32)
        nearest = np.array([m.nearest.get(d, 0.0) for d in docs], np.float32)
        keep = (sims >= cfg.meaning) & (nearest >= cfg.phrase_floor)
        close = at[keep]
        m.scores[close] = m.loose[close]
        m.best[close] = m.loose_best[close]
        m.meant.update(zip(m.extra[keep].tolist(), sims[keep].tolist()))

    def _task_candidates(self, snap, t: int, task: Task, pidx, allowed: np.ndarray, drops: list,
                         everything: set, state: "Selection", meaning, m: "_Match") -> list:
        """(task, score, share, doc, unit, rank) for the adapters one of whose purpose phrases this task asks,
        best first (ranked by the share of their whole name asked, then by BM25 over their whole text)."""
        cfg = self.config
        if meaning is not None:  # judged for the whole prompt (_judge_by_meaning)
            state.meant.update(m.meant)
            refused = sorted((d for d in m.sims if d not in m.meant), key=lambda d: -m.sims[d])
            refused = refused[:REFUSED_SHOWN]
            for d in refused:
                if m.sims[d] >= cfg.meaning:
                    why = (f"its words here are close to none of its phrases (nearest {m.nearest[d]:.2f}, "
                           f"needs {cfg.phrase_floor:.2f})")
                else:
                    why = (f"its words here mean something else (meaning {m.sims[d]:.2f}, "
                           f"needs {cfg.meaning:.2f})")
                drops.append(Drop(_stem(pidx, d), t, float(m.loose[m.at(d)]), why))
        words = m.words
        # m's arrays hold the documents asked only (m.docs); a document's score, rank, best phrase by its row
        hit = m.scores > 0
        ranked = m.scores.copy()
        if hit.any():
            ranked += TIEBREAK * self._lexical(snap, task, pidx.n)[m.docs] * hit
        top = _top_at(m.docs, ranked, pidx.n, cfg.pool)
        if not len(top):
            task.note = "no adapter is made for these words"
            return []
        at = m.at(top)
        scores = dict(zip(top.tolist(), m.scores[at].tolist()))
        best = dict(zip(top.tolist(), m.best[at].tolist()))
        rank = {d: r * (1 - cfg.name_weight + cfg.name_weight * pidx.name_share(d, set(words)))
                for d, r in zip(top.tolist(), ranked[at].tolist())}
        top = np.array(sorted(rank, key=lambda d: -rank[d]), np.int64)
        _note_wrong_base(t, top, scores, allowed, pidx, cfg.threshold, drops)
        top = [d for d in top if allowed[d]]
        if not top:
            task.note = "wrong base model"
            return []
        out = []
        for doc in top:
            score = float(scores[doc])
            reason = self._gate(state, pidx, doc, int(best[doc]), score, task, everything, doc in m.meant)
            if reason:
                if not out:
                    task.note = reason
                drops.append(Drop(_stem(pidx, doc), t, score, reason))
                continue
            out.append((t, score, score, int(doc), int(best[doc]), rank[int(doc)]))
        return out

    def _gate(self, state, pidx, doc, unit: int, score: float, task: Task, everything: set,
              meant: bool = False) -> str:
        """Why a candidate is not kept for its task ('' if it is)."""
        cfg = self.config
        if doc in state.named:
            return ""  # the prompt names this character: its own rules (Selection.refusal) decide
        character = state.is_character(doc)
        entry = state.snap.entries[doc]
        words = pidx.unit_text[unit]
        series_only = cfg.skip_series and not character and state.series_of_named(words, card=True)
        if series_only and not _asks_more(entry.card, pidx.unit_words(unit), task):
            # 'Super Mario LoRA' (it shows Mario) for "princess peach, super mario bros": the words that
            # asked for it say whose Peach she is, as a task of the series alone does (names_series_of_named);
            # "blue archive official art" still asks a 'Blue Archive | Style' tagged 'style art' for its art
            return f"{NAMED_SERIES} ('{words}')"
        # (a character's card: the character rules decide)
        its_name = "" if character else _of_series_only(entry.card, pidx.unit_words(unit), task,
                                                        state.is_series)
        if its_name:
            return f"{SERIES_OF} ('{words}'; it is '{its_name}')"
        if not character and int(pidx.unit_kind[unit]) == TAG_KIND and self._characters_tag(state, words) \
                and not pidx.name_share(int(doc), pidx.unit_words(unit)):
            return f"{CHARACTERS_TAG} ('{words}')"
        plain = not meant and not character
        if cfg.everyday_tag and plain and self._one_everyday_tag(state, pidx, doc, unit):
            return f"{EVERYDAY_TAG} ('{words}')"
        if score < cfg.threshold:
            return (f"no candidate above threshold (asks {score:.0%} of its purpose '{words}', "
                    f"needs {cfg.threshold:.0%})")
        head = pidx.unit_head(unit) if cfg.heads else ""
        if head and head not in task.asked:
            # "linen curtains" asks for no 'Linen dress', "wool jumper" for no 'Jumper Dress'
            return f"{MODIFIER_ONLY} '{words}' (not '{head}')"
        material = card_profile(state.snap, doc).material
        if material and not material & state.profile.made_of:
            # 'Smoke' makes 'people, animals, objects out of smoke': the smoke of a scene does not ask it
            return f"{MADE_OF} ('{' / '.join(sorted(material))}')"
        kind = _another_kind(entry.card, pidx.unit_words(unit), task) if cfg.contrast else ""
        if kind:
            return kind
        # A tag names one thing an adapter does, and its name rarely repeats it ("Seasons" for "autumn");
        # a name phrase or a character's card that the prompt asks only in part is about something more.
        # A common word's match ("dress" of "Flower dress") must hold more of the card's name: the word alone
        # says little of what the card adds.
        partial = cfg.gate_tags or int(pidx.unit_kind[unit]) != TAG_KIND or character or meant
        if character and CHARACTER_WORD in task.tokens:
            partial = False  # "<franchise> character" asks for one whose name it cannot know
        least = max(cfg.min_name_share, cfg.meaning_name_share) if meant else cfg.min_name_share
        if partial and pidx.name_share(int(doc), everything) < least:
            what = CHARACTER_NOT_NAMED if character else "its name says more than the prompt asks"
            return f"{what} (under {least:.0%} of its name is in the prompt)"
        return ""

    @staticmethod
    def _one_everyday_tag(state: "Selection", pidx, doc: int, unit: int) -> bool:
        """Whether the phrase is one tag of one everyday word that neither the card's title (its brackets
        too: 'Taiikukan (Japanese school gymnasium)') nor its file name holds ('needle' of 'large syringe',
        'clay' of 'Claymation', 'foliage' of 'Atlas')."""
        if int(pidx.unit_kind[unit]) != TAG_KIND:
            return False
        toks = tokenize(pidx.unit_text[unit])
        if len(toks) != 1 or toks[0] not in state.everyday:
            return False
        card = state.snap.entries[doc].card
        named = set(purpose_words(card.title or "")) | set(purpose_words(card.stem or ""))
        return not pidx.unit_words(unit) & named

    def _characters_tag(self, state: "Selection", tag: str) -> bool:
        """Whether a tag is one nearly only characters' cards carry ('virtual youtuber': 35 of its 37 cards):
        on another card (a pose sheet, an artist's style) it says who the training pictures show, not what
        the card is for."""
        cfg = self.config
        if cfg.characters_tag >= 1:
            return False
        if state.is_series(tag):  # a franchise's: its style and its things are asked by it
            return False
        cards, share = state.chars.characters_share(tag)
        return cards >= cfg.characters_tag_cards and share >= cfg.characters_tag

    def _fill_one(self, state: "Selection", comp: Composition, t: int, queue: list) -> None:
        """Give task t its next adapter: the first in its queue that no rule refuses; refusals are
        recorded."""
        task = comp.tasks[t]
        pidx = purpose_index(state.snap)
        while queue:
            _, score, cov, doc, unit, _ = queue.pop(0)
            words = pidx.unit_words(unit) if unit >= 0 else frozenset()
            # Another adapter for the words already served is an alternative, and must be about as good;
            # one for other words of the task is another concept of a sentence.
            same = any(words & pidx.unit_words(a.unit) for a in task.adapters if a.unit >= 0) or \
                (unit < 0 and any(a.unit < 0 for a in task.adapters))
            if same and score < self.config.margin * task.adapters[0].score:
                comp.drops.append(Drop(state.snap.entries[doc].card.stem, t, cov,
                                       "weaker than the task's first adapter"))
                continue
            entry = state.snap.entries[doc]
            reason = state.refusal(doc, entry, len(task.adapters), task.tokens, unit)
            if reason:
                comp.drops.append(Drop(entry.card.stem, t, cov, reason))
                if reason == ALREADY_TAGGED and not task.adapters:
                    task.note = f"served by {entry.card.alias}, already in the prompt"
                    queue.clear()  # the task's best adapter is there: nothing weaker is added on top
                    return
                continue
            state.take(doc, entry)
            if unit == NAMED:
                why = f"the prompt names this character ('{state.prompt_names[doc]}')"
                named = True
            else:
                kind = int(pidx.unit_kind[unit])
                phrase = pidx.unit_text[unit]
                why = (f"asks for its {('name', 'file name', 'tag', 'trigger word')[kind]} "
                       f"'{phrase}' ({cov:.0%})")
                if doc in state.meant:
                    why += f", close in meaning ({state.meant[doc]:.2f})"
                named = doc in state.named or (kind != TAG_KIND and cov >= 0.999)
            task.adapters.append(Assigned(entry, score, cov, why, t, unit, named))
            return


@dataclass
class _Match:
    """One task's purpose matches (Composer._match): per document asked (``docs``, sorted; every other scores
    0) its score and best phrase; with a meaning encoder, the common-word matches still to be checked and the
    window of words each is judged on."""
    words: list
    docs: np.ndarray
    scores: np.ndarray
    best: np.ndarray
    loose: Optional[np.ndarray] = None
    loose_best: Optional[np.ndarray] = None
    extra: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    windows: dict = field(default_factory=dict)  # unit -> the task's words around it
    alone: dict = field(default_factory=dict)    # unit -> the task's own words, when windows borrowed some
    meant: dict = field(default_factory=dict)    # document kept by meaning (a common word's match) -> cosine
    sims: dict = field(default_factory=dict)     # every common-word candidate checked -> similarity
    nearest: dict = field(default_factory=dict)  # one close to its purpose -> to its title or phrase

    def at(self, docs):
        """Where documents of ``docs`` (all asked) are in the arrays."""
        return np.searchsorted(self.docs, docs)


def _asks_more(card, unit_words: frozenset, task: Task) -> bool:
    """Whether the task asks words the card says of itself (title, tags, trigger words) besides those of the
    phrase that matched."""
    texts = [card.title] + list(card.tags or ()) + list(card.trigger_words or ())
    said = " ".join(t for t in texts if isinstance(t, str))
    return bool((task.asked & set(prompt_words(tokenize(said)))) - unit_words)


def _of_series_only(card, unit_words: frozenset, task: Task, is_series) -> str:
    """The card's name when its phrase that matched holds the series the name is said to be of, in a bracket
    after it ('Nikke' of 'Sakura 2 Outfits (Nikke)', or its tag 'goddess of victory: nikke'), and the task
    asks none of the name's own words: '' otherwise. Such a card is about its name (her costumes), not the
    series. ``is_series`` says whether a bracket's text is a series (the library's franchises): a bracket may
    also translate the name ('体育館 taiikukan (Japanese school gymnasium)'). A name that is only a kind of card
    ('Anime Style (Nikke)') leaves the card the series' own, and a bracket before the name is a category
    ('[Ukiyo-e] Hasui Painting Style')."""
    head, own = "", set()
    for piece, bracketed in title_pieces(card.title):
        words = set(purpose_words(piece))
        if not bracketed and not head:
            head, own = piece.strip(), words - KIND_WORDS
        elif bracketed and head and unit_words & words and is_series(piece):
            return head if own and not own & task.asked else ""
    return ""


_RAW_WORD = re.compile(r"[^\W_]+")
# Words that praise a thing or say what every card is ('Beautiful sky', 'Realistic dress'): they name no kind
# of it, so a prompt's own modifier ('blue sky') asks no other kind. Civitai's audience tags and the quality
# boilerplate, as words.
_NO_KIND = frozenset(w for phrase in GENERIC_TAGS | BOILERPLATE for w in purpose_words(phrase))


def _another_kind(card, unit_words: frozenset, task: Task) -> str:
    """Why the task asks another kind of the thing the card's name is ('' if it does not): the task asks only
    the head of a name piece ('palette' of 'Neon Palette'), none of the piece's modifiers ('neon'), and writes
    a modifier of its own right before that word ('desaturated blue-grey palette'). The card's kind of the
    thing is not the one asked; a bare 'palette' still asks it."""
    asked = unit_words & task.asked
    if len(asked) != 1:
        return ""
    head = next(iter(asked))
    raw = [(m.group(), prompt_words(tokenize(m.group()))) for m in _RAW_WORD.finditer(task.plain)]
    for piece, bracketed in title_pieces(card.title):
        words = [w for w in purpose_words(piece) if w not in KIND_WORDS]
        if bracketed or len(words) < 2 or words[-1] != head:
            continue
        # a kind the card is about is one it tags on its own ('neon' of 'Neon Palette'); 'simple chibi' is
        # drawn simply, and a tag 'vivid watercolors' only repeats the name
        tags = [purpose_words(tag) for tag in card.tags or ()]
        tagged = {w for tag in tags if head not in tag for w in tag}
        kinds = (set(words[:-1]) & tagged) - _NO_KIND
        if not kinds:
            continue
        if kinds & task.asked:
            return ""  # the prompt asks the card's own kind ('glowing neon colour palette')
        at = [i for i, (_, folded) in enumerate(raw) if head in folded]
        # the word right before each mention, when it is a word of weight (not 'a', 'the', 'and')
        before = [raw[i - 1] for i in at if i > 0 and raw[i - 1][1]]
        if at and len(before) == len(at) and not any(kinds & set(f) for _, f in before):
            theirs = " ".join(w for w in words[:-1] if w in kinds)
            return f"{ANOTHER_KIND} '{piece.strip()}' ('{before[0][0]} {raw[at[0]][0]}', not '{theirs}')"
    return ""


def _around(tasks: list, t: int) -> tuple:
    """The tokens of the tasks before and after task t (the prompt's neighbouring segments)."""
    before = tasks[t - 1].tokens if t > 0 else ()
    after = tasks[t + 1].tokens if t + 1 < len(tasks) else ()
    return before, after


def _window(tokens: list, words: list, unit_words: frozenset, width: int, lo: int = 0) -> str:
    """The task's tokens around the words of a purpose phrase (``width`` words each side); the task's words
    start at ``lo`` of ``tokens`` (the words before are a neighbouring segment's)."""
    at = [lo + i for i, w in enumerate(words) if w in unit_words]
    if not at:
        return " ".join(tokens)
    return " ".join(tokens[max(0, min(at) - width):max(at) + width + 1])


class Selection:
    """What is chosen so far across tasks, and the global rules checked against it."""

    def __init__(self, snap, prompt: str, config: ComposerConfig, max_adapters: int,
                 everyday: frozenset = frozenset()):
        self.snap, self.prompt, self.config = snap, prompt, config
        self.max_styles, self.max_adapters = config.max_styles, max_adapters
        self.existing_names = tagged_names(prompt)
        pidx = purpose_index(snap)
        rows = pidx.by_name
        self.used = {i for name in self.existing_names for i in rows.get(name, ())}
        self.styles = sum(snap.entries[i].refined.topic == "style" for i in self.used)
        self.count = 0
        self.chars = character_index(snap)
        self.everyday = everyday  # the sentence encoder's whole words: the language's common words
        # row -> the name as the prompt writes it
        self.prompt_names = self.chars.unambiguous(prompt, self.chars.named_in(prompt), everyday)
        self.named = set(self.prompt_names)
        # the franchises of the characters the prompt names (series_of_named, per candidate)
        self.named_series = set().union(*(self.chars.franchises(r) for r in self.prompt_names))
        self.franchises_asked = self.chars.franchise_asked(prompt, self.prompt_names)
        self.profile = profile_prompt(prompt, self.prompt_names)  # gender, NSFW, ethnicity, real person asked
        self.shown = ShownCheck(snap, prompt, self.profile)  # what the candidates' sample images show
        self.meant: dict = {}  # row -> meaning similarity, for candidates a common word matched
        self.name_shares: dict = {}  # row -> PurposeIndex.name_share of the prompt's words (Composer._match)

    def is_character(self, doc: int) -> bool:
        return self.chars.is_character(doc)

    def is_series(self, text: str) -> bool:
        """Whether a card's phrase names a series the library knows, and nothing else."""
        return bool(self.chars.only_franchises(text, card=True))

    def names_series_of_named(self, task: "Task") -> bool:
        """The task only names the series of a character the prompt names ("raiden ei, genshin impact"): it
        tells who the character is and asks for no adapter of its own (a series style would take a slot from
        what the prompt does ask)."""
        return self.series_of_named(task.plain)

    def series_of_named(self, text: str, card: bool = False) -> bool:
        """The text (``card``: a card's phrase) names only franchises of characters the prompt names."""
        if not self.prompt_names:
            return False
        series = self.chars.only_franchises(text, card)
        return bool(series) and series <= self.named_series

    def refusal(self, doc: int, entry, in_task: int, task_words: list, unit: int = NAMED) -> str:
        if not entry.card.alias:
            return "no <lora:> name reaches this file (another file has its name)"
        if doc in self.used:
            return (ALREADY_TAGGED if _names(entry) & self.existing_names
                    else "already picked for another task")
        reason = self.not_wanted(doc, task_words) or self.shown.conflict(doc, unit, doc in self.named)
        if reason:
            return reason
        if entry.refined.weight < 0:
            return "meant at a negative weight: it would remove what the prompt asks for"
        if entry.refined.topic == "style" and self.styles >= self.max_styles:
            return f"style limit reached ({self.max_styles} style adapters)"
        if in_task >= min(self.config.per_task, MAX_PER_TASK):
            return f"task already has {self.config.per_task} adapters"
        if self.count >= self.max_adapters:
            return f"adapter limit reached ({self.max_adapters})"
        return ""

    def not_wanted(self, doc: int, task_words: list) -> str:
        """Why the card is refused whatever a task's words ask of it ('' if not): a character the prompt does
        not name, or what it adds that the prompt does not ask for (content.conflict). ``task_words``: the
        words of the task it is a candidate of, which may ask for a character by kind."""
        # "<franchise> character" asks for a character of that franchise: the task itself names the kind.
        asks_character = CHARACTER_WORD in task_words and bool(self.chars.franchises(doc)
                                                                & self.franchises_asked)
        if self.is_character(doc) and not asks_character:
            reason = self.chars.refusal(doc, self.prompt_names)
            if reason:
                return reason
        character = self.is_character(doc) or doc in self.named
        return conflict(card_profile(self.snap, doc), self.profile, character)

    def take(self, doc: int, entry) -> None:
        self.used.add(doc)
        self.count += 1
        self.styles += entry.refined.topic == "style"


def _add_named(state: "Selection", pidx, tasks: list, queues: list, allowed: np.ndarray) -> None:
    """Every character the prompt names is a candidate of the task that names it, first in its queue, even
    when no purpose phrase matched ("raiden ei" for a card titled "Shogun Raiden"). Named candidates keep
    their match order (then row order): never the order of a dict or set, which varies between processes."""
    named: dict = {}  # task -> named rows
    for doc, name in state.prompt_names.items():
        if not allowed[doc]:
            continue
        words = set(tokenize(name))
        t = next((i for i, task in enumerate(tasks) if words <= set(task.tokens)), None)
        if t is None:
            t = next((i for i, task in enumerate(tasks) if words & set(task.tokens)), None)
        if t is not None:
            named.setdefault(t, set()).add(doc)
    for t, docs in named.items():
        queue = queues[t]
        place = {item[3]: i for i, item in reversed(list(enumerate(queue)))}
        first = sorted(docs, key=lambda d: (place.get(d, len(queue)), d))
        head = queue[0] if queue and queue[0][3] in docs else None  # already first: kept as matched
        queue[:] = [head if head and d == head[3] else (t, 1.0, 1.0, d, NAMED, 2.0) for d in first] + \
            [item for item in queue if item[3] not in docs]


def _without_trigger_tasks(tasks: list, tagged: list) -> list:
    """Segments that are only the trigger words of LoRAs already tagged (e.g. what Stylus itself wrote into a
    pasted prompt) ask for nothing new: composing them again would stack adapters on every re-run."""
    triggers = {tuple(tokenize(w)) for e in tagged for w in e.card.trigger_words}
    return [t for t in tasks if tuple(t.tokens) not in triggers]


def _names(entry) -> set:
    return {entry.card.alias.casefold(), entry.card.stem.casefold()}


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, int(np.count_nonzero(scores)))
    if k <= 0:
        return np.empty(0, np.int64)
    idx = np.argpartition(-scores, k - 1)[:k]
    return idx[np.argsort(-scores[idx], kind="stable")]


def _top_at(docs: np.ndarray, values: np.ndarray, n: int, k: int) -> np.ndarray:
    """_top of the n scores that are ``values`` at ``docs`` and 0 elsewhere. Without equal scores the order is
    the scores' own, found among the few; with them (copies of a card) it is np.argpartition's over all n,
    which no shorter array reproduces, and picks depend on it."""
    nonzero = values != 0
    ones, vals = docs[nonzero], values[nonzero]
    if len(np.unique(vals)) == len(vals):
        return ones[np.argsort(-vals, kind="stable")[:k]]
    dense = np.zeros(n, values.dtype)
    dense[docs] = values
    return _top(dense, k)


def _stem(pidx, doc: int) -> str:
    return pidx.stems[doc]


def _note_wrong_base(t: int, top, scores, allowed, pidx, floor: float, drops: list) -> None:
    """Adapters that would fit but are made for another base model: reported, never offered."""
    for doc in top[:5]:
        if not allowed[doc] and scores[doc] >= floor:
            drops.append(Drop(_stem(pidx, doc), t, float(scores[doc]), "wrong base model"))
