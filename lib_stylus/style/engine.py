"""One InstantStyle job: load lazily, compute on the device and dtype the caller names (the host's, never
where a UNet parameter happens to be), build the patch, release the models afterwards, and remember the
results.

The patch keeps only per-layer IP keys/values, so the adapter and encoders are not needed while sampling:
after :meth:`StyleEngine.build` they are dropped (or, with ``keep_loaded``, parked on the CPU for the next
job).

What is remembered for the session (small tensors, on the CPU): the image embedding per (reference pixels,
encoder file, kind), the content text's embedding per (text, text encoder key), the style tokens per (those,
lambda, adapter file) and each patched layer's keys/values. A second job with the same reference therefore
loads and encodes nothing. A file is identified by its path, size and modification time, so an edited file is
read again.
"""
from __future__ import annotations

import gc
import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple, Union

import torch
import torch.nn as nn

from .. import images as _images
from . import blocks as _blocks
from .attention import ShapeMismatchError, StylePatch, check_against_unet, detect_arch, find_unet, layer_kv
from .encoders import ClipImageEncoder, TextEncoder, load_clip_vision, subtract_content
from .ip_adapter import AdapterInfo, IPAdapter, load_ip_adapter

CACHE_ENTRIES = 16   # per kind of result; each entry is a few KB (embeddings) to a few MB (SDXL "all" K/V)
HASH_SIDE = 1024     # references are hashed (and encoded) after an integer downscale to about this size


@dataclass
class StyleTokens:
    cond: torch.Tensor      # (R, T, D): R references
    uncond: torch.Tensor    # (R, T, D): projection of the zero input
    subtracted: bool        # False for "plus" adapters or without content text
    note: str = ""
    key: Optional[tuple] = None  # what they were made from (None: not remembered)


def file_key(path: str) -> Tuple[str, int, float]:
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime


def image_digest(images) -> str:
    """Identifies the references' pixels (not the objects): the same file uploaded again hits the cache."""
    h = hashlib.blake2b(digest_size=16)
    for im in images:
        if isinstance(im, torch.Tensor):
            t = im.detach().to("cpu").contiguous()
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.numpy().tobytes())
            continue
        im = _images.shrink(_images.to_rgb(im), HASH_SIDE)
        h.update(str((im.size, im.mode)).encode())
        h.update(im.tobytes())
    return h.hexdigest()


class _LRU(OrderedDict):
    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > CACHE_ENTRIES:
            self.popitem(last=False)
        return value


