"""Decoupled cross-attention, installed per module instance on the chosen attn2 layers, and removed exactly.

For each patched ``attn2`` the result is ``to_out(Attn(q, K_text, V_text) + s * Attn(q, K_ip, V_ip))`` with
``q = to_q(x)`` and ``K_ip, V_ip = to_k_ip(c), to_v_ip(c)``, using the module's own ``heads``.

How the sum reaches ``to_out`` while the instance keeps whatever forward it has (the web UI swaps
``CrossAttention.forward`` at class level for sdp/xformers/…; LoRA patches the Linear layers):
* fast path: while our wrapper runs the original forward, a forward hook on ``to_q`` captures ``q`` and a
  pre-hook on ``to_out[0]`` adds ``s * Attn(q, K_ip, V_ip)`` to its input, so ``to_out`` (with any LoRA in it)
  sees exactly the sum and no Linear runs twice;
* fallback, when a forward bypasses those submodule calls (fused kernels, chunked ``to_q``): after the original
  forward, add ``to_out[0].weight @ (s * Attn(to_q(x), K_ip, V_ip))``. Since ``to_out`` is affine and the
  original output already holds its bias once, this equals the same formula (Dropout is identity at inference).

Rows: the caller tells which rows of a UNet call are conditional (style tokens) and which unconditional (tokens
of a zero image embedding) with :meth:`StylePatch.set_rows`, once per sampling step, for the whole CFG batch
``[cond rows…, uncond rows…]``; consecutive UNet calls consume consecutive slices of that plan, which covers the
web UI's layouts (one call, separate cond/uncond calls, chunked calls, AND, batch > 1, skipped uncond).
"""
from __future__ import annotations

import weakref
from typing import Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import StylusUserError
from . import blocks as _blocks
from .ip_adapter import IPAdapter, attention

_ACTIVE: "weakref.WeakKeyDictionary[nn.Module, StylePatch]" = weakref.WeakKeyDictionary()
Roles = Union[None, torch.Tensor, Sequence[Union[bool, str]]]


class ShapeMismatchError(StylusUserError, ValueError):
    """The adapter does not fit the UNet; the message names the layer and both shapes."""


# ------------------------------------------------------------------------------------------------ UNet lookup
def find_unet(model: nn.Module) -> nn.Module:
    """The module that owns ``input_blocks``/``middle_block``/``output_blocks`` (accepts the UNet or any parent)."""
    for _, m in model.named_modules():
        if all(hasattr(m, a) for a in ("input_blocks", "middle_block", "output_blocks")):
            return m
    raise ValueError("no ldm/sgm UNet (input_blocks/middle_block/output_blocks) found in %s" % type(model).__name__)


def attn_modules(unet: nn.Module, layers: Iterable[_blocks.AttnLayer]) -> Dict[int, nn.Module]:
    named = dict(unet.named_modules())
    out = {}
    for layer in layers:
        if layer.ldm not in named:
            raise ShapeMismatchError("the UNet has no %s (IP-Adapter layer %d)" % (layer.ldm, layer.number))
        out[layer.number] = named[layer.ldm]
    return out


def detect_arch(unet: nn.Module) -> str:
    """``sd15`` or ``sdxl``, from which table's attn2 paths all exist."""
    names = {n for n, _ in find_unet(unet).named_modules()}
    for arch in ("sdxl", "sd15"):  # SDXL first: its paths are not a subset of SD1.5's, nor the reverse
        if all(l.ldm in names for l in _blocks.table(arch)):
            return arch
    raise ValueError("the UNet matches neither the SD1.5 nor the SDXL cross-attention layout")


