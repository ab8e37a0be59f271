"""Decoupled cross-attention, installed per module instance on the chosen attn2 layers, and removed exactly.

For each patched ``attn2`` the result is ``to_out(Attn(q, K_text, V_text) + s * Attn(q, K_ip, V_ip))`` with
``q = to_q(x)`` and ``K_ip, V_ip = to_k_ip(c), to_v_ip(c)``, using the module's own ``heads``.

How the sum reaches ``to_out`` while the instance keeps whatever forward it has (the web UI swaps
``CrossAttention.forward`` at class level for sdp/xformers/…; LoRA patches the Linear layers):
* fast path: while our wrapper runs the original forward, a forward hook on ``to_q`` captures ``q`` and a
  pre-hook on ``to_out[0]`` adds ``s * Attn(q, K_ip, V_ip)`` to its input, so ``to_out`` (with any LoRA in it)
  sees exactly the sum and no Linear runs twice;
* fallback, when a forward bypasses those submodule calls (fused kernels, chunked ``to_q``): after the
  original forward, add ``to_out[0].weight @ (s * Attn(to_q(x), K_ip, V_ip))``. Since ``to_out`` is affine and
  the original output already holds its bias once, this equals the same formula (Dropout is identity at
  inference).

Rows: the caller tells which rows of a UNet call are conditional (style tokens) and which unconditional
(tokens of a zero image embedding) with :meth:`StylePatch.set_rows`, once per sampling step, for the whole CFG
batch ``[cond rows…, uncond rows…]``; consecutive UNet calls consume consecutive slices of that plan, which
covers the web UI's layouts (one call, separate cond/uncond calls, chunked calls, AND, batch > 1, skipped
uncond). A call with a multiple of the planned rows (Tiled Diffusion / MultiDiffusion stack tiles along the
batch) repeats the plan. Each UNet call gets one explicit :class:`CallPlan` that every layer's
:class:`IPAttnProcessor` reads (diffusers' attention processors are the model). Nothing here ever raises
inside the UNet: a call the plan cannot describe, or any failure of the style term, runs that call without
style and logs one warning.
"""
from __future__ import annotations

import logging
import weakref
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import StylusUserError, UnsupportedModel
from . import blocks as _blocks
from .ip_adapter import IPAdapter, attention

log = logging.getLogger("stylus")
_ACTIVE: "weakref.WeakKeyDictionary[nn.Module, StylePatch]" = weakref.WeakKeyDictionary()
Roles = Union[None, torch.Tensor, Sequence[Union[bool, str]]]


class ShapeMismatchError(StylusUserError, ValueError):
    """The adapter does not fit the UNet; the message names the layer and both shapes."""


# ------------------------------------------------------------------------------------------------ UNet lookup
def find_unet(model: nn.Module) -> nn.Module:
    """The module that owns ``input_blocks``/``middle_block``/``output_blocks`` (accepts the UNet or any
    parent)."""
    for _, m in model.named_modules():
        if all(hasattr(m, a) for a in ("input_blocks", "middle_block", "output_blocks")):
            return m
    raise UnsupportedModel("no ldm/sgm UNet (input_blocks/middle_block/output_blocks) found in %s"
                           % type(model).__name__)


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
    raise UnsupportedModel("the UNet matches neither the SD1.5 nor the SDXL cross-attention layout")


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
            raise ShapeMismatchError("IP-Adapter layer %d (%s): to_k_ip is Linear(%d -> %d) but the UNet's "
                                     "to_k is Linear(%d -> %d)"
                                     % (number, path, have[0], have[1], want[0], want[1]))


def roles_mask(roles: Roles) -> Optional[torch.Tensor]:
    """Row roles -> bool tensor (True = conditional). Accepts bools, 'cond'/'uncond' strings or a bool
    tensor."""
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


def rows_from_options(options, b: int, device) -> Optional["CallPlan"]:
    """Forge calls attn2 with transformer_options["cond_or_uncond"]: one flag per equal chunk of the batch's
    rows (0 = conditional, 1 = unconditional). None when absent (the A1111 web UI), so the row plan
    applies."""
    chunks = options.get("cond_or_uncond") if isinstance(options, dict) else None
    if not chunks or b % len(chunks):
        return None
    per = b // len(chunks)
    return CallPlan(torch.tensor([c == 0 for c in chunks for _ in range(per)], dtype=torch.bool), device)


