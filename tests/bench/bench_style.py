#!/usr/bin/env python
"""CPU benchmark of the InstantStyle engine (not collected by pytest).

    python tests/bench/bench_style.py [--quick]

1. Overhead of the patch on all cross-attention (attn2) layers of one UNet call at real SD1.5 (512x512) and
   SDXL (1024x1024) widths, heads and token counts (77 text tokens, 4 IP tokens, batch 2 = cond + uncond
   rows), with the web UI's default torch-2 'sdp'-style forward: off vs style-only vs all blocks, timed
   interleaved in one run.
2. Memory: the K/V cache the patch holds, and the peak RSS each mode adds (measured in a fresh child process).
3. Encoder time per reference image: a randomly initialised, real-size ViT-H/14 CLIPVisionModelWithProjection
   (+ preprocessing), and the open_clip ViT-H-14 text tower for the content text. No download.

    python tests/bench/bench_style.py --threads 1 --part jobs [--root CHECKOUT]

4. Repeated style jobs (issue 11): ``StyleEngine.build`` (what the web UI's Script.process calls) + patch
   install/remove, twice with the same reference, adapter, content text and lambda, in one fresh process per
   model; the time spent loading models (adapter, image encoder, text tower) is measured and subtracted.
   Real-size files with random weights, written once under --models as h94/IP-Adapter ships them (no
   download).
5. Peak RSS of one style job at real encoder sizes, a fresh process per measurement. ``--root`` runs the same
   measurements against another checkout of Stylus (e.g. the code before a change).
"""
import argparse
import inspect
import io
import json
import os
import threading
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if "--root" in sys.argv:  # the Stylus checkout to measure (imports below come from it)
    ROOT = os.path.abspath(sys.argv[sys.argv.index("--root") + 1])
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
           ((0, 1280, 10, 1024), (1, 1280, 10, 1024), (2, 1280, 10, 1024), (3, 640, 2, 4096),
            (4, 640, 2, 4096), (5, 640, 2, 4096))])
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
    """The real attn2 paths and shapes; forward runs just the cross-attention layers (weights tied per width,
    so SDXL's 70 layers fit in memory), each on its real-size hidden states."""

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
                    a.to_out[0].weight, a.to_out[0].bias = (shared[width].to_out[0].weight,
                                                            shared[width].to_out[0].bias)
                shared.setdefault(width, a)
                blocks.append(Block(a))
                self.runs.append((a, (n, width)))
            seq = (self.middle_block if name == "middle_block"
                   else getattr(self, name.split(".")[0])[int(name.split(".")[1])])
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
    table, so one run gives off / style-only / all for the whole set of cross-attention layers of a UNet
    call."""
    # the web UI's default torch-2 optimisation, swapped at class level
    fx.CrossAttention.forward = fx.sdp_forward
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
    cfg = CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                           num_attention_heads=16, image_size=224, patch_size=14, projection_dim=1024,
                           hidden_act="gelu", layer_norm_eps=1e-5)
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

# ---------------------------------------------------------------------------------------------- repeated jobs
# Real CLIP vision towers (laion ViT-H-14 for SD1.5 adapters, ViT-bigG-14 for SDXL ones), 224 px, patch 14.
VISION = {"vit-h": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                        num_attention_heads=16, projection_dim=1024),
          "vit-bigG": dict(hidden_size=1664, intermediate_size=8192, num_hidden_layers=48,
                           num_attention_heads=16, projection_dim=1280)}
# arch -> (encoder, its file dtype, adapter file): h94/IP-Adapter ships models/image_encoder in fp32 (2.5 GB),
# sdxl_models/image_encoder in fp16 (3.7 GB) and the adapters in fp16 (44 MB, 703 MB).
JOBS = {"sd15": ("vit-h", torch.float32, "ip-adapter_sd15.safetensors"),
        "sdxl": ("vit-bigG", torch.float16, "ip-adapter_sdxl.safetensors")}
CONTENT = "a photo of a cat sitting on a sofa"
LAMBDA = 0.5
GiB = 1 << 30


def make_models(folder, arch):
    """Write the adapter and the image encoder folder of ``arch`` with random weights (once)."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    space, enc_dtype, adapter_name = JOBS[arch]
    g = torch.Generator().manual_seed(0)
    enc = os.path.join(folder, space)
    if not os.path.isfile(os.path.join(enc, "model.safetensors")):
        cfg = CLIPVisionConfig(image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5,
                               **VISION[space])
        with torch.device("meta"):
            shapes = {k: (t.shape, t.dtype)
                      for k, t in CLIPVisionModelWithProjection(cfg).state_dict().items()}
        sd = {}
        for k, (shape, dt) in shapes.items():
            if k.endswith("position_ids"):  # transformers 4.30 saves this constant buffer
                sd[k] = torch.arange(shape[-1])[None]
            elif "norm" in k and k.endswith("weight"):  # layer norms near 1 keep activations finite
                sd[k] = torch.ones(shape, dtype=enc_dtype)
            else:
                sd[k] = (torch.randn(shape, generator=g) * 0.02).to(enc_dtype)
        os.makedirs(enc, exist_ok=True)
        save_file(sd, os.path.join(enc, "model.tmp"))
        del sd
        cfg.save_pretrained(enc)
        os.replace(os.path.join(enc, "model.tmp"), os.path.join(enc, "model.safetensors"))
    adapter = os.path.join(folder, adapter_name)
    if not os.path.isfile(adapter):
        layout, ctx_dim = MODELS[arch]
        mods = dict(AttnOnlyUNet(layout, ctx_dim).named_modules())
        clip_dim = VISION[space]["projection_dim"]
        r = lambda *shape: (torch.randn(*shape, generator=g) * 0.02).half()
        sd = {"image_proj.proj.weight": r(IP_TOKENS * ctx_dim, clip_dim),
              "image_proj.proj.bias": r(IP_TOKENS * ctx_dim),
              "image_proj.norm.weight": torch.ones(ctx_dim).half(), "image_proj.norm.bias": r(ctx_dim)}
        for layer in table(arch):
            width = mods[layer.ldm].to_k.out_features
            for name in ("to_k_ip", "to_v_ip"):
                sd["ip_adapter.%d.%s.weight" % (layer.number, name)] = r(width, ctx_dim)
        save_file(sd, adapter + ".tmp")
        os.replace(adapter + ".tmp", adapter)
    return adapter, enc


