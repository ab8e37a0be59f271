"""Reference style in a generation: build the InstantStyle patch on the loaded UNet in Script.process, tell it
which rows are cond/uncond at every CFG denoiser call (on Forge each attention call carries its rows in
transformer_options, and the same per-module patch reads them), and remove it in every case: postprocess (normal
end, interrupt, skip), an exception raised by sampling (p.sample is guarded), the job's close() (the host always
closes a job, also after any other exception), and a scripts reload."""
from __future__ import annotations

import logging

from ..images import to_pil
from . import host, models
from .args import StylusArgs, infotext_keys

log = logging.getLogger("stylus")
KEYS = infotext_keys()
_ENGINE = None
_STACK: list = []  # (job, StylePatch) per running job with a reference style; the last one is installed


def engine():
    global _ENGINE
    from ..style import StyleEngine
    if _ENGINE is None:
        _ENGINE = StyleEngine(keep_loaded=bool(host.opt("stylus_keep_models", False)))
    _ENGINE.keep_loaded = bool(host.opt("stylus_keep_models", False))
    return _ENGINE


def process(p, args: StylusArgs) -> None:
    base = host.loaded_base()
    arch = {"sd1": "sd15", "sdxl": "sdxl"}.get(base)
    if arch is None:
        raise RuntimeError(f"reference style needs an SD1.5 or SDXL checkpoint (loaded: {base})")
    image = to_pil(args.style_image)
    host.state().textinfo = "Stylus: encoding the reference image"
    blocks = args.custom_blocks if args.blocks_preset == "custom" else args.blocks_preset
    content = args.content_text.strip() if args.content_lambda else ""
    patch, tokens = engine().build(
        host.unet(), models.ip_adapter(arch, args.ip_adapter), models.image_encoder(arch, args.image_encoder),
        [image], content or None, _text_encoder(arch) if content else None, args.content_lambda,
        blocks=blocks, scale=args.style_scale)
    _push(p, patch)
    if tokens.note:
        log.warning("Stylus: %s", tokens.note)
    written = ("style_scale", "blocks_preset") + (("content_text", "content_lambda") if content else ())
    for name in written:  # λ only when a content text was subtracted
        p.extra_generation_params[KEYS[name]] = getattr(args, name)
    if args.blocks_preset == "custom":
        p.extra_generation_params[KEYS["custom_blocks"]] = args.custom_blocks


def _push(p, patch) -> None:
    """Install for this job. A job started inside another (e.g. ADetailer's inpainting pass) suspends the outer
    job's patch and gives it back when it ends."""
    if _STACK:
        _STACK[-1][1].remove()
    patch.install()
    _STACK.append((p, patch))
    _guard(p)


def _guard(p) -> None:
    """The host runs no hook after an exception in sampling, but always closes the job (`with closing(p)` in the
    UI and the API): undo the patch on either path."""
    sample, close = p.sample, getattr(p, "close", None)

    def guarded_sample(*args, **kwargs):
        try:
            return sample(*args, **kwargs)
        except BaseException:
            restore(p)
            raise

    def guarded_close(*args, **kwargs):
        restore(p)
        return close(*args, **kwargs) if close else None
    p.sample, p.close = guarded_sample, guarded_close


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
    try:
        folder = models.vit_h_text()
    except models.ModelUnavailable as e:  # the style still works, only without content subtraction
        log.warning("%s", e)
        return None
    tok = CLIPTokenizer.from_pretrained(folder)
    model = CLIPTextModelWithProjection.from_pretrained(folder)
    return TransformersText(model, lambda texts: tok(texts, padding="max_length", truncation=True,
                                                     max_length=77, return_tensors="pt").input_ids)


def on_cfg_denoiser(params) -> None:
    """Before each denoiser call the host stacks [cond rows..., uncond rows(, uncond rows for edit models)]."""
    patch = active()
    if patch is None or host.is_forge():  # Forge tells each attention call its rows (transformer_options)
        return
    from ..style import cfg_rows
    cond = params.text_cond["crossattn"] if isinstance(params.text_cond, dict) else params.text_cond
    n_cond = int(cond.shape[0])
    patch.set_rows(cfg_rows(n_cond, int(params.x.shape[0]) - n_cond))


def restore(p=None) -> None:
    """End job p's patch (all jobs' when p is None) and give an outer job its patch back."""
    global _STACK
    ended = [(q, patch) for q, patch in _STACK if p is None or q is p]
    if not ended:
        return
    for _, patch in ended:
        patch.remove()
    _STACK = [(q, patch) for q, patch in _STACK if (q, patch) not in ended]
    if _STACK:
        _STACK[-1][1].install()
    elif _ENGINE is not None and not _ENGINE.keep_loaded:
        _ENGINE.release()


def active():
    return _STACK[-1][1] if _STACK else None