def check_against_unet(adapter: IPAdapter, unet: nn.Module) -> None:
    """Raise :class:`ShapeMismatchError` naming the first layer whose K/V projections do not fit the UNet."""
    unet = find_unet(unet)
    arch = detect_arch(unet)
    if arch != adapter.arch:
        raise ShapeMismatchError("the IP-Adapter is for %s but the UNet is %s" % (adapter.arch, arch))
    for number, mod in attn_modules(unet, _blocks.table(arch)).items():
        k_ip, _ = adapter.kv(number)
        want = (mod.to_k.in_features, mod.to_k.out_features)
        have = (k_ip.in_features, k_ip.out_features)
        if have != want:
            path = next(l.ldm for l in _blocks.table(arch) if l.number == number)
            raise ShapeMismatchError("IP-Adapter layer %d (%s): to_k_ip is Linear(%d -> %d) but the UNet's to_k is "
                                     "Linear(%d -> %d)" % (number, path, have[0], have[1], want[0], want[1]))


def roles_mask(roles: Roles) -> Optional[torch.Tensor]:
    """Row roles -> bool tensor (True = conditional). Accepts bools, 'cond'/'uncond' strings or a bool tensor."""
    if roles is None:
        return None
    if isinstance(roles, torch.Tensor):
        return roles.detach().to("cpu", torch.bool).reshape(-1)
    vals = []
    for r in roles:
        if isinstance(r, str):
            if r not in ("cond", "uncond"):
                raise ValueError("row role must be 'cond' or 'uncond', got %r" % r)
            r = r == "cond"
        vals.append(bool(r))
    return torch.tensor(vals, dtype=torch.bool)


def rows_from_options(options, b: int, device) -> Optional["_RowSlice"]:
    """Forge calls attn2 with transformer_options["cond_or_uncond"]: one flag per equal chunk of the batch's rows
    (0 = conditional, 1 = unconditional). None when absent (the A1111 web UI), so the row plan applies."""
    chunks = options.get("cond_or_uncond") if isinstance(options, dict) else None
    if not chunks or b % len(chunks):
        return None
    per = b // len(chunks)
    return _RowSlice(torch.tensor([c == 0 for c in chunks for _ in range(per)], dtype=torch.bool), device)


def cfg_rows(n_cond: int, n_uncond: int) -> List[str]:
    """The web UI CFG denoiser's row plan: all conditional rows (AND repeats included) first, then unconditional."""
    return ["cond"] * n_cond + ["uncond"] * n_uncond


class _RowSlice:
    """The roles of one UNet call's rows: a host-side summary plus the mask, moved to the device once."""

    def __init__(self, host: torch.Tensor, device: torch.device):
        self.n = len(host)
        self.all_cond, self.all_uncond = bool(host.all()), not bool(host.any())
        self.mask = None if (self.all_cond or self.all_uncond) else host.to(device)

    def __len__(self) -> int:
        return self.n


