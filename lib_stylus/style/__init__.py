"""InstantStyle (arXiv 2404.02733) on IP-Adapter: a reference image's style, without its content, injected
only into chosen cross-attention blocks of an ldm/sgm UNet. A plain library: it never imports the web UI.

    engine = StyleEngine(keep_loaded=False)                       # loads nothing yet
    patch, toks = engine.build(sd_model.model.diffusion_model, "ip-adapter_sdxl.safetensors", "clip_g.pth",
                               [reference], content_text="a cat on a sofa", text_encoder=pooled_fn,
                               lam=0.5, blocks="style", scale=1.0)   # models released again afterwards
    with patch:                                                   # or install() in process(), remove() in
                                                                  # postprocess()
        def on_cfg_denoiser(params):                              # once per sampling step
            n_cond = params.text_cond["crossattn"].shape[0] if isinstance(params.text_cond, dict) \
                else params.text_cond.shape[0]
            patch.set_rows(cfg_rows(n_cond, params.x.shape[0] - n_cond))
        ...                                                       # sample

Lower level: ``load_ip_adapter``, ``load_clip_vision``, ``load_open_clip_text``, ``subtract_content``,
``IPAdapter.project``, ``StylePatch`` / ``patch_unet``, ``resolve_blocks`` and the tables in ``blocks``.
"""
from .attention import (ShapeMismatchError, StylePatch, cfg_rows, check_against_unet, detect_arch, find_unet,
                        patch_unet)
from .blocks import PRESETS, TABLES, AttnLayer, resolve_blocks, table
from .encoders import (ClipImageEncoder, OpenClipText, TransformersText, load_clip_vision,
                       load_open_clip_text, preprocess, subtract_content)
from .engine import StyleEngine, StyleTokens
from .ip_adapter import AdapterFormatError, AdapterInfo, IPAdapter, load_ip_adapter

__all__ = [
    "AdapterFormatError", "AdapterInfo", "AttnLayer", "ClipImageEncoder", "IPAdapter", "OpenClipText",
    "PRESETS", "ShapeMismatchError", "StyleEngine", "StylePatch", "StyleTokens", "TABLES", "TransformersText",
    "cfg_rows", "check_against_unet", "detect_arch", "find_unet", "load_clip_vision", "load_ip_adapter",
    "load_open_clip_text", "patch_unet", "preprocess", "resolve_blocks", "subtract_content", "table",
]
