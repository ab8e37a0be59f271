"""Tiny IP-Adapters and CLIP image encoders that fit the tiny checkpoints, written into a web UI's models
folder (models/stylus/, where Stylus lists them in its dropdowns, so the HTTP-only tests find them through
/sdapi/v1/script-info). Nothing is downloaded; output is deterministic.

    python -m tests.e2e.make_style_models WEBUI/models

Per checkpoint found in WEBUI/models/Stable-diffusion (tiny-sd15, tiny-sdxl):
  stylus/ip-adapter_<ckpt>.safetensors   IP-Adapter "plain" layout with the published key names
                                         (image_proj.proj/norm, ip_adapter.{2j+1}.to_{k,v}_ip.weight);
                                         to_k_ip / to_v_ip have the shape of the checkpoint's own attn2.to_k
  stylus/<ckpt>_image_encoder/           transformers CLIPVisionModelWithProjection (config + safetensors)
  stylus/CLIP-ViT-H-14-laion2B/          a tiny CLIPTextModelWithProjection + tokenizer, in the folder and
                                         files where Stylus looks for the ViT-H text tower (SD1.5 content)
The image embedding width: SD1.5 24, the projection width of that tiny text tower; SDXL 96, the width of the
tiny SDXL's second text encoder's projection, so content text is subtracted through that encoder as on SDXL.
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


def vit_h_text_tower(models: str, out: str, width: int) -> None:
    """The SD1.5 content text's tower, tiny: CLIP text layout, projected to the tiny SD1.5 adapter's width."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizerFast
    torch.manual_seed(3)
    config = CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            projection_dim=width, max_position_embeddings=77)
    CLIPTextModelWithProjection(config).eval().save_pretrained(out, safe_serialization=True)
    # the tiny SD1.5 tokenizer (openai's ids); the fast one also writes tokenizer.json
    CLIPTokenizerFast.from_pretrained(os.path.join(models, "tiny-sd15-clip")).save_pretrained(out)


def main(models: str) -> None:
    out = os.path.join(models, "stylus")
    os.makedirs(out, exist_ok=True)
    for stem, (arch, clip_dim) in CHECKPOINTS.items():
        ckpt = os.path.join(models, "Stable-diffusion", stem + ".safetensors")
        if not os.path.isfile(ckpt):
            print(f"skip {stem}: {ckpt} not found")
            continue
        tensors = adapter(header_shapes(ckpt), arch, clip_dim)
        save_file(tensors, os.path.join(out, f"ip-adapter_{stem}.safetensors"))
        encoder = os.path.join(out, f"{stem}_image_encoder")
        tiny_vision_model(projection_dim=clip_dim).save_pretrained(encoder, safe_serialization=True)
        print(f"{stem}: {out}/ip-adapter_{stem}.safetensors, {encoder}")
        if arch == "sd15":
            tower = os.path.join(out, "CLIP-ViT-H-14-laion2B")
            vit_h_text_tower(models, tower, clip_dim)
            print(f"{stem}: content text tower {tower}")


if __name__ == "__main__":
    main(sys.argv[1])