def cfg_rows(n_cond: int, n_uncond: int) -> List[str]:
    """The web UI CFG denoiser's row plan: all conditional rows (AND repeats included) first, then
    unconditional."""
    return ["cond"] * n_cond + ["uncond"] * n_uncond


class CallPlan:
    """What one UNet call does with the style: each row's role (a host-side summary plus the mask, moved to
    the device once), or ``skip`` (run the call without style)."""

    def __init__(self, host: Optional[torch.Tensor], device: torch.device, skip: bool = False):
        self.skip = skip
        self.n = 0 if host is None else len(host)
        self.all_cond = bool(host.all()) if host is not None else False
        self.all_uncond = not bool(host.any()) if host is not None else False
        self.mask = None if (skip or self.all_cond or self.all_uncond) else host.to(device)

    def __len__(self) -> int:
        return self.n


SKIP = CallPlan(None, torch.device("cpu"), skip=True)


# ------------------------------------------------------------------------------------------------ one layer
class IPAttnProcessor:
    """One patched attn2: its cached IP keys/values and the hooks of the fast path. It reads the call's plan
    (rows passed with the call on Forge, else the patch's :class:`CallPlan` for this UNet call)."""

    def __init__(self, patch: "StylePatch", module: nn.Module, kv: Sequence[torch.Tensor]):
        self.patch, self.module = patch, module
        self.k_c, self.v_c, self.k_u, self.v_u = kv
        if not isinstance(getattr(module, "heads", None), int):
            raise ShapeMismatchError("%s has no integer 'heads': not an ldm/sgm CrossAttention"
                                     % type(module).__name__)
        self.heads = module.heads
        self.had_own = "forward" in module.__dict__
        self.own = module.__dict__.get("forward")
        self.armed, self.q, self.q_calls, self.added = False, None, 0, False
        self.rows_tokens = None
        self.plan: Optional[CallPlan] = None  # this call's plan, fixed when the call starts
        self.hooks, self.wrapper = [], None

    def call_orig(self, *args, **kwargs):
        # Class-level forward looked up at call time, so a later optimisation swap still takes effect.
        if self.had_own:
            return self.own(*args, **kwargs)
        return type(self.module).forward(self.module, *args, **kwargs)

    def ip_term(self, q: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        if plan is not None and len(plan) != q.shape[0]:
            raise ValueError("the call's plan has %d rows but cross-attention got %d"
                             % (len(plan), q.shape[0]))
        k = _pick(self.k_c, self.k_u, plan, q.shape[0])
        v = _pick(self.v_c, self.v_u, plan, q.shape[0])
        # .to(q): a host that offloads modules between jobs (Forge) may run sampling on another device
        # s is fused by callers
        return attention(q, k.to(q.device, q.dtype), v.to(q.device, q.dtype), self.heads)

    def on_to_q(self, mod, args, out):
        # Only a single to_q over all of x is usable: chunked forwards (rows or queries) take the fallback.
        if self.armed:
            self.q_calls += 1
            self.q = out if self.q_calls == 1 and out.shape[:-1] == self.rows_tokens else None

    def on_to_out(self, mod, args):
        if not self.armed or self.q is None or self.added or args[0].shape != self.q.shape:
            return None
        self.added = True  # also on failure: the fallback must not try again
        try:
            term = self.ip_term(self.q)
        except Exception as e:  # never raise inside the host's UNet: this call runs without style
            self.patch.warn_once("layer", "style skipped in a cross-attention layer (%s: %s)"
                                 % (type(e).__name__, e))
            return None
        return (torch.add(args[0], term, alpha=self.patch.scale),) + tuple(args[1:])

    def forward(self, x, context=None, *args, **kwargs):
        forge_rows = rows_from_options(kwargs.get("transformer_options"), x.shape[0], x.device)
        self.plan = forge_rows or self.patch.current
        if self.patch.scale == 0 or (self.plan is not None and self.plan.skip):
            return self.call_orig(x, context, *args, **kwargs)
        self.armed, self.q, self.q_calls, self.added = True, None, 0, False
        self.rows_tokens = x.shape[:-1]
        try:
            out = self.call_orig(x, context, *args, **kwargs)
            added = self.added
        finally:
            self.armed, self.q, self.q_calls, self.added = False, None, 0, False
        if not added:
            try:
                q = self.module.to_q(x)
                term = self.ip_term(q)
                # to_out's weight in the compute dtype: float8-stored weights (FP8) are cast as the host does
                ip = F.linear(term, self.module.to_out[0].weight.to(term.device, term.dtype))
            except Exception as e:  # never raise inside the host's UNet
                self.patch.warn_once("layer", "style skipped in a cross-attention layer (%s: %s)"
                                     % (type(e).__name__, e))
                return out
            out = torch.add(out, ip.to(out.dtype), alpha=self.patch.scale)
        return out

    def install(self) -> None:
        m = self.module
        self.hooks = [m.to_q.register_forward_hook(self.on_to_q),
                      m.to_out[0].register_forward_pre_hook(self.on_to_out)]
        self.wrapper = _make_wrapper(self)
        m.forward = self.wrapper

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []
        m = self.module
        # never clobber a later wrapper
        if self.wrapper is not None and m.__dict__.get("forward") is self.wrapper:
            if self.had_own:
                m.forward = self.own
            else:
                del m.__dict__["forward"]
        self.wrapper = None


def _make_wrapper(lp: IPAttnProcessor):
    def forward(x, context=None, *args, **kwargs):
        return lp.forward(x, context, *args, **kwargs)
    forward.__stylus_patch__ = lp.patch  # lets a later patch find and remove this one (no module attribute)
    return forward


def _pick(cond: torch.Tensor, uncond: torch.Tensor, mask: Optional[CallPlan], b: int) -> torch.Tensor:
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


KV = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # (K cond, V cond, K uncond, V uncond)


class StylePatch:
    """Decoupled cross-attention on ``blocks`` of ``unet``; use as a context manager or install()/remove().

    Only the per-layer IP keys/values (a few tokens each) are kept, computed on ``device`` in ``dtype`` (the
    host's compute device and dtype; default: where and how the adapter is stored) from the chosen layers'
    weights only: the adapter itself can be released as soon as the patch is built.
    """

    def __init__(self, unet: nn.Module, adapter: IPAdapter, cond_tokens: torch.Tensor,
                 uncond_tokens: torch.Tensor,
                 blocks: Union[str, Iterable, None] = "style", scale: float = 1.0, device=None, dtype=None):
        unet = find_unet(unet)
        check_against_unet(adapter, unet)
        layers = _blocks.resolve_blocks(adapter.arch, blocks)
        kv = layer_kv(adapter, [l.number for l in layers], cond_tokens, uncond_tokens, device, dtype)
        self._setup(unet, adapter.arch, kv, scale)

    @classmethod
    def from_kv(cls, unet: nn.Module, arch: str, kv: Dict[int, KV], scale: float = 1.0) -> "StylePatch":
        """A patch from per-layer keys/values made earlier (see :func:`layer_kv`), checked against
        ``unet``."""
        patch = cls.__new__(cls)
        unet = find_unet(unet)
        if detect_arch(unet) != arch:
            raise ShapeMismatchError("the IP-Adapter is for %s but the UNet is %s"
                                     % (arch, detect_arch(unet)))
        patch._setup(unet, arch, kv, scale)
        return patch

    def _setup(self, unet: nn.Module, arch: str, kv: Dict[int, KV], scale: float) -> None:
        self.unet = unet
        self.arch = arch
        self.scale = float(scale)
        chosen = [l for l in _blocks.table(arch) if l.number in kv]
        mods = attn_modules(self.unet, chosen)
        for number, mod in mods.items():
            width = kv[number][0].shape[-1]
            if width != mod.to_k.out_features:
                raise ShapeMismatchError("IP-Adapter layer %d: keys are %d wide but the UNet's to_k makes %d"
                                         % (number, width, mod.to_k.out_features))
        self._patches = {n: IPAttnProcessor(self, m, kv[n]) for n, m in mods.items()}
        self._device = next(iter(kv.values()))[0].device if kv else torch.device("cpu")
        self._plan: Optional[torch.Tensor] = None
        self._cursor = 0
        self.current: Optional[CallPlan] = None
        self._hook = None
        self._warned = set()

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("Stylus: %s", message)

    # -- rows
    def set_rows(self, roles: Roles) -> None:
        """Row plan for the next UNet call(s) (None: every row is conditional). Resets the cursor."""
        self._plan, self._cursor, self.current = roles_mask(roles), 0, None

    def _on_unet(self, module, args, kwargs):
        try:
            self.current = self._call_plan(args, kwargs)
        except Exception as e:  # never raise inside the host's UNet
            self.current = SKIP
            self.warn_once("plan", "style skipped for a UNet call (%s: %s)" % (type(e).__name__, e))
        return None

    def _call_plan(self, args, kwargs) -> Optional[CallPlan]:
        x = args[0] if args else kwargs.get("x")
        b = int(x.shape[0])
        plan = self._plan
        if plan is None or len(plan) == 0:
            return None
        n = len(plan)
        if self._cursor + b <= n:
            rows = plan[self._cursor:self._cursor + b]
            self._cursor = (self._cursor + b) % n
            return CallPlan(rows, self._device)
        if b <= n:
            self._cursor = b % n  # a new step that did not announce its plan: same layout again
            return CallPlan(plan[:b], self._device)
        if b % n == 0:
            self._cursor = 0
            return CallPlan(plan.repeat(b // n), self._device)  # tiles stacked along the batch
        self.warn_once("rows", "a UNet call with %d rows does not fit the style's row plan of %d rows "
                               "(a tiling extension?): those calls run without style" % (b, n))
        return SKIP

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
        self.current = None

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
def layer_kv(adapter: IPAdapter, numbers: Iterable[int], cond_tokens: torch.Tensor,
             uncond_tokens: torch.Tensor, device=None, dtype=None) -> Dict[int, KV]:
    """Per chosen layer: (K cond, V cond, K uncond, V uncond) as (1, T, C) tensors on ``device`` in ``dtype``.
    Only those layers' weights are moved (never the whole adapter: SDXL has 70 pairs, "style" uses 10)."""
    cond, uncond = _as_tokens(cond_tokens, "cond"), _as_tokens(uncond_tokens, "uncond")
    if cond.shape != uncond.shape:
        raise ShapeMismatchError("cond tokens %s and uncond tokens %s differ" % (tuple(cond.shape),
                                                                                tuple(uncond.shape)))
    out = {}
    for number in numbers:
        k_ip, v_ip = adapter.kv(number)
        dev = torch.device(device) if device is not None else k_ip.weight.device
        dt = dtype or k_ip.weight.dtype
        work = torch.float32 if dev.type == "cpu" else dt  # torch 2.1 has no half matmul on the CPU
        c, u = cond.to(dev, work), uncond.to(dev, work)
        # F.linear, not k_ip(c): a class-level nn.Linear patch (LoRA) must never touch the adapter's weights.
        wk, wv = k_ip.weight.to(dev, work), v_ip.weight.to(dev, work)
        kv = (F.linear(c, wk), F.linear(c, wv), F.linear(u, wk), F.linear(u, wv))
        out[number] = tuple(t.to(dt)[None] for t in kv)
    return out


def patch_unet(unet: nn.Module, adapter: IPAdapter, cond_tokens: torch.Tensor, uncond_tokens: torch.Tensor,
               blocks: Union[str, Iterable, None] = "style", scale: float = 1.0, device=None,
               dtype=None) -> StylePatch:
    """Build a :class:`StylePatch` (not yet installed: ``with patch_unet(...) as p:`` or ``.install()``)."""
    return StylePatch(unet, adapter, cond_tokens, uncond_tokens, blocks, scale, device, dtype)
