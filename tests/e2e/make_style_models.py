"""Tiny IP-Adapters and CLIP image encoders that fit the tiny checkpoints, written into a web UI's models folder
(models/stylus/, where Stylus lists them in its dropdowns, so the HTTP-only tests find them through
/sdapi/v1/script-info). Nothing is downloaded; output is deterministic.

    python -m tests.e2e.make_style_models WEBUI/models

Per checkpoint found in WEBUI/models/Stable-diffusion (tiny-sd15, tiny-sdxl):
  stylus/ip-adapter_<ckpt>.safetensors   IP-Adapter "plain" layout with the published key names
                                         (image_proj.proj/norm, ip_adapter.{2j+1}.to_{k,v}_ip.weight);
                                         to_k_ip / to_v_ip have the shape of the checkpoint's own attn2.to_k
  stylus/<ckpt>_image_encoder/           transformers CLIPVisionModelWithProjection (config.json + safetensors)
The image embedding width: SD1.5 24 (any width works there, no text tower is used); SDXL 96, the width of the
tiny SDXL's second text encoder's projection, so content text is subtracted through that encoder as on real SDXL.
"""
import json
import os
import struct
import sys

import torch
from safetensors.torch import save_file

from lib_stylus.style.blocks import table
from tests.style_fixtures import tiny_vision_model

# checkpoint stem -> (Stylus arch, image embedding width)
CHECKPOINTS = {"tiny-sd15": ("sd15", 24), "tiny-sdxl": ("sdxl", 96)}
TOKENS = 4
UNET = "model.diffusion_model."


def header_shapes(path: str) -> dict:
    """Tensor shapes from a safetensors header (no tensor is read)."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def adapter(shapes: dict, arch: str, clip_dim: int, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)

    def rand(*size):
        return torch.randn(*size, generator=g) * 0.2
    first = table(arch)[0]
    ctx = shapes[UNET + first.ldm + ".to_k.weight"][1]  # the text-token width the UNet attends to
    sd = {"image_proj.proj.weight": rand(TOKENS * ctx, clip_dim), "image_proj.proj.bias": rand(TOKENS * ctx),
          "image_proj.norm.weight": 1 + rand(ctx), "image_proj.norm.bias": rand(ctx)}
    for layer in table(arch):
        out_features, in_features = shapes[UNET + layer.ldm + ".to_k.weight"]
        for name in ("to_k_ip", "to_v_ip"):
            sd[f"ip_adapter.{layer.number}.{name}.weight"] = rand(out_features, in_features)
    return sd


def main(models: str) -> None:
    out = os.path.join(models, "stylus")
    os.makedirs(out, exist_ok=True)
    for stem, (arch, clip_dim) in CHECKPOINTS.items():
        ckpt = os.path.join(models, "Stable-diffusion", stem + ".safetensors")
        if not os.path.isfile(ckpt):
            print(f"skip {stem}: {ckpt} not found")
            continue
        save_file(adapter(header_shapes(ckpt), arch, clip_dim), os.path.join(out, f"ip-adapter_{stem}.safetensors"))
        encoder = os.path.join(out, f"{stem}_image_encoder")
        tiny_vision_model(projection_dim=clip_dim).save_pretrained(encoder, safe_serialization=True)
        print(f"{stem}: {out}/ip-adapter_{stem}.safetensors, {encoder}")


if __name__ == "__main__":
    main(sys.argv[1])