# ------------------------------------------------------------------------------------------------ one layer
class _LayerPatch:
    """Per-module state: cached IP keys/values and the hooks of the fast path."""

    def __init__(self, patch: "StylePatch", module: nn.Module, kv: Sequence[torch.Tensor]):
        self.patch, self.module = patch, module
        self.k_c, self.v_c, self.k_u, self.v_u = kv
        if not isinstance(getattr(module, "heads", None), int):
            raise ShapeMismatchError("%s has no integer 'heads': not an ldm/sgm CrossAttention" % type(module).__name__)
        self.heads = module.heads
        self.had_own = "forward" in module.__dict__
        self.own = module.__dict__.get("forward")
        self.armed, self.q, self.q_calls, self.added = False, None, 0, False
        self.rows_tokens = None
        self.call_rows = None  # roles the host passed with this very call (Forge), else the patch's row plan
        self.hooks, self.wrapper = [], None

    def call_orig(self, *args, **kwargs):
        # Class-level forward looked up at call time, so a later optimisation swap still takes effect.
        if self.had_own:
            return self.own(*args, **kwargs)
        return type(self.module).forward(self.module, *args, **kwargs)

    def ip_term(self, q: torch.Tensor) -> torch.Tensor:
        mask = self.call_rows if self.call_rows is not None else self.patch._rows_for(q.shape[0])
        k = _pick(self.k_c, self.k_u, mask, q.shape[0])
        v = _pick(self.v_c, self.v_u, mask, q.shape[0])
        # .to(q): a host that offloads modules between jobs (Forge) may run sampling on another device
        return attention(q, k.to(q.device, q.dtype), v.to(q.device, q.dtype), self.heads)  # s is fused by callers

    def on_to_q(self, mod, args, out):
        # Only a single to_q over all of x is usable: chunked forwards (rows or queries) take the fallback.
        if self.armed:
            self.q_calls += 1
            self.q = out if self.q_calls == 1 and out.shape[:-1] == self.rows_tokens else None

    def on_to_out(self, mod, args):
        if not self.armed or self.q is None or self.added or args[0].shape != self.q.shape:
            return None
        self.added = True
        return (torch.add(args[0], self.ip_term(self.q), alpha=self.patch.scale),) + tuple(args[1:])

    def forward(self, x, context=None, *args, **kwargs):
        if self.patch.scale == 0:
            return self.call_orig(x, context, *args, **kwargs)
        self.armed, self.q, self.q_calls, self.added = True, None, 0, False
        self.rows_tokens = x.shape[:-1]
        self.call_rows = rows_from_options(kwargs.get("transformer_options"), x.shape[0], x.device)
        try:
            out = self.call_orig(x, context, *args, **kwargs)
            added = self.added
        finally:
            self.armed, self.q, self.q_calls, self.added = False, None, 0, False
        if not added:
            ip = F.linear(self.ip_term(self.module.to_q(x)), self.module.to_out[0].weight)
            out = torch.add(out, ip, alpha=self.patch.scale)
        return out

    def install(self) -> None:
        m = self.module
        self.hooks = [m.to_q.register_forward_hook(self.on_to_q), m.to_out[0].register_forward_pre_hook(self.on_to_out)]
        self.wrapper = _make_wrapper(self)
        m.forward = self.wrapper

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []
        m = self.module
        if self.wrapper is not None and m.__dict__.get("forward") is self.wrapper:  # never clobber a later wrapper
            if self.had_own:
                m.forward = self.own
            else:
                del m.__dict__["forward"]
        self.wrapper = None


def _make_wrapper(lp: _LayerPatch):
    def forward(x, context=None, *args, **kwargs):
        return lp.forward(x, context, *args, **kwargs)
    forward.__stylus_patch__ = lp.patch  # lets a later patch find and remove this one (no module attribute)
    return forward


def _pick(cond: torch.Tensor, uncond: torch.Tensor, mask: Optional["_RowSlice"], b: int) -> torch.Tensor:
    if mask is None:
        return cond.expand(b, -1, -1)
    if mask.all_cond:  # decided on the host once per UNet call: no device sync here
        return cond.expand(b, -1, -1)
    if mask.all_uncond:
        return uncond.expand(b, -1, -1)
    return torch.where(mask.mask[:, None, None], cond.expand(b, -1, -1), uncond.expand(b, -1, -1))


# ------------------------------------------------------------------------------------------------ the handle
def _as_tokens(t: torch.Tensor, what: str) -> torch.Tensor:
    """(T, D), (1, T, D) or (R, T, D) for R references (their tokens are concatenated) -> (T', D)."""
    if t.dim() == 2:
        return t
    if t.dim() == 3:
        return t.reshape(-1, t.shape[-1])
    raise ValueError("%s tokens must be (T, D) or (R, T, D), got %s" % (what, tuple(t.shape)))