class HostText:
    """Stands in for the SDXL checkpoint's own second text encoder (the host's, already resident: not a Stylus
    load). Its forward is not timed in the first job; in later jobs the content embedding is remembered."""
    key = ("sdxl text encoder 2", "bench checkpoint", 1280)

    def __call__(self, texts):
        return torch.randn(len(texts), 1280, generator=torch.Generator().manual_seed(3))


class LazyText:
    """As the web UI layer hands the ViT-H text tower to the engine: a new object per job, loaded only when
    called (``key`` lets an engine that remembers embeddings skip it)."""

    def __init__(self, loads):
        self.key, self.loads, self.model = ("vit-h text tower", "bench", "torch.float32"), loads, None

    def __call__(self, texts):
        if self.model is None:
            from lib_stylus.style import load_open_clip_text
            t0 = time.perf_counter()
            self.model = load_open_clip_text("ViT-H-14")  # real-size text tower, random init
            self.loads.append(time.perf_counter() - t0)
        return self.model(texts)


def reference_png():
    """A 1536x1024 photo-sized reference, as uploaded (PNG bytes, decoded afresh per job)."""
    from PIL import Image
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (1024, 1536, 3), generator=g, dtype=torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def timed_loads(loads):
    """Count the time the engine spends in its model loaders (looked up in its module at call time)."""
    import lib_stylus.style.engine as engine_module
    for name in ("load_ip_adapter", "load_clip_vision"):
        fn = getattr(engine_module, name)

        def wrapper(*a, _fn=fn, **k):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                loads.append(time.perf_counter() - t0)
        setattr(engine_module, name, wrapper)


