"""The paper's composer, done locally: prompt -> tasks (groups of the prompt's own words) -> 0-3 adapters per
task, every pick and every drop explained as data.

Rules (Stylus, arXiv 2404.18928 §3.3): each adapter at most once; its main purpose must match the task (its
name/tags/trigger words cover the task's telling words, see purpose.py) - sharing one word is not enough; no
character adapter unless the prompt names that character; at most 2 style adapters in all; a task may get none.
LoRAs already tagged in the prompt count as chosen and are never written twice."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import masking as masking_
from .embedding import BM25, tokenize
from .prompt import Pick, chunk_index, rewrite, split_segments, tagged_names
from .purpose import matched_words, name_words, purpose_index
from .refiner import _BOILERPLATE
from .retriever import allowed_families

MAX_PER_TASK = 3
MAX_TRIGGERS = 3
ALREADY_TAGGED = "already in the prompt"
CHARACTER_WORD = "character"  # tokenize() folds "characters"
MAX_STYLES = 2
TIEBREAK = 1e-3  # retrieval score's share in a task's ranking: orders equal purpose matches only


@dataclass
class Assigned:
    """An adapter given to a task: ``score`` is its purpose match, ``coverage`` the share of the task it explains."""
    entry: object
    score: float
    coverage: float
    reason: str
    task: int = -1

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
        return masking_.draw_mask(tasks, seed, enabled=masking, **draw_options)

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
        """The adapter's main trigger word (its first) plus those about its task, at most MAX_TRIGGERS: Civitai
        lists often carry every outfit and variant, and all of them would swamp the prompt."""
        words = a.entry.card.trigger_words
        task = set(self.tasks[a.task].tokens) if 0 <= a.task < len(self.tasks) else set()
        about = [w for w in words[1:] if task & set(tokenize(w))]
        return tuple((words[:1] + about)[:MAX_TRIGGERS])

    def to_dict(self) -> dict:
        """JSON-ready explanation (CLI, UI, infotext)."""
        return {"composer": self.composer, "fallback": self.fallback, "existing": self.existing,
                "tasks": [{"text": t.text, "span": list(t.span), "note": t.note,
                           "adapters": [{"stem": a.stem, "score": round(a.score, 3), "reason": a.reason}
                                        for a in t.adapters]} for t in self.tasks],
                "drops": [d.__dict__ for d in self.drops]}


def split_tasks(prompt: str) -> list:
    """One task per prompt segment (commas, newlines, BREAK, AND; tags and emphasis removed) that has words
    worth matching; quality boilerplate ("masterpiece", "best quality") and bare tags make no task."""
    tasks = []
    for seg in split_segments(prompt):
        if seg.plain.casefold() in _BOILERPLATE:
            continue
        toks = list(dict.fromkeys(tokenize(seg.plain)))
        if toks:
            tasks.append(Task(seg.text, (seg.start, seg.end), seg.plain, toks))
    return tasks


class Composer:
    """Local composer: lexical purpose matching over the retriever's index. Options (keyword):
    ``threshold`` share of a task's weight its adapter must explain; ``margin`` share of the task's best score
    a further adapter must reach; ``per_task`` adapters per task (<= 3); ``max_styles``; ``pool`` candidates
    looked at per task."""

    def __init__(self, retriever, threshold: float = 0.35, margin: float = 0.999, per_task: int = 2,
                 max_styles: int = MAX_STYLES, pool: int = 30):
        self.retriever = retriever
        self.threshold, self.margin = threshold, margin
        self.per_task, self.max_styles, self.pool = min(per_task, MAX_PER_TASK), max_styles, pool

    # ---- public ------------------------------------------------------------------------------------------
    def compose(self, prompt: str, base: str = "sd1", allow_unknown: bool = False,
                max_adapters: int = 6) -> Composition:
        snap = self.retriever.index.snapshot
        tasks = split_tasks(prompt)
        comp = Composition(prompt, base, tasks, [])
        if not snap.entries:
            return comp
        pidx = purpose_index(snap)
        allowed = snap.allowed(allowed_families(base, allow_unknown))
        state = _State(snap, prompt, self.max_styles, max_adapters)
        comp.existing = sorted(state.existing_names)
        comp.tasks = tasks = _without_trigger_tasks(tasks, [snap.entries[i] for i in state.used])
        queues = [self._task_candidates(t, task, pidx, allowed, comp.drops, base, allow_unknown)
                  for t, task in enumerate(tasks)]
        # Round by round, best-explained task first: every task gets its first adapter before any gets a
        # second, so the global limits (styles, total) cost a task its extras, not its only match.
        order = sorted(range(len(tasks)), key=lambda t: -(queues[t][0][2] if queues[t] else 0))
        for _ in range(self.per_task):
            for t in order:
                self._fill_one(state, comp, t, queues[t])
        for task in tasks:
            if not task.adapters and not task.note:
                task.note = "every candidate was dropped"
        return comp

    # ---- per task ----------------------------------------------------------------------------------------
    def _lexical(self, task: Task, pidx) -> np.ndarray:
        """BM25 of the task over the whole card text (the retriever's lexical state), scaled to [0, 1]: breaks
        ties between equal purpose matches in favour of the card most about the task."""
        state = self.retriever.index.snapshot.states.get("bm25")
        if state is None:
            return np.zeros(pidx.n, np.float32)
        lex = BM25().scores(state, task.plain)
        top = float(lex.max()) if len(lex) else 0.0
        return lex / top if top > 0 else lex

    def _task_candidates(self, t: int, task: Task, pidx, allowed: np.ndarray, drops: list, base: str,
                         allow_unknown: bool) -> list:
        """(task, score, coverage, doc, reason) for the adapters whose purpose explains this task."""
        total = sum(pidx.weights(task.tokens)) or 1.0
        scores = pidx.match(task.tokens)
        if scores.any():
            scores += TIEBREAK * self._lexical(task, pidx) * (scores > 0)
        top = _top(scores, self.pool)
        if not len(top) or scores[top[0]] <= 0:
            task.note = "no adapter is made for these words"
            return []
        _note_wrong_base(t, top, scores, allowed, pidx, self.threshold * total, drops)
        top = [d for d in top if allowed[d]]
        if not top:
            task.note = "wrong base model"
            return []
        out = []
        for doc in top:
            cov = float(scores[doc] / total)
            if cov < self.threshold:
                if not out:
                    task.note = "no candidate above threshold"
                    drops.append(Drop(_stem(pidx, doc), t, cov, f"no candidate above threshold "
                                      f"(explains {cov:.0%} of the task, needs {self.threshold:.0%})"))
                break
            out.append((t, float(scores[doc]), cov, int(doc)))
        return out

    def _fill_one(self, state: "_State", comp: Composition, t: int, queue: list) -> None:
        """Give task t its next adapter: the first in its queue that no rule refuses; refusals are recorded."""
        task = comp.tasks[t]
        while queue:
            _, score, cov, doc = queue.pop(0)
            if task.adapters and score < self.margin * task.adapters[0].score:
                comp.drops.append(Drop(state.snap.entries[doc].card.stem, t, cov,
                                       "weaker than the task's first adapter"))
                queue.clear()
                return
            entry = state.snap.entries[doc]
            reason = state.refusal(doc, entry, len(task.adapters), self.per_task, task.tokens)
            if reason:
                comp.drops.append(Drop(entry.card.stem, t, cov, reason))
                if reason == ALREADY_TAGGED and not task.adapters:
                    task.note = f"served by {entry.card.alias}, already in the prompt"
                    queue.clear()  # the task's best adapter is there: nothing weaker is added on top
                    return
                continue
            state.take(doc, entry)
            why = "name/tags match " + ", ".join(repr(w) for w in matched_words(task.tokens, entry.card))
            task.adapters.append(Assigned(entry, score, cov, f"{why} (explains {cov:.0%} of the task)", t))
            return


class _State:
    """What is chosen so far across tasks, and the global rules checked against it."""

    def __init__(self, snap, prompt: str, max_styles: int, max_adapters: int):
        self.snap, self.prompt = snap, prompt
        self.max_styles, self.max_adapters = max_styles, max_adapters
        self.existing_names = tagged_names(prompt)
        rows = purpose_index(snap).by_name
        self.used = {i for name in self.existing_names for i in rows.get(name, ())}
        self.styles = sum(snap.entries[i].refined.topic == "style" for i in self.used)
        self.count = 0
        self.prompt_words = set(tokenize(prompt))
        self.segment_words = [tokenize(seg.plain) for seg in split_segments(prompt)]  # once, not per card

    def refusal(self, doc: int, entry, in_task: int, per_task: int, task_words: list = ()) -> str:
        if not entry.card.alias:
            return "no <lora:> name reaches this file (another file has its name)"
        if doc in self.used:
            return ALREADY_TAGGED if _names(entry) & self.existing_names else "already picked for another task"
        # "<franchise> character" asks for a character of that franchise: the task itself names the kind.
        asks_character = CHARACTER_WORD in task_words
        if entry.refined.topic == "character" and not asks_character and not self.names_character(entry):
            return "character not named in the prompt"
        if entry.refined.topic == "style" and self.styles >= self.max_styles:
            return f"style limit reached ({self.max_styles} style adapters)"
        if in_task >= per_task:
            return f"task already has {per_task} adapters"
        if self.count >= self.max_adapters:
            return f"adapter limit reached ({self.max_adapters})"
        return ""

    def take(self, doc: int, entry) -> None:
        self.used.add(doc)
        self.count += 1
        self.styles += entry.refined.topic == "style"

    def names_character(self, entry) -> bool:
        """The prompt names a character when it has its main trigger phrase (the first: the others are often
        outfits like "light armor", which name nothing), or the rarest word of its name ('chun' in
        'Chun-Li (Street Fighter)': the franchise alone does not name her; version numbers aside)."""
        card = entry.card
        if any(_has_run(self.segment_words, tokenize(w)) for w in card.trigger_words[:1] if len(w) > 2):
            return True
        pidx = purpose_index(self.snap)
        words = [w for w in set(name_words(card.title)) | set(name_words(card.stem)) if not any(c.isdigit() for c in w)]
        return bool(words) and max(words, key=pidx.idf) in self.prompt_words


def _without_trigger_tasks(tasks: list, tagged: list) -> list:
    """Segments that are only the trigger words of LoRAs already tagged (e.g. what Stylus itself wrote into a
    pasted prompt) ask for nothing new: composing them again would stack adapters on every re-run."""
    triggers = {tuple(tokenize(w)) for e in tagged for w in e.card.trigger_words}
    return [t for t in tasks if tuple(t.tokens) not in triggers]


def _has_run(chunks: list, run: list) -> bool:
    """``run`` appears as consecutive words of one prompt segment (a trigger phrase written in the prompt)."""
    n = len(run)
    return n > 0 and any(words[i:i + n] == run for words in chunks for i in range(len(words) - n + 1))


def _names(entry) -> set:
    return {entry.card.alias.casefold(), entry.card.stem.casefold()}


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, int(np.count_nonzero(scores)))
    if k <= 0:
        return np.empty(0, np.int64)
    idx = np.argpartition(-scores, k - 1)[:k]
    return idx[np.argsort(-scores[idx], kind="stable")]


def _stem(pidx, doc: int) -> str:
    return pidx.stems[doc]


def _note_wrong_base(t: int, top, scores, allowed, pidx, floor: float, drops: list) -> None:
    """Adapters that would fit but are made for another base model: reported, never offered."""
    for doc in top[:5]:
        if not allowed[doc] and scores[doc] >= floor:
            drops.append(Drop(_stem(pidx, doc), t, float(scores[doc]), "wrong base model"))