class StylePatch:
    """Decoupled cross-attention on ``blocks`` of ``unet``; use as a context manager or install()/remove().

    Only the per-layer IP keys/values (a few tokens each) are kept: the adapter itself can be released as soon
    as the patch is built.
    """

    def __init__(self, unet: nn.Module, adapter: IPAdapter, cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor,
                 blocks: Union[str, Iterable, None] = "style", scale: float = 1.0):
        self.unet = find_unet(unet)
        check_against_unet(adapter, self.unet)
        self.layers = _blocks.resolve_blocks(adapter.arch, blocks)
        self.scale = float(scale)
        cond, uncond = _as_tokens(cond_tokens, "cond"), _as_tokens(uncond_tokens, "uncond")
        if cond.shape != uncond.shape:
            raise ShapeMismatchError("cond tokens %s and uncond tokens %s differ" % (tuple(cond.shape),
                                                                                    tuple(uncond.shape)))
        mods = attn_modules(self.unet, self.layers)
        self._patches = {n: _LayerPatch(self, m, _layer_kv(adapter, n, m, cond, uncond)) for n, m in mods.items()}
        self._device = next(iter(self._patches.values())).k_c.device if self._patches else torch.device("cpu")
        self._plan: Optional[torch.Tensor] = None
        self._cursor = 0
        self._current: Optional[_RowSlice] = None
        self._hook = None

    # -- rows
    def set_rows(self, roles: Roles) -> None:
        """Row plan for the next UNet call(s) (None: every row is conditional). Resets the cursor."""
        self._plan, self._cursor, self._current = roles_mask(roles), 0, None

    def _on_unet(self, module, args, kwargs):
        x = args[0] if args else kwargs.get("x")
        b = int(x.shape[0])
        plan = self._plan
        if plan is None or len(plan) == 0:
            self._current = None
            return None
        if self._cursor + b > len(plan):
            if b > len(plan) or self._cursor == 0:
                raise ValueError("row plan has %d rows but the UNet was called with %d (plan offset %d)"
                                 % (len(plan), b, self._cursor))
            self._cursor = 0  # a new step that did not announce its plan: same layout again
        self._current = _RowSlice(plan[self._cursor:self._cursor + b], self._device)
        self._cursor = (self._cursor + b) % len(plan)
        return None

    def _rows_for(self, b: int) -> Optional[_RowSlice]:
        cur = self._current
        if cur is None:
            return None
        if len(cur) != b:
            raise ValueError("row plan slice has %d rows but cross-attention got %d" % (len(cur), b))
        return cur

    # -- lifecycle
    @property
    def installed(self) -> bool:
        return self._hook is not None

    def install(self) -> "StylePatch":
        if self.installed:
            return self
        prev = _ACTIVE.get(self.unet)
        if prev is not None:
            prev.remove()
        for lp in self._patches.values():
            _remove_foreign(lp.module)
            lp.had_own = "forward" in lp.module.__dict__
            lp.own = lp.module.__dict__.get("forward")
        try:
            for lp in self._patches.values():
                lp.install()
            self._hook = self.unet.register_forward_pre_hook(self._on_unet, with_kwargs=True)
        except BaseException:
            self.remove()
            raise
        _ACTIVE[self.unet] = self
        return self

    def remove(self) -> None:
        """Restore every patched module exactly (same forward object, no hooks); safe to call twice."""
        for lp in self._patches.values():
            lp.remove()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if _ACTIVE.get(self.unet) is self:
            del _ACTIVE[self.unet]
        self._current = None

    def __enter__(self) -> "StylePatch":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.remove()


def _remove_foreign(module: nn.Module) -> None:
    # A module still wrapped by another (stale) patch: restore it first, so patches never stack.
    owner = getattr(module.__dict__.get("forward"), "__stylus_patch__", None)
    if owner is not None:
        owner.remove()


@torch.no_grad()
def _layer_kv(adapter: IPAdapter, number: int, module: nn.Module, cond: torch.Tensor, uncond: torch.Tensor):
    w = module.to_k.weight
    k_ip, v_ip = adapter.kv(number)
    p = k_ip.weight
    c, u = cond.to(p.device, p.dtype), uncond.to(p.device, p.dtype)
    # F.linear, not k_ip(c): a class-level nn.Linear patch (LoRA) must never touch the adapter's weights.
    kv = (F.linear(c, k_ip.weight), F.linear(c, v_ip.weight), F.linear(u, k_ip.weight), F.linear(u, v_ip.weight))
    return tuple(t.to(w.device, w.dtype)[None] for t in kv)


def patch_unet(unet: nn.Module, adapter: IPAdapter, cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor,
               blocks: Union[str, Iterable, None] = "style", scale: float = 1.0) -> StylePatch:
    """Build a :class:`StylePatch` (not yet installed: ``with patch_unet(...) as p:`` or ``.install()``)."""
    return StylePatch(unet, adapter, cond_tokens, uncond_tokens, blocks, scale)
