"""CLIP encoders for InstantStyle: the reference image (IP-Adapter's image encoder) and the content text (the
text tower of the SAME CLIP model), plus content subtraction.

Content subtraction (InstantStyle §3.2): ``style = image_embeds - lam * text_embeds`` on the projected global
embeddings. Norm convention: ``norm="raw"`` (default) subtracts the unnormalised embeddings exactly as
upstream does, because IP-Adapter's projection was trained on unnormalised ``image_embeds``; ``norm="match"``
first rescales each text embedding to its image embedding's L2 norm (so ``lam`` means "fraction of the image's
length", independent of the two towers' scales). "Plus" adapters eat patch tokens, not a global embedding:
subtraction does NOT apply to them and :func:`subtract_content` refuses 3-D input rather than silently doing
something else.
"""
from __future__ import annotations

import contextlib
import os
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..images import ReferenceImageError, shrink, to_rgb
from ..errors import StylusUserError
from ..errors import first_line
from .ip_adapter import load_tensor_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TextEncoder = Callable[[List[str]], torch.Tensor]  # texts -> (B, D) projected pooled embeddings


class EncoderFormatError(StylusUserError, ValueError):
    """A CLIP image encoder file or folder this engine cannot use; one line naming it and what is wrong."""


# ------------------------------------------------------------------------------------------------ subtraction
def subtract_content(image_embeds: torch.Tensor, text_embeds: torch.Tensor, lam: float = 0.5,
                     norm: str = "raw") -> torch.Tensor:
    """Style embedding = image − lam · text, per row (a single text row is broadcast to every image)."""
    if image_embeds.dim() != 2:
        raise ValueError("content subtraction applies to global (B, D) image embeddings only; 'plus' "
                         "adapters use patch tokens %s as they are" % (tuple(image_embeds.shape),))
    text = text_embeds.to(image_embeds.device, image_embeds.dtype).reshape(-1, text_embeds.shape[-1])
    if text.shape[-1] != image_embeds.shape[-1]:
        raise ValueError("image embeddings are %d-d but text embeddings %d-d: they are not the same "
                         "CLIP space" % (image_embeds.shape[-1], text.shape[-1]))
    if norm == "match":
        text = text * (image_embeds.norm(dim=-1, keepdim=True)
                       / text.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    elif norm != "raw":
        raise ValueError("norm must be 'raw' or 'match', got %r" % norm)
    return image_embeds - lam * text


# ------------------------------------------------------------------------------------------------ images
def preprocess(images, size: int = 224) -> torch.Tensor:
    """PIL images, HWC uint8 arrays or CHW/BCHW float tensors in [0, 1] -> normalised (B, 3, size, size):
    shortest side to ``size`` (bicubic, antialiased), centre crop, CLIP mean/std. PIL images are first shrunk
    by an integer box filter (to at most twice ``size``), so no float copy of a huge reference is ever
    made."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        batch = list(images)
    elif isinstance(images, (list, tuple)):
        batch = list(images)
    else:
        batch = [images]
    return torch.stack([_one(im, size) for im in batch])


def _one(im, size: int) -> torch.Tensor:
    if not isinstance(im, torch.Tensor):
        if hasattr(im, "convert"):
            im = shrink(to_rgb(im), size)
        arr = np.asarray(im)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        # a copy: arrays of PIL images are read-only
        im = torch.from_numpy(np.array(arr[..., :3])).permute(2, 0, 1).float() / 255.0
    im = im.float()
    h, w = im.shape[-2:]
    if h == 0 or w == 0:
        raise ReferenceImageError("the reference image is empty (%dx%d pixels)" % (w, h))
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    im = F.interpolate(im[None], size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    im = im[:, top:top + size, left:left + size].clamp(0, 1)
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    return (im - mean) / std


class ClipImageEncoder:
    """A transformers ``CLIPVisionModelWithProjection``: global ``image_embeds`` (plain adapters) or the
    penultimate hidden states (plus adapters)."""

    def __init__(self, model):
        self.model = model.eval().requires_grad_(False)

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    def to(self, device=None, dtype=None) -> "ClipImageEncoder":
        self.model.to(device=device, dtype=dtype)
        return self

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor, kind: str = "plain") -> torch.Tensor:
        p = next(self.model.parameters())
        out = self.model(pixel_values=pixels.to(p.device, p.dtype), output_hidden_states=(kind == "plus"))
        if kind == "plain":
            return out.image_embeds
        if kind == "plus":
            return out.hidden_states[-2]
        raise ValueError("kind must be 'plain' or 'plus', got %r" % kind)

    def encode(self, images, kind: str = "plain") -> torch.Tensor:
        return self.encode_pixels(preprocess(images, self.image_size), kind)

    def zero_embeds(self, kind: str = "plain", n: int = 1) -> torch.Tensor:
        """The unconditional input: a zero embedding (plain) or the tokens of an all-zero pixel tensor (plus),
        as IP-Adapter was trained."""
        if kind == "plain":
            return torch.zeros(n, self.model.config.projection_dim)
        size = self.image_size
        return self.encode_pixels(torch.zeros(n, 3, size, size), kind)


# ------------------------------------------------------------------------------------ loading images encoders
_PREFIXES = ("clip_vision.", "model.", "image_encoder.")
_KNOWN_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}  # ViT-B, ViT-L, ViT-H, ViT-bigG


def load_clip_vision(path: str, num_heads: int = 0, hidden_act: str = "gelu", device=None,
                     dtype=None) -> ClipImageEncoder:
    """A transformers folder (config.json + model.safetensors or pytorch_model.bin, as IP-Adapter ships its
    ``image_encoder``), or one file as sd-webui-controlnet / ComfyUI keep them (``clip_h.pth``,
    ``clip_g.pth``, ``*.safetensors`` with ``vision_model.*`` + ``visual_projection.weight``; config inferred
    from the shapes, heads from the width unless ``num_heads`` is given). Pickles are read with weights_only,
    also in folders. The model is built without random init and takes the file's tensors, converted once to
    ``device``/``dtype``. Any problem with the file raises :class:`EncoderFormatError` naming it."""
    from transformers import CLIPVisionConfig
    if os.path.isdir(path):
        try:
            config = CLIPVisionConfig.from_pretrained(path, local_files_only=True)
        except Exception as e:  # a missing or broken config.json: the user's folder, not our bug
            raise EncoderFormatError("%s: config.json is missing or unreadable (%s)"
                                     % (path, first_line(e))) from None
        sd = load_tensor_file(_folder_weights(path), EncoderFormatError, device, dtype or torch.float32)
    else:
        sd = _strip_prefix(load_tensor_file(path, EncoderFormatError, device, dtype or torch.float32), path)
        config = infer_vision_config(sd, num_heads, hidden_act, path)
    return ClipImageEncoder(_build_vision(config, sd, path, device, dtype))


def _folder_weights(path: str) -> str:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise EncoderFormatError("%s has neither model.safetensors nor pytorch_model.bin" % path)


def _build_vision(config, sd, where: str, device=None, dtype=None):
    from transformers import CLIPVisionModelWithProjection
    with torch.device("meta"):  # no random init, no second full-size copy: the file's tensors are assigned
        model = CLIPVisionModelWithProjection(config)
    own = model.state_dict()
    # position_ids is a constant buffer: transformers < 4.31 saved it, newer ones neither save nor expect it.
    missing = [k for k in own if k not in sd and not k.endswith("position_ids")]
    unexpected = [k for k in sd if k not in own and not k.endswith("position_ids")]
    if missing or unexpected:
        raise EncoderFormatError("%s does not fit a CLIP vision model: missing %s, unexpected %s"
                                 % (where, missing[:3], unexpected[:3]))
    for k, t in own.items():
        if k in sd and tuple(sd[k].shape) != tuple(t.shape):
            raise EncoderFormatError("%s: %s has shape %s, expected %s for this config" % (
                where, k, tuple(sd[k].shape), tuple(t.shape)))
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False, assign=True)
    # The model now holds the file's tensors: drop the dict's references, so that converting to the compute
    # dtype below frees each file tensor as soon as it is replaced (peak: one model, not file + model).
    sd.clear()
    emb = model.vision_model.embeddings
    if "position_ids" in emb._buffers and emb.position_ids.is_meta:
        emb.register_buffer("position_ids", torch.arange(emb.num_positions)[None], persistent=False)
    float_dtype = dtype or torch.float32
    return model.to(device=device or "cpu", dtype=float_dtype)


def _strip_prefix(sd, where: str):
    if "visual_projection.weight" in sd:
        return sd
    for pre in _PREFIXES:
        if pre + "visual_projection.weight" in sd:
            return {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
    raise EncoderFormatError("%s: no visual_projection.weight: not a transformers-style CLIP vision file "
                             "(keys: %s)" % (where, ", ".join(map(str, list(sd)[:5]))))


_VISION_KEYS = {"vision_model.embeddings.patch_embedding.weight": 4,
                "vision_model.embeddings.position_embedding.weight": 2,
                "vision_model.encoder.layers.0.mlp.fc1.weight": 2, "visual_projection.weight": 2}


def infer_vision_config(sd, num_heads: int = 0, hidden_act: str = "gelu", where: str = "CLIP vision file"):
    from transformers import CLIPVisionConfig
    for key, ndim in _VISION_KEYS.items():
        t = sd.get(key)
        if not isinstance(t, torch.Tensor) or t.dim() != ndim:
            found = "missing" if t is None else "shape %s" % (tuple(getattr(t, "shape", ())),)
            raise EncoderFormatError("%s: %s is %s, expected a %d-D tensor" % (where, key, found, ndim))
    hidden, _, p, _ = sd["vision_model.embeddings.patch_embedding.weight"].shape
    n_pos = sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    grid = int(round(max(0, n_pos - 1) ** 0.5))
    if grid < 1 or grid * grid + 1 != n_pos or p < 1:
        raise EncoderFormatError("%s: %d position embeddings do not make a square grid of patches plus a "
                                 "class token" % (where, n_pos))
    layers = len({k.split(".")[3] for k in sd if k.startswith("vision_model.encoder.layers.")})
    heads = num_heads or _KNOWN_HEADS.get(hidden) or max(1, hidden // 64)
    return CLIPVisionConfig(hidden_size=hidden,
                            intermediate_size=sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
                            projection_dim=sd["visual_projection.weight"].shape[0],
                            num_hidden_layers=layers, num_attention_heads=heads, image_size=grid * p,
                            patch_size=p, hidden_act=hidden_act, layer_norm_eps=1e-5)


# ------------------------------------------------------------------------------------------------ text
class OpenClipText:
    """open_clip text tower (ViT-H-14 laion2b for SD1.5 / ``_vit-h`` adapters): projected pooled embeddings.
    ``model`` is a full open_clip ``CLIP`` (``encode_text``) or a bare ``TextTransformer`` (its forward)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model.eval().requires_grad_(False), tokenizer

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        tokens = self.tokenizer(list(texts)).to(dev)
        encode = getattr(self.model, "encode_text", self.model)
        return encode(tokens)


class TransformersText:
    """transformers ``CLIPTextModelWithProjection`` + a tokenize function (texts -> input_ids):
    ``text_embeds``."""

    def __init__(self, model, tokenize: Callable[[List[str]], torch.Tensor]):
        self.model, self.tokenize = model.eval().requires_grad_(False), tokenize

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        dev = next(self.model.parameters()).device
        return self.model(input_ids=self.tokenize(list(texts)).to(dev)).text_embeds


def load_open_clip_text(model_name: str = "ViT-H-14", checkpoint: Optional[str] = None) -> OpenClipText:
    """Only the text tower of open_clip's ``model_name`` (no image tower, no download), its weights taken from
    a local ``checkpoint`` of the whole model (``open_clip_pytorch_model.bin`` via weights_only, or
    safetensors)."""
    import open_clip
    cfg = open_clip.get_model_config(model_name)
    if cfg is None or "hf_model_name" in cfg.get("text_cfg", {}):
        raise ValueError("%r is not an open_clip model with a built-in text tower" % model_name)
    text = _text_tower(open_clip, model_name, cfg)
    if checkpoint:
        sd = {k: v for k, v in load_tensor_file(checkpoint).items()
              if not k.startswith("visual.") and k != "logit_scale"}
        missing, unexpected = text.load_state_dict(sd, strict=False)
        missing = [k for k in missing if k not in ("attn_mask", "logit_scale")]
        if missing or unexpected:
            raise EncoderFormatError("%s does not fit open_clip %s's text tower: missing %s, unexpected %s"
                                     % (checkpoint, model_name, missing[:5], unexpected[:5]))
    return OpenClipText(text, open_clip.get_tokenizer(model_name))


def _text_tower(open_clip, model_name: str, cfg: dict):
    try:  # the tower alone (no ViT-H image tower to build and hold); a private helper, hence the fallback
        from open_clip.model import _build_text_tower
        return _build_text_tower(cfg["embed_dim"], cfg["text_cfg"], quick_gelu=cfg.get("quick_gelu", False))
    except (ImportError, TypeError):
        model = open_clip.create_model(model_name, pretrained=None)
        model.visual = None
        return model
