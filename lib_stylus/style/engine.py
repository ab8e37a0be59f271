"""One InstantStyle job: load lazily, run on the UNet's device/dtype, build the patch, release afterwards.

The patch keeps only per-layer IP keys/values, so the adapter and encoders are not needed while sampling: after
:meth:`StyleEngine.build` they are dropped (or, with ``keep_loaded``, parked on the CPU for the next job).
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple, Union

import torch
import torch.nn as nn

from .attention import StylePatch, check_against_unet, find_unet
from .encoders import ClipImageEncoder, TextEncoder, load_clip_vision, subtract_content
from .ip_adapter import IPAdapter, load_ip_adapter


@dataclass
class StyleTokens:
    cond: torch.Tensor      # (R, T, D): R references
    uncond: torch.Tensor    # (R, T, D): projection of the zero input
    subtracted: bool        # False for "plus" adapters or without content text
    note: str = ""


def unet_device_dtype(unet: nn.Module) -> Tuple[torch.device, torch.dtype]:
    p = next(find_unet(unet).parameters())
    return p.device, p.dtype


def _key(path: str) -> Tuple[str, float]:
    return os.path.abspath(path), os.path.getmtime(path)


class StyleEngine:
    def __init__(self, keep_loaded: bool = False):
        self.keep_loaded = keep_loaded
        self._adapters = {}
        self._encoders = {}

    def adapter(self, path: str) -> IPAdapter:
        key = _key(path)
        if key not in self._adapters:
            self._adapters = {key: load_ip_adapter(path)}  # one at a time: adapters are hundreds of MB
        return self._adapters[key]

    def image_encoder(self, path: str) -> ClipImageEncoder:
        key = _key(path)
        if key not in self._encoders:
            self._encoders = {key: load_clip_vision(path)}
        return self._encoders[key]

    @torch.no_grad()
    def tokens(self, adapter: IPAdapter, encoder: ClipImageEncoder, images, content_text: Optional[str] = None,
               text_encoder: Optional[TextEncoder] = None, lam: float = 0.5, norm: str = "raw",
               device=None, dtype=None) -> StyleTokens:
        """Reference images -> style tokens (content subtracted for plain adapters) and the uncond tokens."""
        kind = adapter.kind
        dev = device or next(adapter.parameters()).device
        enc_dtype = dtype if dev != torch.device("cpu") else torch.float32  # no half CLIP kernels on CPU
        encoder.to(dev, enc_dtype)
        emb = encoder.encode(images, kind).float()
        note, subtracted = "", False
        if content_text and lam:
            if kind == "plus":
                note = "content subtraction does not apply to 'plus' adapters (patch tokens); used as they are"
            elif text_encoder is None:
                note = "no text encoder of the adapter's CLIP space: content not subtracted"
            else:
                emb = subtract_content(emb, text_encoder([content_text]).float(), lam, norm)
                subtracted = True
        zero = encoder.zero_embeds(kind, emb.shape[0]).float()
        adapter.to(dev, dtype or torch.float32)
        return StyleTokens(adapter.project(emb), adapter.project(zero), subtracted, note)

    def build(self, unet: nn.Module, adapter_path: str, encoder_path: str, images, content_text: Optional[str] = None,
              text_encoder: Optional[TextEncoder] = None, lam: float = 0.5, norm: str = "raw",
              blocks: Union[str, Iterable, None] = "style", scale: float = 1.0) -> Tuple[StylePatch, StyleTokens]:
        """Everything for one job; returns the (not yet installed) patch and the tokens it was built from."""
        device, dtype = unet_device_dtype(unet)
        try:
            adapter = self.adapter(adapter_path)
            check_against_unet(adapter, unet)  # fail before spending time on the encoders
            toks = self.tokens(adapter, self.image_encoder(encoder_path), images, content_text, text_encoder, lam,
                               norm, device, dtype)
            return StylePatch(unet, adapter, toks.cond, toks.uncond, blocks, scale), toks
        finally:
            self.end_job()

    def end_job(self) -> None:
        """Drop the models, or park them on the CPU when ``keep_loaded``."""
        if self.keep_loaded:
            for m in list(self._adapters.values()) + list(self._encoders.values()):
                m.to("cpu", torch.float32)
        else:
            self.release()

    def release(self) -> None:
        self._adapters, self._encoders = {}, {}
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def loaded(self) -> bool:
        return bool(self._adapters or self._encoders)
