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
    applied: list = field(default_factory=list)     # per image: "alias:weight, ..." (infotext)
    skipped: list = field(default_factory=list)     # (alias, reason) from the rewrite step
    compositions: dict = field(default_factory=dict)  # batch number -> Composition


def mask_seed(seeds: Sequence[int], image: int, batch_size: int, masking: str) -> int:
    """The seed whose mask image `image` uses: its own with batch size 1 (or per batch), else the batch's first."""
    if masking == "per image" and batch_size == 1:
        return int(seeds[image])
    return int(seeds[(image // max(batch_size, 1)) * max(batch_size, 1)])


def rewrite_job(prompts: Sequence[str], negatives: Sequence[str], seeds: Sequence[int], batch_size: int,
                compose: Callable[[str], object], masking: str = "per image", add_triggers: bool = True,
                multiplier: float = 0.8, hr_prompts: Sequence[str] | None = None) -> JobRewrite:
    """compose(prompt) -> Composition (cached per distinct prompt by the caller or here)."""
    cache: dict = {}
    out = JobRewrite(list(prompts), list(negatives), list(hr_prompts) if hr_prompts is not None else None)
    batch_size = max(1, batch_size)
    for start in range(0, len(prompts), batch_size):
        head = prompts[start]
        comp = cache.get(head) or cache.setdefault(head, compose(head))
        out.compositions[start // batch_size] = comp
        for i in range(start, min(start + batch_size, len(prompts))):
            seed = mask_seed(seeds, i, batch_size, masking)
            res = comp.rewrite(prompts[i], seed, negatives[i] if i < len(negatives) else None, add_triggers,
                               masking != "off", multiplier=multiplier)
            out.prompts[i] = res.prompt
            if i < len(out.negative_prompts) and res.negative_prompt is not None:
                out.negative_prompts[i] = res.negative_prompt
            if out.hr_prompts is not None and i < len(out.hr_prompts):
                out.hr_prompts[i] = comp.rewrite(out.hr_prompts[i], seed, None, add_triggers, masking != "off",
                                                 multiplier=multiplier).prompt
            out.applied.append(", ".join(f"{w.tag_name}:{w.pick.weight:g}" for w in res.written))
            out.skipped.extend((s[0].alias, s[1]) for s in res.skipped)
    return out
