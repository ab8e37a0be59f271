"""A whole generation job's prompt rewrite, without the web UI: the host activates only the FIRST prompt's
networks for a whole batch, so one adapter set per batch (seeded from the batch's first seed), per image only
when batch size is 1; the same tags go into every prompt of the batch so each infotext tells the truth."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence


@dataclass
class JobRewrite:
    prompts: list
    negative_prompts: list
    hr_prompts: list | None
    hr_negative_prompts: list | None = None
    applied: list = field(default_factory=list)     # per image: "alias:weight, ..." (infotext)
    skipped: list = field(default_factory=list)     # (alias, reason) from the rewrite step
    notes: list = field(default_factory=list)       # card text left out of a prompt, and why (once each)
    compositions: dict = field(default_factory=dict)  # batch number -> Composition


def mask_seed(seeds: Sequence[int], image: int, batch_size: int, masking: str) -> int:
    """The seed whose mask image `image` uses: its own with batch size 1, else its batch's first (the host
    applies one LoRA set per batch); "same for all images": the job's first seed."""
    if masking == "same for all images":
        return int(seeds[0])
    if batch_size == 1:
        return int(seeds[image])
    return int(seeds[(image // batch_size) * batch_size])


def rewrite_job(prompts: Sequence[str], negatives: Sequence[str], seeds: Sequence[int], batch_size: int,
                compose: Callable[[str], object], masking: str = "per image", add_triggers: bool = True,
                multiplier: float = 0.8, hr_prompts: Sequence[str] | None = None,
                hr_negatives: Sequence[str] | None = None, add_negatives: bool = True) -> JobRewrite:
    """compose(prompt) -> Composition, called once per distinct batch-head prompt. Hires prompts get the same
    LoRAs as their first-pass image; negatives get the LoRAs' negative text when add_negatives."""
    out = JobRewrite(list(prompts), list(negatives), list(hr_prompts) if hr_prompts is not None else None,
                     hr_negative_prompts=list(hr_negatives) if hr_negatives is not None else None)
    cache: dict = {}
    batch_size = max(1, batch_size)
    for i, prompt in enumerate(prompts):
        # the host activates the batch's first prompt's LoRAs for all of it
        head = prompts[i - i % batch_size]
        comp = cache[head] if head in cache else cache.setdefault(head, compose(head))
        out.compositions[i // batch_size] = comp
        seed = mask_seed(seeds, i, batch_size, masking)

        def apply(text, negative):
            return comp.rewrite(text, seed, negative if add_negatives else None, add_triggers,
                                masking != "off", multiplier=multiplier)
        res = apply(prompt, _at(out.negative_prompts, i))
        out.prompts[i] = res.prompt
        _set(out.negative_prompts, i, res.negative_prompt)
        if out.hr_prompts is not None and i < len(out.hr_prompts):
            hr = apply(out.hr_prompts[i], _at(out.hr_negative_prompts, i))
            out.hr_prompts[i] = hr.prompt
            _set(out.hr_negative_prompts, i, hr.negative_prompt)
            out.notes.extend(hr.notes)
        out.applied.append(", ".join(f"{w.tag_name}:{w.pick.weight:g}" for w in res.written))
        out.skipped.extend((pick.alias, reason) for pick, reason in res.skipped)
        out.notes.extend(res.notes)
    out.notes = list(dict.fromkeys(out.notes))  # every image of a job meets the same card text
    return out


def _at(items, i):
    return items[i] if items is not None and i < len(items) else None


def _set(items, i, value) -> None:
    if items is not None and i < len(items) and value is not None:
        items[i] = value
