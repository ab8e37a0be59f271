"""Stylus masking (Luo et al. 2024, §3.4): which of the composer's adapters go into each image, and at what
weight. Plain library, standard library only.

Input: ``tasks``, a sequence of tasks; each task a sequence of candidates, given as ``(key, weight)`` pairs,
``Candidate`` objects, or anything with ``.key`` and ``.weight`` (``weight`` = the adapter's recommended
weight from the refiner/catalog). Output: a ``Mask`` with the active adapters and their final weights.

Rules (paper's scheme, plus the choices documented here):

* Per task one scheme, drawn uniformly from ``one-hot`` (one candidate, uniform), ``all`` and ``none``;
  tasks draw independently, so schemes cross over tasks and differ from image to image.
* "No adapter at all" is rejected and redrawn (when at least one task has candidates): the user asked Stylus
  for adapters, and an un-adapted image is a wasted sample. Rejection sampling keeps the remaining scheme
  combinations exactly as likely relative to each other as in the plain cross product.
* Weight of an active adapter = recommended × ``multiplier`` (0.8) ÷ number of active adapters in its task,
  clamped to ``weight_range`` (default [-2, 2]: negative weights are legitimate for "slider" LoRAs, beyond
  ±2 any LoRA destroys the image, and a broken catalog value must not reach the prompt). The same key in
  two tasks (the composer should prevent this) is written once, with the sum of its shares, clamped.
* Seeded: a private ``random.Random`` per draw, seeded from a salted string of the seed (string seeds go
  through SHA-512, stable across runs and platforms), and only ``Random.random()`` is used, whose sequence
  Python guarantees across versions. No global random state is read or changed.
* ``enabled=False`` = the deterministic ``all`` scheme for every task, whatever the seed.
* ``required``: tasks the user named outright (a character, a concept the prompt spells out). Their scheme is
  drawn from ``one-hot`` and ``all`` only, so a seed never leaves what the user named out of the image;
  one-hot still varies which of the task's alternatives serves it.
* Every candidate left out is listed in ``Mask.masked_out`` with its reason, for the user to see.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

__all__ = [
    "MULTIPLIER", "WEIGHT_RANGE", "SCHEMES", "Candidate", "Active", "Left", "Mask",
    "adapter_weight", "draw_mask", "plan_batches",
]

MULTIPLIER = 0.8
WEIGHT_RANGE = (-2.0, 2.0)
ONE_HOT, ALL, NONE, EMPTY = "one-hot", "all", "none", "empty"
SCHEMES = (ONE_HOT, ALL, NONE)  # the paper's three per-task masks; EMPTY marks a task with no candidates


@dataclass(frozen=True)
class Candidate:
    key: str
    weight: float


@dataclass(frozen=True)
class Active:
    """An adapter switched on for an image: ``key`` as given, final ``weight``, index of its (first) task."""
    key: str
    weight: float
    task: int


@dataclass(frozen=True)
class Left:
    """A candidate this mask leaves out: ``key``, its task, and why."""
    key: str
    task: int
    reason: str


@dataclass(frozen=True)
class Mask:
    """One image's (or one batch's) adapter set. ``schemes[i]`` is task i's scheme."""
    seed: int
    schemes: Tuple[str, ...]
    active: Tuple[Active, ...]
    masked_out: Tuple[Left, ...] = ()

    @property
    def keys(self) -> Tuple[str, ...]:
        return tuple(a.key for a in self.active)

    def weights(self) -> Dict[str, float]:
        return {a.key: a.weight for a in self.active}


def _candidate(item: Any) -> Candidate:
    if isinstance(item, Candidate):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        key, weight = item
    else:
        key, weight = item.key, item.weight
    weight = float(weight)
    if not math.isfinite(weight):
        raise ValueError(f"adapter {key!r} has a non-finite weight {weight!r}")
    return Candidate(key, weight)


def _normalise(tasks: Sequence[Sequence[Any]]) -> List[List[Candidate]]:
    return [[_candidate(c) for c in task] for task in tasks]


