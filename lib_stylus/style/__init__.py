"""InstantStyle (arXiv 2404.02733) on IP-Adapter: a reference image's style, without its content, injected only
into chosen cross-attention blocks of an ldm/sgm UNet. A plain library: it never imports the web UI.

    adapter = load_ip_adapter(path)                       # ip_adapter.py
    encoder = load_clip_vision(path)                      # encoders.py
    style = subtract_content(encoder.encode(img), text_fn([content]), lam=0.5)
    with StylePatch(unet, adapter, adapter.project(style), adapter.project(encoder.zero_embeds()), "style") as p:
        p.set_rows(cfg_rows(n_cond, n_uncond))            # per sampling step
"""
from .attention import (ShapeMismatchError, StylePatch, cfg_rows, check_against_unet, detect_arch, find_unet,
                        patch_unet)
from .blocks import PRESETS, TABLES, AttnLayer, resolve_blocks, table
from .encoders import (ClipImageEncoder, OpenClipText, TransformersText, load_clip_vision, load_open_clip_text,
                       preprocess, subtract_content)
from .engine import StyleEngine, StyleTokens
from .ip_adapter import AdapterFormatError, AdapterInfo, IPAdapter, load_ip_adapter

__all__ = [
    "AdapterFormatError", "AdapterInfo", "AttnLayer", "ClipImageEncoder", "IPAdapter", "OpenClipText", "PRESETS",
    "ShapeMismatchError", "StyleEngine", "StylePatch", "StyleTokens", "TABLES", "TransformersText", "cfg_rows",
    "check_against_unet", "detect_arch", "find_unet", "load_clip_vision", "load_ip_adapter", "load_open_clip_text",
    "patch_unet", "preprocess", "resolve_blocks", "subtract_content", "table",
]