class StyleEngine:
    def __init__(self, keep_loaded: bool = False):
        self.keep_loaded = keep_loaded
        self._adapters = {}
        self._encoders = {}
        self._infos = {}
        self._image_embeds = _LRU()
        self._text_embeds = _LRU()
        self._tokens = _LRU()
        self._kv = _LRU()

    # -- models
    def adapter(self, path: str) -> IPAdapter:
        key = file_key(path)
        if key not in self._adapters:
            self._adapters = {key: load_ip_adapter(path)}  # one at a time: adapters are hundreds of MB
            self._infos[key] = self._adapters[key].info
        return self._adapters[key]

    def info(self, path: str) -> AdapterInfo:
        """The adapter's architecture, kind and widths (read once per file version, then remembered)."""
        key = file_key(path)
        if key not in self._infos:
            self.adapter(path)
        return self._infos[key]

    def image_encoder(self, path: str, device=None, dtype=None) -> ClipImageEncoder:
        key = file_key(path)
        if key not in self._encoders:
            self._encoders = {key: load_clip_vision(path, device=device, dtype=dtype)}
        encoder = self._encoders[key]
        return encoder.to(device, dtype) if device is not None or dtype is not None else encoder

    # -- embeddings
    @torch.no_grad()
    def tokens(self, adapter_path: str, encoder_path: str, images, content_text: Optional[str] = None,
               text_encoder: Optional[TextEncoder] = None, lam: float = 0.5, norm: str = "raw",
               device=None, dtype=None) -> StyleTokens:
        """Reference images -> style tokens (content subtracted for plain adapters) and the uncond tokens, on
        the CPU in float32. Cached unless ``text_encoder`` is used without a ``key`` attribute."""
        info = self.info(adapter_path)
        kind = info.kind
        # the host's device and dtype, but float32 on the CPU: torch 2.1 has no half CLIP kernels there
        cpu = device is None or torch.device(device).type == "cpu"
        work = torch.float32 if cpu else dtype
        text = content_text if content_text and lam else None
        note = ""
        if text and kind == "plus":
            note = "content subtraction does not apply to 'plus' adapters (patch tokens); used as they are"
            text = None
        elif text and text_encoder is None:
            note = "no text encoder of the adapter's CLIP space: content not subtracted"
            text = None
        text_key = getattr(text_encoder, "key", None) if text else None
        digest = image_digest(images)
        emb_key = (digest, file_key(encoder_path), kind)

        def image_embeds():
            encoder = self.image_encoder(encoder_path, device, work)
            emb = encoder.encode(images, kind).float().cpu()
            if emb.shape[-1] != info.clip_dim:  # the user paired files of two CLIP spaces
                raise ShapeMismatchError(
                    "the image encoder %s makes %d-wide embeddings but the IP-Adapter %s expects %d: choose "
                    "the encoder of the adapter's CLIP space"
                    % (encoder_path, emb.shape[-1], adapter_path, info.clip_dim))
            return emb, encoder.zero_embeds(kind, emb.shape[0]).float().cpu()

        def text_embeds():
            return text_encoder([text]).float().cpu()

        def project():
            emb, zero = self._image_embeds.get_or(emb_key, image_embeds)
            if text:
                txt = self._text_embeds.get_or((text, text_key), text_embeds) if text_key else text_embeds()
                emb = subtract_content(emb, txt, lam, norm)
            adapter = self.adapter(adapter_path)
            return StyleTokens(_project(adapter, emb, device, work), _project(adapter, zero, device, work),
                               bool(text), note, tok_key)

        if text and text_key is None:  # an anonymous text encoder: nothing about it can be remembered
            tok_key = None
            return project()
        tok_key = (emb_key, text, text_key, float(lam) if text else None, norm, file_key(adapter_path))
        return self._tokens.get_or(tok_key, project)

    def build(self, unet: nn.Module, adapter_path: str, encoder_path: str, images,
              content_text: Optional[str] = None,
              text_encoder: Optional[TextEncoder] = None, lam: float = 0.5, norm: str = "raw",
              blocks: Union[str, Iterable, None] = "style", scale: float = 1.0, device=None,
              dtype=None) -> Tuple[StylePatch, StyleTokens]:
        """Everything for one job; returns the (not yet installed) patch and the tokens it was built from.
        ``device``/``dtype``: where and in what the host computes (default: the CPU in float32)."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        dtype = dtype or torch.float32
        unet = find_unet(unet)
        try:
            info = self.info(adapter_path)
            # fail before spending time on the encoders
            if detect_arch(unet) != info.arch:
                raise ShapeMismatchError("the IP-Adapter is for %s but the UNet is %s"
                                         % (info.arch, detect_arch(unet)))
            if self._adapters:  # loaded anyway: every layer's width too
                check_against_unet(next(iter(self._adapters.values())), unet)
            toks = self.tokens(adapter_path, encoder_path, images, content_text, text_encoder, lam, norm,
                               device, dtype)
            numbers = [l.number for l in _blocks.resolve_blocks(info.arch, blocks)]
            kv = self._layers_kv(adapter_path, toks, numbers, device, dtype)
            return StylePatch.from_kv(unet, info.arch, kv, scale), toks
        finally:
            self.end_job()

    def _layers_kv(self, adapter_path: str, toks: StyleTokens, numbers, device, dtype) -> dict:
        if toks.key is None:
            return layer_kv(self.adapter(adapter_path), numbers, toks.cond, toks.uncond, device, dtype)
        # One entry per reference holds all its layers: SDXL "all" has 70, more than the cache has entries.
        layers = self._kv.get_or((toks.key, str(device), str(dtype)), dict)
        missing = [n for n in numbers if n not in layers]
        if missing:
            layers.update(layer_kv(self.adapter(adapter_path), missing, toks.cond, toks.uncond,
                                   device, dtype))
        return {n: layers[n] for n in numbers}

    # -- lifetime
    def end_job(self) -> None:
        """Drop the models, or park them on the CPU when ``keep_loaded``. Remembered results stay."""
        if self.keep_loaded:
            for enc in self._encoders.values():
                enc.to("cpu", torch.float32)
        else:
            self.release()

    def release(self) -> None:
        if not self.loaded:
            return  # nothing to free: a full gc pass alone costs ~0.1 s in a large process
        self._adapters, self._encoders = {}, {}
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def forget(self) -> None:
        """Drop every remembered embedding, token and key/value too."""
        for cache in (self._image_embeds, self._text_embeds, self._tokens, self._kv):
            cache.clear()

    @property
    def loaded(self) -> bool:
        return bool(self._adapters or self._encoders)


@torch.no_grad()
def _project(adapter: IPAdapter, embeds: torch.Tensor, device, dtype) -> torch.Tensor:
    """The image projection on the compute device (it is small; the K/V pairs are moved per layer), kept as
    float32 CPU tokens."""
    proj = adapter.image_proj
    first = next(proj.parameters())
    moved = first.device != device or first.dtype != dtype
    if moved:
        proj.to(device, dtype)
    try:
        return proj(embeds.to(device, dtype)).float().cpu()
    finally:
        if moved:
            proj.to(first.device, first.dtype)