def adapter_weight(recommended: float, active_in_task: int, multiplier: float = MULTIPLIER,
                   weight_range: Tuple[float, float] = WEIGHT_RANGE) -> float:
    """The paper's rule: recommended × multiplier ÷ active adapters in the task, clamped to weight_range."""
    if active_in_task < 1:
        raise ValueError("an active adapter's task has at least one active adapter")
    low, high = weight_range
    return min(high, max(low, recommended * multiplier / active_in_task))


def _draw_scheme(rng: random.Random, size: int, required: bool = False) -> Tuple[str, Tuple[int, ...]]:
    """(scheme, indexes of the active candidates) for a task of ``size`` candidates; a required task never
    draws ``none``."""
    if size == 0:
        return EMPTY, ()
    schemes = SCHEMES[:2] if required else SCHEMES
    scheme = schemes[min(int(rng.random() * len(schemes)), len(schemes) - 1)]
    if scheme == ONE_HOT:
        return scheme, (min(int(rng.random() * size), size - 1),)
    return scheme, (tuple(range(size)) if scheme == ALL else ())


def _rng(seed: int) -> random.Random:
    # A salted string seed: the masks do not correlate with other uses of the same image seed.
    return random.Random(f"stylus.masking:{int(seed)}")


def _choose(tasks: List[List[Candidate]], seed: int, enabled: bool,
            required: Sequence[bool] = ()) -> List[Tuple[str, Tuple[int, ...]]]:
    if not enabled:
        return [(ALL, tuple(range(len(t)))) if t else (EMPTY, ()) for t in tasks]
    rng = _rng(seed)
    need = [i < len(required) and bool(required[i]) for i in range(len(tasks))]
    while True:
        choice = [_draw_scheme(rng, len(t), r) for t, r in zip(tasks, need)]
        # Redraw "nothing active" unless nothing can be active (every task empty, or no tasks).
        if any(idx for _, idx in choice) or not any(tasks):
            return choice


def draw_mask(tasks: Sequence[Sequence[Any]], seed: int, *, enabled: bool = True,
              multiplier: float = MULTIPLIER, weight_range: Tuple[float, float] = WEIGHT_RANGE,
              required: Sequence[bool] = ()) -> Mask:
    """The active adapters for the image with ``seed``; same inputs and seed → same Mask. ``required[i]``:
    task i was named by the user and keeps at least one adapter."""
    normal = _normalise(tasks)
    choice = _choose(normal, seed, enabled, required)
    totals: Dict[str, float] = {}
    first_task: Dict[str, int] = {}
    left: List[Left] = []
    for t, (task, (scheme, idx)) in enumerate(zip(normal, choice)):
        for i in idx:
            c = task[i]
            share = adapter_weight(c.weight, len(idx), multiplier, weight_range)
            totals[c.key] = totals.get(c.key, 0.0) + share
            first_task.setdefault(c.key, t)
        for i, c in enumerate(task):
            if i not in idx:
                left.append(Left(c.key, t, _left_reason(scheme, task, idx, seed)))
    low, high = weight_range
    active = tuple(Active(k, min(high, max(low, w)), first_task[k]) for k, w in totals.items())
    return Mask(int(seed), tuple(s for s, _ in choice), active, tuple(x for x in left if x.key not in totals))


def _left_reason(scheme: str, task: List[Candidate], idx: Tuple[int, ...], seed: int) -> str:
    if scheme == ONE_HOT:
        return f"masked out for seed {seed}: one of its task's adapters is drawn ({task[idx[0]].key})"
    return f"masked out for seed {seed}: its task is left without adapters in this image"


def plan_batches(tasks: Sequence[Sequence[Any]], seeds: Sequence[int], batch_size: int,
                 **options: Any) -> List[Mask]:
    """One Mask per image, in ``seeds`` order (the web UI's ``p.all_seeds``: n_iter × batch_size).

    The web UI activates only the first prompt's networks for a whole batch, so every image of a batch
    shares the Mask drawn from the batch's first seed; with batch_size 1 each image gets its own seed's
    Mask. A short last batch is planned the same way. ``options`` go to ``draw_mask``."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    normal = _normalise(tasks)  # validate once, not per batch
    plan: List[Mask] = []
    for start in range(0, len(seeds), batch_size):
        batch = seeds[start:start + batch_size]
        mask = draw_mask(normal, batch[0], **options)
        plan.extend([mask] * len(batch))
    return plan
