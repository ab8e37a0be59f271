"""Tiny models for the style tests: a UNet module tree with the web UI's real ldm/sgm attn2 paths and
CrossAttention attribute names, IP-Adapter state dicts with the real key names, tiny CLIP models."""
import torch
import torch.nn as nn
import torch.nn.functional as F

CTX = 64      # context (text token) width, as tiny-sd15
HEADS = 2

# (ldm block, width, depth) in ldm execution order: input -> middle -> output
SD15_BLOCKS = ([("input_blocks.%d" % n, w, 1)
                for n, w in ((1, 32), (2, 32), (4, 64), (5, 64), (7, 128), (8, 128))]
               + [("middle_block", 128, 1)]
               + [("output_blocks.%d" % n, (128, 64, 32)[(n - 3) // 3], 1) for n in range(3, 12)])
SDXL_BLOCKS = ([("input_blocks.%d" % n, w, d)
                for n, w, d in ((4, 32, 2), (5, 32, 2), (7, 64, 10), (8, 64, 10))]
               + [("middle_block", 64, 10)]
               + [("output_blocks.%d" % n, w, d) for n, w, d in
                  ((0, 64, 10), (1, 64, 10), (2, 64, 10), (3, 32, 2), (4, 32, 2), (5, 32, 2))])


def split_heads(t, h):
    b, n, inner = t.shape
    return t.reshape(b, n, h, inner // h).transpose(1, 2)


def merge_heads(t):
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)


class CrossAttention(nn.Module):
    """ldm.modules.attention.CrossAttention: names, shapes and the plain (einsum-style) forward."""

    def __init__(self, query_dim, context_dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None, mask=None):
        context = x if context is None else context
        q, k, v = (split_heads(t, self.heads) for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        attn = (q @ k.transpose(-1, -2) * self.scale).softmax(dim=-1)
        return self.to_out(merge_heads(attn @ v))


def sdp_forward(self, x, context=None, mask=None, **kwargs):
    """Like the web UI's class-level 'sdp' swap: submodules called one by one, fused attention kernel."""
    context = x if context is None else context
    q, k, v = (split_heads(t, self.heads) for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
    out = merge_heads(F.scaled_dot_product_attention(q, k, v))
    return self.to_out[1](self.to_out[0](out))


def fused_forward(self, x, context=None, mask=None, **kwargs):
    """A forward that never calls its submodules (uses their weights directly): hooks cannot see it."""
    context = x if context is None else context
    q = F.linear(x, self.to_q.weight)
    k, v = F.linear(context, self.to_k.weight), F.linear(context, self.to_v.weight)
    out = merge_heads(F.scaled_dot_product_attention(*(split_heads(t, self.heads) for t in (q, k, v))))
    return F.linear(out, self.to_out[0].weight, self.to_out[0].bias)


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = CrossAttention(dim, CTX, HEADS, dim // HEADS)

    def forward(self, h, context):
        return h + self.attn2(self.norm2(h), context=context)


class SpatialTransformer(nn.Module):
    def __init__(self, base, dim, depth):
        super().__init__()
        self.proj_in = nn.Linear(base, dim)
        self.transformer_blocks = nn.ModuleList(BasicTransformerBlock(dim) for _ in range(depth))
        self.proj_out = nn.Linear(dim, base)

    def forward(self, h, context):
        t = self.proj_in(h)
        for blk in self.transformer_blocks:
            t = blk(t, context)
        return h + self.proj_out(t)


class TinyUNet(nn.Module):
    """input_blocks / middle_block / output_blocks with a SpatialTransformer at ``.1`` where the real model
    has one. Tokens (B, N, base) flow through every attention block in ldm order; rows never mix."""

    def __init__(self, layout, base=16, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        n_in = 1 + max(int(b.split(".")[1]) for b, _, _ in layout if b.startswith("input"))
        n_out = 1 + max(int(b.split(".")[1]) for b, _, _ in layout if b.startswith("output"))
        self.input_blocks = nn.ModuleList(nn.Sequential(nn.Identity()) for _ in range(n_in))
        self.output_blocks = nn.ModuleList(nn.Sequential(nn.Identity()) for _ in range(n_out))
        self.middle_block = nn.Sequential(nn.Identity())
        self.order = []
        for name, width, depth in layout:
            seq = (self.middle_block if name == "middle_block"
                   else getattr(self, name.split(".")[0])[int(name.split(".")[1])])
            seq.append(SpatialTransformer(base, width, depth))
            self.order.append(seq[1])
        self.base = base

    def forward(self, x, timesteps=None, context=None, **kwargs):
        h = x
        for st in self.order:
            h = st(h, context)
        return h


def tiny_sd15(seed=0):
    return TinyUNet(SD15_BLOCKS, seed=seed).eval()


def tiny_sdxl(seed=0):
    return TinyUNet(SDXL_BLOCKS, seed=seed).eval()


# ------------------------------------------------------------------------------------------------ adapters
def _attn2(unet):
    return {n: m for n, m in unet.named_modules() if n.endswith("attn2")}


def adapter_state_dict(unet, arch, kind="plain", clip_dim=24, tokens=4, seed=1, plus_dim=CTX, depth=2):
    """Flat IP-Adapter keys as in the published files
    (image_proj.* / ip_adapter.{2j+1}.to_{k,v}_ip.weight)."""
    from lib_stylus.style.blocks import table
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2
    sd = {}
    if kind == "plain":
        sd.update({"image_proj.proj.weight": r(tokens * CTX, clip_dim),
                   "image_proj.proj.bias": r(tokens * CTX),
                   "image_proj.norm.weight": 1 + r(CTX), "image_proj.norm.bias": r(CTX)})
    else:
        d, inner = plus_dim, plus_dim  # one 64-wide head, as upstream's dim_head=64
        sd.update({"image_proj.latents": r(1, tokens, d), "image_proj.proj_in.weight": r(d, clip_dim),
                   "image_proj.proj_in.bias": r(d), "image_proj.proj_out.weight": r(CTX, d),
                   "image_proj.proj_out.bias": r(CTX), "image_proj.norm_out.weight": 1 + r(CTX),
                   "image_proj.norm_out.bias": r(CTX)})
        for i in range(depth):
            p = "image_proj.layers.%d." % i
            for n in ("0.norm1", "0.norm2", "1.0"):
                sd[p + n + ".weight"], sd[p + n + ".bias"] = 1 + r(d), r(d)
            sd.update({p + "0.to_q.weight": r(inner, d), p + "0.to_kv.weight": r(2 * inner, d),
                       p + "0.to_out.weight": r(d, inner), p + "1.1.weight": r(4 * d, d),
                       p + "1.3.weight": r(d, 4 * d)})
    mods = _attn2(unet)
    for layer in table(arch):
        m = mods[layer.ldm]
        for n in ("to_k_ip", "to_v_ip"):
            sd["ip_adapter.%d.%s.weight" % (layer.number, n)] = r(m.to_k.out_features, m.to_k.in_features)
    return sd


def nest(sd):
    out = {"image_proj": {}, "ip_adapter": {}}
    for k, v in sd.items():
        part, rest = k.split(".", 1)
        out[part][rest] = v
    return out


# ------------------------------------------------------------------------------------------------ CLIP
def tiny_vision_config(**kw):
    from transformers import CLIPVisionConfig
    cfg = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
               image_size=32, patch_size=8, projection_dim=24, hidden_act="gelu")
    cfg.update(kw)
    return CLIPVisionConfig(**cfg)


def tiny_vision_model(seed=0, **kw):
    from transformers import CLIPVisionModelWithProjection
    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(tiny_vision_config(**kw)).eval()