def decoded(png):
    """The reference as the web UI's image box hands it to Script.process: a decoded PIL image (a new object
    per job). Through the API, Stylus decodes the base64 PNG itself: that decode is timed apart (see
    bench_jobs)."""
    from PIL import Image
    im = Image.open(io.BytesIO(png))
    im.load()
    return im


def one_job(engine, unet, adapter, encoder, image, text):
    """One style job as Script.process runs it: build (host's CPU device, float32), install, remove."""
    kwargs = dict(content_text=CONTENT, text_encoder=text, lam=LAMBDA, blocks="style", scale=1.0)
    if "device" in inspect.signature(engine.build).parameters:  # the code before issue 11 took the UNet's
        kwargs.update(device=torch.device("cpu"), dtype=torch.float32)
    patch, toks = engine.build(unet, adapter, encoder, [image], **kwargs)
    patch.install()
    patch.remove()
    return toks


def run_jobs(arch, folder):
    """Child: two jobs with the same reference; JSON with each job's total, load and Stylus-work seconds."""
    from lib_stylus.style import StyleEngine
    adapter, encoder = make_models(folder, arch)
    loads = []
    timed_loads(loads)
    layout, ctx_dim = MODELS[arch]
    unet = AttnOnlyUNet(layout, ctx_dim).eval()
    engine = StyleEngine()
    png = reference_png()
    out = []
    for _ in range(2):
        loads.clear()
        text = LazyText(loads) if arch == "sd15" else HostText()
        t0 = time.perf_counter()
        image = decoded(png)
        decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        toks = one_job(engine, unet, adapter, encoder, image, text)
        total = time.perf_counter() - t0
        out.append({"total": total, "loads": sum(loads), "work": total - sum(loads),
                    "subtracted": toks.subtracted, "decode": decode})
    print(json.dumps(out))


def rss_now():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))


def run_rss(arch, folder, limit):
    """Child: peak RSS of one style job, and the RSS before it. Ends itself past ``limit`` bytes (shared
    host)."""
    from lib_stylus.style import StyleEngine
    adapter, encoder = make_models(folder, arch)
    layout, ctx_dim = MODELS[arch]
    unet = AttnOnlyUNet(layout, ctx_dim).eval()
    engine = StyleEngine()
    png = reference_png()
    text = HostText() if arch == "sdxl" else None  # SD1.5: no content text here (its tower is a Stylus load)

    def watch():
        while True:
            if rss_now() > limit:
                print(json.dumps({"over": limit}), flush=True)
                os._exit(3)
            time.sleep(0.02)
    threading.Thread(target=watch, daemon=True).start()
    base = rss_now()
    one_job(engine, unet, adapter, encoder, decoded(png), text)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"base": base, "peak": peak, "after": rss_now()}))


def child_json(args, *extra):
    cmd = [sys.executable, __file__, "--threads", str(torch.get_num_threads()), "--root", ROOT,
           "--models", args.models, "--rss-limit-gb", str(args.rss_limit_gb)] + list(extra)
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError("%s failed:\n%s" % (" ".join(extra), out.stderr[-3000:]))
    return json.loads(lines[-1])


