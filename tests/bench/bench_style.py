#!/usr/bin/env python
"""CPU benchmark of the InstantStyle engine (not collected by pytest).

    python tests/bench/bench_style.py [--quick]

1. Overhead of the patch on all cross-attention (attn2) layers of one UNet call at real SD1.5 (512x512) and SDXL
   (1024x1024) widths, heads and token counts (77 text tokens, 4 IP tokens, batch 2 = cond + uncond rows), with the
   web UI's default torch-2 'sdp'-style forward: off vs style-only vs all blocks, timed interleaved in one run.
2. Memory: the K/V cache the patch holds, and the peak RSS each mode adds (measured in a fresh child process).
3. Encoder time per reference image: a randomly initialised, real-size ViT-H/14 CLIPVisionModelWithProjection
   (+ preprocessing), and the open_clip ViT-H-14 text tower for the content text. No download.
"""
import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [ROOT, os.path.dirname(HERE)]

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import style_fixtures as fx  # noqa: E402
from lib_stylus.style import StylePatch, cfg_rows, resolve_blocks, table  # noqa: E402
from lib_stylus.style.ip_adapter import AdapterInfo, IPAdapter, ImageProjection  # noqa: E402

# (ldm block, width, heads, depth, tokens N) per model; N for a 512px SD1.5 / 1024px SDXL image
SD15 = ([("input_blocks.%d" % n, c, 8, 1, t) for n, c, t in
         ((1, 320, 4096), (2, 320, 4096), (4, 640, 1024), (5, 640, 1024), (7, 1280, 256), (8, 1280, 256))]
        + [("middle_block", 1280, 8, 1, 64)]
        + [("output_blocks.%d" % n, (1280, 640, 320)[(n - 3) // 3], 8, 1, (256, 1024, 4096)[(n - 3) // 3])
           for n in range(3, 12)])
SDXL = ([("input_blocks.%d" % n, c, c // 64, d, t) for n, c, d, t in
         ((4, 640, 2, 4096), (5, 640, 2, 4096), (7, 1280, 10, 1024), (8, 1280, 10, 1024))]
        + [("middle_block", 1280, 20, 10, 1024)]
        + [("output_blocks.%d" % n, c, c // 64, d, t) for n, c, d, t in
           ((0, 1280, 10, 1024), (1, 1280, 10, 1024), (2, 1280, 10, 1024), (3, 640, 2, 4096), (4, 640, 2, 4096),
            (5, 640, 2, 4096))])
MODELS = {"sd15": (SD15, 768), "sdxl": (SDXL, 2048)}
BATCH, TEXT_TOKENS, IP_TOKENS = 2, 77, 4


class Holder(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(blocks)


class Block(nn.Module):
    def __init__(self, attn2):
        super().__init__()
        self.attn2 = attn2


class AttnOnlyUNet(nn.Module):
    """The real attn2 paths and shapes; forward runs just the cross-attention layers (weights tied per width, so
    SDXL's 70 layers fit in memory), each on its real-size hidden states."""

    def __init__(self, layout, ctx_dim):
        super().__init__()
        shared, self.runs = {}, []
        self.input_blocks = nn.ModuleList(nn.Sequential(nn.Identity()) for _ in range(12))
        self.output_blocks = nn.ModuleList(nn.Sequential(nn.Identity()) for _ in range(12))
        self.middle_block = nn.Sequential(nn.Identity())
        self.hidden, self.only = {}, None
        for name, width, heads, depth, n in layout:
            blocks = []
            for _ in range(depth):
                a = fx.CrossAttention(width, ctx_dim, heads, width // heads)
                if width in shared:  # tie weights
                    for attr in ("to_q", "to_k", "to_v"):
                        getattr(a, attr).weight = getattr(shared[width], attr).weight
                    a.to_out[0].weight, a.to_out[0].bias = shared[width].to_out[0].weight, shared[width].to_out[0].bias
                shared.setdefault(width, a)
                blocks.append(Block(a))
                self.runs.append((a, (n, width)))
            seq = self.middle_block if name == "middle_block" else getattr(self, name.split(".")[0])[int(name.split(".")[1])]
            seq.append(Holder(blocks))
            self.hidden.setdefault((n, width), torch.randn(BATCH, n, width) * 0.5)

    def forward(self, x, timesteps=None, context=None):
        for attn, key in self.only or self.runs:
            attn(self.hidden[key], context=context)
        return x


def make_adapter(arch, unet, ctx_dim):
    info = AdapterInfo(arch, "plain", IP_TOKENS, 1024 if arch == "sd15" else 1280, ctx_dim)
    mods = dict(unet.named_modules())
    shared, kv = {}, {}
    for layer in table(arch):
        w = mods[layer.ldm].to_k.out_features
        if w not in shared:
            shared[w] = tuple(nn.Linear(ctx_dim, w, bias=False) for _ in range(2))
        kv[layer.number] = shared[w]
    return IPAdapter(info, ImageProjection(info.clip_dim, ctx_dim, IP_TOKENS), kv).eval()


def setup(arch):
    layout, ctx_dim = MODELS[arch]
    torch.manual_seed(0)
    unet = AttnOnlyUNet(layout, ctx_dim).eval()
    ad = make_adapter(arch, unet, ctx_dim)
    with torch.no_grad():
        toks = ad.project(torch.randn(1, ad.info.clip_dim)), ad.project(torch.zeros(1, ad.info.clip_dim))
    x, ctx = torch.zeros(BATCH, 4, 8, 8), torch.randn(BATCH, TEXT_TOKENS, ctx_dim)
    return unet, ad, toks, x, ctx


def step(unet, patch, x, ctx, only=None):
    if patch is not None:
        patch.set_rows(cfg_rows(BATCH // 2, BATCH // 2))  # one cond row, one uncond row
    unet.only = only
    t0 = time.perf_counter()
    with torch.no_grad():
        unet(x, None, context=ctx)
    return time.perf_counter() - t0


def bench_overhead(arch, repeats):
    """Per distinct layer shape: min time of that attn2 off vs patched (interleaved); totals composed over the
    table, so one run gives off / style-only / all for the whole set of cross-attention layers of a UNet call."""
    fx.CrossAttention.forward = fx.sdp_forward  # the web UI's default torch-2 optimisation, swapped at class level
    unet, ad, toks, x, ctx = setup(arch)
    mods = dict(unet.named_modules())
    per_shape = {}
    for layer in table(arch):
        mod = mods[layer.ldm]
        key = next(k for a, k in unet.runs if a is mod)
        if key in per_shape:
            continue
        p = StylePatch(unet, ad, *toks, blocks=[layer.number])
        off, on = [], []
        step(unet, None, x, ctx, [(mod, key)])  # warm-up
        for _ in range(repeats):
            off.append(step(unet, None, x, ctx, [(mod, key)]))
            with p:
                on.append(step(unet, p, x, ctx, [(mod, key)]))
        per_shape[key] = (min(off), min(on))
    shape_of = {l.number: next(k for a, k in unet.runs if a is mods[l.ldm]) for l in table(arch)}
    total = lambda chosen: sum(per_shape[shape_of[n]][1 if n in chosen else 0] for n in shape_of)
    modes = {"off": set(), "style": {l.number for l in resolve_blocks(arch, "style")}, "all": set(shape_of)}
    med = {m: total(c) for m, c in modes.items()}
    kv = {m: sum(4 * IP_TOKENS * mods[l.ldm].to_k.out_features * 4 for l in table(arch) if l.number in c)
          for m, c in modes.items()}
    return med, kv, {m: len(c) for m, c in modes.items()}


def child_peak(arch, mode):
    """Peak RSS (KiB) of a fresh process that runs one patched UNet call in ``mode``."""
    cmd = [sys.executable, __file__, "--threads", str(torch.get_num_threads()), "--child", arch, mode]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def run_child(arch, mode):
    fx.CrossAttention.forward = fx.sdp_forward
    unet, ad, toks, x, ctx = setup(arch)
    if mode == "off":
        step(unet, None, x, ctx)
    else:
        with StylePatch(unet, ad, *toks, blocks=mode) as p:
            step(unet, p, x, ctx)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def bench_encoders(repeats):
    from PIL import Image
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.modeling_utils import no_init_weights
    from lib_stylus.style.encoders import ClipImageEncoder
    cfg = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                           image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5)
    with no_init_weights():
        model = CLIPVisionModelWithProjection(cfg)
    with torch.no_grad():
        for p in model.parameters():  # cheap, finite init (no denormals / NaN to skew timing)
            p.normal_(0, 0.02)
    enc = ClipImageEncoder(model)
    img = Image.new("RGB", (768, 512), (120, 80, 40))
    enc.encode([img])
    t_img = statistics.median(_timed(lambda: enc.encode([img]), repeats))
    t_plus = statistics.median(_timed(lambda: enc.encode([img], "plus"), repeats))
    del model, enc
    from lib_stylus.style import load_open_clip_text
    text = load_open_clip_text("ViT-H-14")  # text tower only, random init, no checkpoint
    t_txt = statistics.median(_timed(lambda: text(["a photo of a cat sitting on a sofa"]), repeats))
    return t_img, t_plus, t_txt


def _timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        with torch.no_grad():
            fn()
        out.append(time.perf_counter() - t0)
    return out


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice); use 1 when "
                    "another job shares the cores, or every parallel op waits for a descheduled thread")
    ap.add_argument("--child", nargs=2, metavar=("ARCH", "MODE"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return run_child(*args.child)
    reps = 3 if args.quick else 9
    print("## InstantStyle engine (CPU)\n")
    print("Machine: %s, %d threads, torch %s, Python %s.\n" % (cpu_name(), torch.get_num_threads(),
                                                              torch.__version__, platform.python_version()))
    print("| model | layers patched (style / all) | attn2 time off | style-only | all blocks | K/V cache style / all "
          "| peak RSS added style / all |")
    print("|---|---|---|---|---|---|---|")
    for arch in ("sd15", "sdxl"):
        med, kv, n = bench_overhead(arch, reps)
        peaks = {m: child_peak(arch, m) for m in ("off", "style", "all")}
        n_style, n_all = n["style"], n["all"]
        print("| %s | %d / %d | %.0f ms | x%.3f (+%.1f ms) | x%.3f (+%.1f ms) | %.1f / %.1f KiB | %.1f / %.1f MiB |" % (
            arch, n_style, n_all, med["off"] * 1e3, med["style"] / med["off"], (med["style"] - med["off"]) * 1e3,
            med["all"] / med["off"], (med["all"] - med["off"]) * 1e3, kv["style"] / 1024, kv["all"] / 1024,
            (peaks["style"] - peaks["off"]) / 1024, (peaks["all"] - peaks["off"]) / 1024))
    t_img, t_plus, t_txt = bench_encoders(max(2, reps // 2))
    print("\n| encoder (random init, real size) | time per call |\n|---|---|")
    print("| ViT-H/14 image encoder, 1 reference (preprocess + image_embeds, plain) | %.0f ms |" % (t_img * 1e3))
    print("| ViT-H/14 image encoder, 1 reference (penultimate tokens, plus) | %.0f ms |" % (t_plus * 1e3))
    print("| open_clip ViT-H-14 text tower, 1 content text | %.0f ms |" % (t_txt * 1e3))


if __name__ == "__main__":
    main()
