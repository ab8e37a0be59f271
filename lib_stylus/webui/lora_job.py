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
    _ensure_fresh()
    known = host.registry()[1]  # once per job, not per prompt
    host.state().textinfo = "Stylus: choosing LoRAs"

    def compose(prompt: str):
        return drop_unknown(SERVICE.compose(prompt, base, args.max_adapters, args.composer), known)

    hires = bool(getattr(p, "enable_hr", False))
    job = rewrite_job(p.all_prompts, p.all_negative_prompts, p.all_seeds, p.batch_size, compose, args.masking,
                      args.add_triggers, args.weight_multiplier,
                      getattr(p, "all_hr_prompts", None) if hires else None,
                      getattr(p, "all_hr_negative_prompts", None) if hires else None,
                      bool(host.opt("stylus_add_negative", True)))
    p.all_prompts, p.all_negative_prompts = job.prompts, job.negative_prompts
    if hires:
        p.all_hr_prompts, p.all_hr_negative_prompts = job.hr_prompts, job.hr_negative_prompts
    write_infotext(p, args, job.applied)
    for alias, reason in job.skipped:
        log.info("Stylus: %s not written: %s", alias, reason)


_last_unseen: set = set()


def _ensure_fresh() -> None:
    """Refresh (incrementally, waiting) when nothing is indexed yet or the web UI lists LoRA files the index has
    not seen, e.g. after the user pressed Refresh in the Lora tab; once per new set of such files."""
    global _last_unseen
    snap = SERVICE.index().snapshot
    seen = {e.card.stem for e in snap.entries} | {f.stem for f in snap.faults}
    unseen = (host.registry()[0] or set()) - seen
    if not snap.entries or (unseen and unseen != _last_unseen):
        _last_unseen = unseen
        SERVICE.refresh(wait=True)


def drop_unknown(comp, known: set | None = None):
    """A LoRA the web UI's registry cannot resolve would be silently ignored by the host: drop it, with a reason."""
    known = known if known is not None else host.registry()[1]
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
    p.stylus_applied = applied  # per image of the job; each batch gets its slice in process_batch
    infotext_for_batch(p, 0)
    for name in ("max_adapters", "weight_multiplier", "masking", "composer", "add_triggers"):
        p.extra_generation_params[KEYS[name]] = getattr(args, name)


def infotext_for_batch(p, batch_number: int) -> None:
    """The host indexes a list-valued infotext field by the image's position IN ITS BATCH."""
    applied = getattr(p, "stylus_applied", None)
    if not applied:
        return
    part = applied[batch_number * p.batch_size:(batch_number + 1) * p.batch_size]
    if any(part):
        p.extra_generation_params[APPLIED_KEY] = part if len(set(part)) > 1 else part[0]
    else:
        p.extra_generation_params.pop(APPLIED_KEY, None)