def bench_jobs(args):
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    print("\nStylus checkout: %s (%s)\n" % (ROOT, commit))
    for arch in ("sd15", "sdxl"):  # the files first, in their own process (the measuring ones stay clean)
        child_json(args, "--make", arch)
    print("| model (image encoder) | job | total | model loads | Stylus work | content subtracted | "
          "PNG decode (API only) |")
    print("|---|---|---|---|---|---|---|")
    for arch in ("sd15", "sdxl"):
        jobs = child_json(args, "--jobs", arch)
        for n, job in enumerate(jobs, 1):
            print("| %s (%s) | %s | %.2f s | %.2f s | %.1f ms | %s | %.1f ms |" % (
                arch, JOBS[arch][0], ("first", "second, same reference")[n - 1], job["total"], job["loads"],
                job["work"] * 1e3, job["subtracted"], job.get("decode", 0) * 1e3))
    print("\n| model (image encoder) | RSS before the job | peak RSS | peak added by the job |\n"
          "|---|---|---|---|")
    for arch in ("sd15", "sdxl"):
        r = child_json(args, "--rss", arch)
        if "over" in r:
            print("| %s (%s) | – | > %.1f GiB (stopped) | – |" % (arch, JOBS[arch][0], r["over"] / GiB))
            continue
        print("| %s (%s) | %.2f GiB | %.2f GiB | %.2f GiB |" % (
            arch, JOBS[arch][0], r["base"] / GiB, r["peak"] / GiB, (r["peak"] - r["base"]) / GiB))


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except Exception:
        return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (default: torch's choice); use 1 when another job shares the "
                         "cores, or every parallel op waits for a descheduled thread")
    ap.add_argument("--part", choices=("engine", "jobs", "all"), default="all",
                    help="engine: sections 1-3; jobs: repeated jobs and peak RSS (4-5)")
    ap.add_argument("--root", default=ROOT, help="the Stylus checkout to measure (default: this one)")
    ap.add_argument("--models", default=os.path.join("/tmp", "stylus-bench-models"),
                    help="where the real-size random-weight model files are written once")
    ap.add_argument("--rss-limit-gb", type=float, default=12.0,
                    help="a job process ends itself past this RSS")
    ap.add_argument("--child", nargs=2, metavar=("ARCH", "MODE"))
    ap.add_argument("--make", metavar="ARCH")
    ap.add_argument("--jobs", metavar="ARCH")
    ap.add_argument("--rss", metavar="ARCH")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        return run_child(*args.child)
    if args.make:
        make_models(args.models, args.make)
        print("{}")
        return
    if args.jobs:
        return run_jobs(args.jobs, args.models)
    if args.rss:
        return run_rss(args.rss, args.models, args.rss_limit_gb * GiB)
    print("## InstantStyle engine (CPU)\n")
    print("Machine: %s, %d threads, torch %s, Python %s.\n" % (cpu_name(), torch.get_num_threads(),
                                                              torch.__version__, platform.python_version()))
    if args.part in ("engine", "all"):
        bench_engine(3 if args.quick else 9)
    if args.part in ("jobs", "all"):
        bench_jobs(args)


def bench_engine(reps):
    print("| model | layers patched (style / all) | attn2 time off | style-only | all blocks | "
          "K/V cache style / all | peak RSS added style / all |")
    print("|---|---|---|---|---|---|---|")
    for arch in ("sd15", "sdxl"):
        med, kv, n = bench_overhead(arch, reps)
        peaks = {m: child_peak(arch, m) for m in ("off", "style", "all")}
        n_style, n_all = n["style"], n["all"]
        print(("| %s | %d / %d | %.0f ms | x%.3f (+%.1f ms) | x%.3f (+%.1f ms) | %.1f / %.1f KiB | "
               "%.1f / %.1f MiB |") % (
            arch, n_style, n_all, med["off"] * 1e3,
            med["style"] / med["off"], (med["style"] - med["off"]) * 1e3,
            med["all"] / med["off"], (med["all"] - med["off"]) * 1e3, kv["style"] / 1024, kv["all"] / 1024,
            (peaks["style"] - peaks["off"]) / 1024, (peaks["all"] - peaks["off"]) / 1024))
    t_img, t_plus, t_txt = bench_encoders(max(2, reps // 2))
    print("\n| encoder (random init, real size) | time per call |\n|---|---|")
    print("| ViT-H/14 image encoder, 1 reference (preprocess + image_embeds, plain) | %.0f ms |"
          % (t_img * 1e3))
    print("| ViT-H/14 image encoder, 1 reference (penultimate tokens, plus) | %.0f ms |" % (t_plus * 1e3))
    print("| open_clip ViT-H-14 text tower, 1 content text | %.0f ms |" % (t_txt * 1e3))


if __name__ == "__main__":
    main()
