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
    if job.prompts:
        # setup_prompts() copied the first prompts here before Stylus ran; the grid's infotext (and so
        # 'Send to img2img' from a grid) is made from them: they must carry the first image's LoRAs too.
        p.main_prompt = job.prompts[0]
        p.main_negative_prompt = job.negative_prompts[0]
    if hires:
        p.all_hr_prompts, p.all_hr_negative_prompts = job.hr_prompts, job.hr_negative_prompts
    write_infotext(p, args, job.applied)
    for alias, reason in job.skipped:
        log.info("Stylus: %s not written: %s", alias, reason)
    for note in job.notes:
        log.info("Stylus: %s", note)


_last_unseen: set = set()


def _ensure_fresh() -> None:
    """Refresh (incrementally, waiting) when nothing is indexed yet or the web UI lists LoRA files the index
    has not seen, e.g. after the user pressed Refresh in the Lora tab; once per new set of such files. It does
    not wait for a switch of index (service.refresh)."""
    global _last_unseen
    snap = SERVICE.index().snapshot
    seen = {e.card.stem for e in snap.entries} | {f.stem for f in snap.faults}
    unseen = (host.registry()[0] or set()) - seen
    if not snap.entries or (unseen and unseen != _last_unseen):
        _last_unseen = unseen
        SERVICE.refresh(wait=True, generation=True)


def drop_unknown(comp, known: set | None = None):
    """A LoRA the web UI's registry cannot resolve would be silently ignored by the host: drop it, with a
    reason."""
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
    p.stylus_applied = applied  # per image of the job
    p.extra_generation_params[APPLIED_KEY] = PerImageLoras(applied[0] or "")
    for name in ("max_adapters", "weight_multiplier", "masking", "composer", "add_triggers"):
        p.extra_generation_params[KEYS[name]] = getattr(args, name)


class PerImageLoras(str):
    """The "Stylus LoRAs" entry: the host's create_infotext calls it for each image's own text; as a plain
    string (the first image's) it is what the API's JSON carries. A bare function is not enough: Forge
    Classic's Processed.js() is json.dumps without a `default`, so a function there fails the API answer."""
    def __call__(self, **host_locals):
        return applied_infotext(**host_locals)


def applied_infotext(p, index: int = 0, use_main_prompt: bool = False, all_prompts=None, **_):
    """The "Stylus LoRAs" of one infotext. The host calls it with create_infotext's locals: the grid's
    infotext (use_main_prompt) shows the first image's, like p.main_prompt; while saving a batch the host
    passes the batch's own prompts (p.prompts) and the index inside that batch; Processed.infotext passes the
    whole job's prompts and the job-wide index."""
    applied = getattr(p, "stylus_applied", None) or []
    if use_main_prompt:
        image = 0
    elif all_prompts is not None and all_prompts is getattr(p, "prompts", None):
        image = getattr(p, "iteration", 0) * p.batch_size + index
    else:
        image = index
    return (applied[image] or None) if 0 <= image < len(applied) else None
