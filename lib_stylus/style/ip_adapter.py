"""IP-Adapter checkpoints: safe loading, variant detection, image projections and the per-layer K/V
projections.

Files: ``.bin``/``.pt``/``.pth`` are pickles and are read ONLY with ``torch.load(weights_only=True)`` (a
pickle that wants to build anything but tensors is refused); ``.safetensors`` may be flat (``image_proj.*`` /
``ip_adapter.*``) as most downloads are. Both normalise to ``{"image_proj": {...}, "ip_adapter": {...}}``.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Dict, Mapping, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import StylusUserError, first_line
from . import blocks as _blocks

PICKLE_EXTS = (".bin", ".pt", ".pth", ".ckpt")
PARTS = ("image_proj", "ip_adapter")


class AdapterFormatError(StylusUserError, ValueError):
    """The file is not an IP-Adapter this engine can use; the message names what is wrong."""


# ---------------------------------------------------------------------------------------------- reading files
def load_tensor_file(path: str, error=None, device=None, dtype=None) -> Dict[str, object]:
    """A state dict from a safetensors file or a tensors-only pickle (never an arbitrary unpickle). An
    unreadable file (empty, truncated, random bytes, not a dict) raises ``error`` (default
    :class:`AdapterFormatError`) with one line naming the file and what is wrong. A safetensors file is read
    tensor by tensor, each floating tensor converted to ``dtype`` and moved to ``device`` as it arrives."""
    error = error or AdapterFormatError
    if not os.path.isfile(path):
        raise error("%s: no such file" % path)
    if os.path.getsize(path) == 0:
        raise error("%s: the file is empty (0 bytes)" % path)
    if path.lower().endswith(".safetensors"):
        sd = _read_safetensors(path, error, device, dtype)
    elif path.lower().endswith(PICKLE_EXTS):
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise error("%s: refused: the pickle holds more than tensors (weights_only load failed: %s)"
                        % (path, first_line(e))) from None
        except Exception as e:  # EOFError, zip errors, RuntimeError "PytorchStreamReader failed ...", ...
            raise error("%s: not a readable PyTorch file, truncated or corrupt (%s)"
                        % (path, first_line(e))) from None
    else:
        raise error("%s: unknown extension; expected .safetensors or one of %s" % (path, PICKLE_EXTS))
    if not isinstance(sd, Mapping):
        raise error("%s: holds a %s, not a dict of tensors" % (path, type(sd).__name__))
    return sd


_TORCH_DTYPES = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
                 "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32, "F32": torch.float32,
                 "I64": torch.int64, "F64": torch.float64, "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
                 "F8_E5M2": getattr(torch, "float8_e5m2", None)}


def _read_safetensors(path: str, error, device=None, dtype=None) -> Dict[str, torch.Tensor]:
    """Plain reads, no memory map: the file's copy of a tensor lives only until it is converted, so a 3.7 GB
    fp16 encoder never sits in memory whole next to its float32 (CPU) or GPU copy."""
    from ..catalog.safetensors_header import read_header
    from ..catalog.untrusted import Unusable
    try:
        _, tensors, _ = read_header(path)
    except Unusable as e:  # checked as safetensors itself checks: length, JSON, dtypes, offsets, file size
        raise error("%s: not a readable safetensors file, truncated or corrupt (%s)" % (path, e)) from None
    size = os.path.getsize(path)
    base = size - max((info["data_offsets"][1] for info in tensors.values()), default=0)
    out = {}
    with open(path, "rb") as f:
        for key, info in sorted(tensors.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            kind = _TORCH_DTYPES.get(info["dtype"])
            if kind is None:
                raise error("%s: tensor %s has dtype %s, which this torch cannot hold"
                            % (path, key, info["dtype"]))
            start, end = info["data_offsets"]
            buf = bytearray(end - start)
            f.seek(base + start)
            if f.readinto(buf) != len(buf):
                raise error("%s: truncated (tensor %s)" % (path, key))
            t = torch.frombuffer(buf, dtype=kind) if buf else torch.empty(0, dtype=kind)
            t = t.reshape(info["shape"])
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            out[key] = t.to(device) if device is not None else t
    return out


def split_parts(sd: Mapping[str, object], where: str = "checkpoint") -> Dict[str, Dict[str, torch.Tensor]]:
    """Nested ``{"image_proj": .., "ip_adapter": ..}`` or flat prefixed keys -> nested dict of tensors."""
    out: Dict[str, Dict[str, torch.Tensor]] = {p: {} for p in PARTS}
    for key, val in sd.items():
        if key in PARTS and isinstance(val, Mapping):
            out[key].update(val)
            continue
        part, _, rest = str(key).partition(".")
        if part in PARTS and rest:
            out[part][rest] = val
    for p in PARTS:
        odd = [k for k, v in out[p].items() if not isinstance(v, torch.Tensor)]
        if odd:
            raise AdapterFormatError("%s: %s.%s is not a tensor" % (where, p, odd[0]))
        if not out[p]:
            raise AdapterFormatError("%s has no %r weights (keys seen: %s)" % (where, p, _some_keys(sd)))
    return out


def _some_keys(sd: Mapping[str, object], n: int = 5) -> str:
    keys = list(sd)
    return ", ".join(map(str, keys[:n])) + (" …" if len(keys) > n else "")


# ------------------------------------------------------------------------------------------------ projections
class ImageProjection(nn.Module):
    """Plain IP-Adapter: one global CLIP embedding -> ``tokens`` context tokens (Linear, then LayerNorm per
    token)."""

    def __init__(self, clip_dim: int, cross_dim: int, tokens: int):
        super().__init__()
        self.tokens, self.cross_dim = tokens, cross_dim
        self.proj = nn.Linear(clip_dim, tokens * cross_dim)
        self.norm = nn.LayerNorm(cross_dim)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        x = self.proj(embeds).reshape(-1, self.tokens, self.cross_dim)
        return self.norm(x)


class _PerceiverAttention(nn.Module):
    # Latents attend to [image tokens; latents]; names match the checkpoints' layers.N.0.*.
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        out = attention(q, k, v, self.heads)
        return self.to_out(out)


class Resampler(nn.Module):
    """"Plus" IP-Adapter: a perceiver resampler from CLIP patch tokens (penultimate layer) to ``tokens``
    queries."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, tokens: int, embed_dim: int,
                 out_dim: int, ff_mult: int = 4):
        super().__init__()
        self.tokens, self.cross_dim = tokens, out_dim
        self.latents = nn.Parameter(torch.zeros(1, tokens, dim))
        self.proj_in = nn.Linear(embed_dim, dim)
        self.proj_out = nn.Linear(dim, out_dim)
        self.norm_out = nn.LayerNorm(out_dim)
        self.layers = nn.ModuleList(nn.ModuleList([
            _PerceiverAttention(dim, heads, dim_head),
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * ff_mult, bias=False), nn.GELU(),
                          nn.Linear(dim * ff_mult, dim, bias=False))]) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = self.latents.expand(x.shape[0], -1, -1)
        x = self.proj_in(x)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax(q k^T / sqrt(d)) v on (B, N, heads*d) tensors; CPU half is upcast (no half
    kernels)."""
    b, n, inner = q.shape
    d = inner // heads
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, d).transpose(1, 2)
    dtype = q.dtype
    if q.device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(b, n, inner).to(dtype)


# ------------------------------------------------------------------------------------------------ detection
@dataclass(frozen=True)
class AdapterInfo:
    arch: str        # "sd15" | "sdxl"
    kind: str        # "plain" | "plus"
    tokens: int      # image tokens per reference
    clip_dim: int    # width of what the projection eats: image_embeds (plain) or hidden states (plus)
    cross_dim: int   # width of the tokens (= the UNet's context dim)


def _shape(sd: Mapping[str, torch.Tensor], key: str, part: str, ndim: int) -> Tuple[int, ...]:
    if key not in sd:
        raise AdapterFormatError("%s lacks %r (keys seen: %s)" % (part, key, _some_keys(sd)))
    t = sd[key]
    if not isinstance(t, torch.Tensor):
        raise AdapterFormatError("%s.%s is a %s, not a tensor" % (part, key, type(t).__name__))
    if t.dim() != ndim:
        raise AdapterFormatError("%s.%s has shape %s: expected %d dimensions"
                                 % (part, key, tuple(t.shape), ndim))
    return tuple(t.shape)


def _ip_numbers(ip: Mapping[str, torch.Tensor]) -> list:
    nums = sorted({int(k.split(".")[0]) for k in ip if k.split(".")[0].isdigit()})
    for n in nums:
        k = _shape(ip, "%d.to_k_ip.weight" % n, "ip_adapter", 2)
        v = _shape(ip, "%d.to_v_ip.weight" % n, "ip_adapter", 2)
        if k != v:
            raise AdapterFormatError("ip_adapter layer %d: to_k_ip %s and to_v_ip %s differ" % (n, k, v))
    return nums


def _arch_of(ip: Mapping[str, torch.Tensor]) -> str:
    nums = _ip_numbers(ip)
    for arch, tab in _blocks.TABLES.items():
        if nums == [l.number for l in tab]:
            return arch
    # The structure decides, never a width: 16 cross-attention pairs are SD1.5, 70 are SDXL (real or tiny).
    raise AdapterFormatError("ip_adapter holds %d cross-attention pairs numbered %s..%s; expected SD1.5's 16 "
                             "(1, 3, .., 31) or SDXL's 70 (1, 3, .., 139)" % (len(nums), nums[:1], nums[-1:]))


def detect(parts: Mapping[str, Mapping[str, torch.Tensor]]) -> AdapterInfo:
    """Architecture (by the layer numbering, which real files and tiny test files share), variant and
    widths."""
    proj, ip = parts["image_proj"], parts["ip_adapter"]
    arch = _arch_of(ip)
    ctx = _shape(ip, "1.to_k_ip.weight", "ip_adapter", 2)[1]
    if "latents" in proj:
        _, tokens, _ = _shape(proj, "latents", "image_proj", 3)
        cross = _shape(proj, "proj_out.weight", "image_proj", 2)[0]
        clip = _shape(proj, "proj_in.weight", "image_proj", 2)[1]
        for key in ("layers.0.0.to_q.weight", "layers.0.1.1.weight"):
            _shape(proj, key, "image_proj", 2)
        kind = "plus"
    elif "proj.weight" in proj and "norm.weight" in proj:
        cross = _shape(proj, "norm.weight", "image_proj", 1)[0]
        out, clip = _shape(proj, "proj.weight", "image_proj", 2)
        if not cross or out % cross:
            raise AdapterFormatError("image_proj.proj.weight rows (%d) are not a multiple of the token "
                                     "width %d" % (out, cross))
        tokens, kind = out // cross, "plain"
    else:
        raise AdapterFormatError("image_proj is neither a plain projection (proj/norm) nor a Resampler "
                                 "(latents); unsupported variant (keys: %s)" % _some_keys(proj))
    if cross != ctx:
        raise AdapterFormatError("image_proj makes %d-wide tokens but ip_adapter.*.to_k_ip expects %d"
                                 % (cross, ctx))
    return AdapterInfo(arch, kind, tokens, clip, cross)


# ------------------------------------------------------------------------------------------------ the adapter
class IPAdapter(nn.Module):
    """Image projection + ``to_k_ip``/``to_v_ip`` per cross-attention layer (keyed by IP-Adapter number)."""

    def __init__(self, info: AdapterInfo, image_proj: nn.Module, kv: Dict[int, Tuple[nn.Linear, nn.Linear]]):
        super().__init__()
        self.info = info
        self.image_proj = image_proj
        self.to_k_ip = nn.ModuleDict({str(n): k for n, (k, _) in kv.items()})
        self.to_v_ip = nn.ModuleDict({str(n): v for n, (_, v) in kv.items()})

    @property
    def arch(self) -> str:
        return self.info.arch

    @property
    def kind(self) -> str:
        return self.info.kind

    def kv(self, number: int) -> Tuple[nn.Linear, nn.Linear]:
        return self.to_k_ip[str(number)], self.to_v_ip[str(number)]

    @torch.no_grad()
    def project(self, embeds: torch.Tensor) -> torch.Tensor:
        """CLIP embeddings (B, clip_dim) for plain, (B, N, clip_dim) for plus -> tokens (B, tokens,
        cross_dim)."""
        want = 2 if self.kind == "plain" else 3
        if embeds.dim() != want or embeds.shape[-1] != self.info.clip_dim:
            raise ValueError("%s IP-Adapter expects embeddings of shape %s, got %s" % (
                self.kind, "(B, %d)" % self.info.clip_dim if want == 2 else "(B, N, %d)" % self.info.clip_dim,
                tuple(embeds.shape)))
        p = next(self.parameters())
        return self.image_proj(embeds.to(p.device, p.dtype))


def build_image_proj(info: AdapterInfo, proj: Mapping[str, torch.Tensor], heads: int = 0) -> nn.Module:
    if info.kind == "plain":
        return ImageProjection(info.clip_dim, info.cross_dim, info.tokens)
    dim = proj["latents"].shape[-1]
    depth = len({k.split(".")[1] for k in proj if k.startswith("layers.")})
    inner = proj["layers.0.0.to_q.weight"].shape[0]
    heads = heads or max(1, inner // 64)  # upstream uses 64-wide heads (sd15 plus: 12, sdxl plus: 20)
    ff_mult = proj["layers.0.1.1.weight"].shape[0] // dim
    return Resampler(dim, depth, heads, inner // heads, info.tokens, info.clip_dim, info.cross_dim, ff_mult)


def from_parts(parts: Mapping[str, Mapping[str, torch.Tensor]], resampler_heads: int = 0) -> IPAdapter:
    info = detect(parts)
    image_proj = build_image_proj(info, parts["image_proj"], resampler_heads)
    _load_strict(image_proj, parts["image_proj"], "image_proj")
    ip = parts["ip_adapter"]
    kv = {l.number: (_linear(ip["%d.to_k_ip.weight" % l.number]), _linear(ip["%d.to_v_ip.weight" % l.number]))
          for l in _blocks.table(info.arch)}
    return IPAdapter(info, image_proj, kv).eval().requires_grad_(False)


def _linear(weight: torch.Tensor) -> nn.Linear:
    # Built on the meta device and given the file's tensor: no random init of ~370M SDXL parameters, no copy.
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
    lin.weight = nn.Parameter(weight, requires_grad=False)
    return lin


def _load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], part: str) -> None:
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or extra:
        raise AdapterFormatError("%s keys do not match a %s: missing %s, unexpected %s"
                                 % (part, type(module).__name__, missing[:5], extra[:5]))
    for k, t in own.items():
        if tuple(sd[k].shape) != tuple(t.shape):
            raise AdapterFormatError("%s.%s has shape %s, expected %s"
                                     % (part, k, tuple(sd[k].shape), tuple(t.shape)))
    module.load_state_dict(sd)


def load_ip_adapter(path: str, resampler_heads: int = 0) -> IPAdapter:
    """Load an IP-Adapter file on the CPU (image projection in float32, K/V weights as stored). Every problem
    with the file raises :class:`AdapterFormatError` with one line that starts with the file's path."""
    parts = split_parts(load_tensor_file(path), where=path)
    # The small image projection in float32; the K/V pairs stay as stored (hundreds of MB for SDXL in fp16):
    # each patched layer is converted to the compute dtype when it is used.
    parts["image_proj"] = {k: v.float() for k, v in parts["image_proj"].items()}
    try:
        return from_parts(parts, resampler_heads)
    except AdapterFormatError as e:
        raise AdapterFormatError("%s: %s" % (path, e)) from None
