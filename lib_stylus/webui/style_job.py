"""Reference style in a generation: build the InstantStyle patch on the loaded UNet in Script.process, tell it
which rows are cond/uncond at every CFG denoiser call (on Forge each attention call carries its rows in
transformer_options, and the same per-module patch reads them), and remove it in every case: postprocess (normal end,
interrupt, skip), an exception raised by sampling (p.sample is guarded), the next job's before_process, and
a scripts reload."""
from __future__ import annotations

import logging

from ..images import to_pil
from . import host, models
from .args import StylusArgs, infotext_keys

log = logging.getLogger("stylus")
KEYS = infotext_keys()
_ENGINE = None
_ACTIVE = None   # the installed StylePatch, if any


def engine():
    global _ENGINE
    from ..style import StyleEngine
    if _ENGINE is None:
        _ENGINE = StyleEngine(keep_loaded=bool(host.opt("stylus_keep_models", False)))
    _ENGINE.keep_loaded = bool(host.opt("stylus_keep_models", False))
    return _ENGINE


def process(p, args: StylusArgs) -> None:
    global _ACTIVE
    restore()
    base = host.loaded_base()
    arch = {"sd1": "sd15", "sdxl": "sdxl"}.get(base)
    if arch is None:
        raise RuntimeError(f"reference style needs an SD1.5 or SDXL checkpoint (loaded: {base})")
    image = to_pil(args.style_image)
    host.state().textinfo = "Stylus: encoding the reference image"
    blocks = args.custom_blocks if args.blocks_preset == "custom" else args.blocks_preset
    patch, tokens = engine().build(
        host.unet(), models.ip_adapter(arch, args.ip_adapter),
        models.image_encoder(arch, args.image_encoder), [image], args.content_text.strip() or None,
        _text_encoder(arch) if args.content_text.strip() and args.content_lambda else None,
        args.content_lambda, blocks=blocks, scale=args.style_scale)
    patch.install()
    _ACTIVE = patch
    _guard_sampling(p)
    if tokens.note:
        log.warning("Stylus: %s", tokens.note)
    for name in ("style_scale", "content_lambda", "blocks_preset", "content_text"):
        if getattr(args, name) not in ("", None):
            p.extra_generation_params[KEYS[name]] = getattr(args, name)
    if args.blocks_preset == "custom":
        p.extra_generation_params[KEYS["custom_blocks"]] = args.custom_blocks


def _text_encoder(arch: str):
    """The content's CLIP text embedding in the image encoder's space. SDXL: the pooled, projected output of the
    checkpoint's own second text encoder (ViT-bigG) -- no second copy. SD1.5: the ViT-H-14 text tower."""
    if arch == "sdxl":
        embedder = getattr(getattr(host.shared.sd_model, "conditioner", None), "embedders", [None, None])[1]
        if embedder is None:  # Forge keeps SDXL's text encoders elsewhere
            return None

        def sdxl_pooled(texts):
            out = embedder(list(texts))
            return getattr(out, "pooled", out[1] if isinstance(out, (tuple, list)) else out)
        return sdxl_pooled
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer
    from ..style import TransformersText
    folder = models.vit_h_text()
    tok = CLIPTokenizer.from_pretrained(folder)
    model = CLIPTextModelWithProjection.from_pretrained(folder)
    return TransformersText(model, lambda texts: tok(texts, padding="max_length", truncation=True,
                                                     max_length=77, return_tensors="pt").input_ids)


def _guard_sampling(p) -> None:
    """The host runs no hook after an exception in sampling: undo the patch on the way out."""
    original = p.sample

    def guarded(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        except BaseException:
            restore()
            raise
    p.sample = guarded


def on_cfg_denoiser(params) -> None:
    """Before each denoiser call the host stacks [cond rows..., uncond rows]: tell the patch which is which."""
    if _ACTIVE is None or host.is_forge():  # Forge tells each attention call its rows (transformer_options)
        return
    from ..style import cfg_rows
    cond = params.text_cond["crossattn"] if isinstance(params.text_cond, dict) else params.text_cond
    uncond = params.text_uncond["crossattn"] if isinstance(params.text_uncond, dict) else params.text_uncond
    _ACTIVE.set_rows(cfg_rows(int(cond.shape[0]), int(uncond.shape[0])))


def restore() -> None:
    global _ACTIVE
    patch, _ACTIVE = _ACTIVE, None
    if patch is not None:
        patch.remove()
    if _ENGINE is not None and not _ENGINE.keep_loaded:
        _ENGINE.release()


def active():
    return _ACTIVE
