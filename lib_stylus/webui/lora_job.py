"""Auto-LoRA in a generation: rewrite p.all_prompts (and hires prompts) in Script.process, before the host
slices them into batches and parses their <lora:...> tags; write what was applied to the infotext."""
from __future__ import annotations

import logging

from ..jobs import rewrite_job
from . import host
from .args import StylusArgs, infotext_keys
from .service import SERVICE

log = logging.getLogger("stylus")
KEYS = infotext_keys()
APPLIED_KEY = "Stylus LoRAs"


def process(p, args: StylusArgs) -> None:
    base = host.loaded_base()
    if base == "other":
        log.warning("Stylus: the loaded model is not SD1/SD2/SDXL; auto-LoRA skipped")
        return
    known = host.registry_names()
    _ensure_fresh(known)
    host.state().textinfo = "Stylus: choosing LoRAs"

    def compose(prompt: str):
        comp = SERVICE.compose(prompt, base, args.max_adapters, args.composer)
        return _drop_unknown(comp, known)

    hr = getattr(p, "all_hr_prompts", None) if getattr(p, "enable_hr", False) else None
    job = rewrite_job(p.all_prompts, p.all_negative_prompts, p.all_seeds, p.batch_size, compose, args.masking,
                      args.add_triggers, args.weight_multiplier, hr)
    p.all_prompts, p.all_negative_prompts = job.prompts, job.negative_prompts
    if hr is not None:
        p.all_hr_prompts = job.hr_prompts
    write_infotext(p, args, job.applied)
    for alias, reason in job.skipped:
        log.info("Stylus: %s not written: %s", alias, reason)


def _ensure_fresh(known: set | None) -> None:
    """Refresh (incrementally, waiting) when nothing is indexed yet or the web UI lists LoRA files the index has
    not seen, e.g. after the user pressed Refresh in the Lora tab."""
    snap = SERVICE.index().snapshot
    seen = {e.card.stem for e in snap.entries} | {f.stem for f in snap.faults}
    if not snap.entries or (known is not None and (host.registry_stems() or set()) - seen):
        SERVICE.refresh(wait=True)


def _drop_unknown(comp, known: set | None):
    """A LoRA the web UI's registry cannot resolve would be silently ignored by the host: drop it, with a reason."""
    if known is None:
        return comp
    from ..composer import Drop
    for t_i, task in enumerate(comp.tasks):
        keep = []
        for a in task.adapters:
            if a.alias in known or a.stem in known:
                keep.append(a)
            else:
                comp.drops.append(Drop(a.stem, t_i, a.score, "not in the web UI's Lora list (refresh LoRAs)"))
        task.adapters = keep
    return comp


def write_infotext(p, args: StylusArgs, applied: list) -> None:
    if not any(applied):
        return
    p.extra_generation_params[APPLIED_KEY] = applied if len(set(applied)) > 1 else applied[0]
    for name in ("max_adapters", "weight_multiplier", "masking", "composer", "add_triggers"):
        p.extra_generation_params[KEYS[name]] = getattr(args, name)
