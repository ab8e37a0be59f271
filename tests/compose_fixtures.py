"""Tiny real LoRA libraries for composer tests: a kohya-style .safetensors (header + two fp16 tensors) and a
Civitai Helper .civitai.info per adapter, indexed with the real scanner/refiner/BM25."""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from lib_stylus.index import LibraryIndex
from lib_stylus.retriever import Retriever

SD15_KEY = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
SDXL_KEY = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"


def write_lora(folder: str, stem: str, title: str, tags=(), triggers=(), description: str = "",
               base: str = "SD 1.5", prompts=()) -> None:
    sdxl = base.startswith("SDXL")
    key, width = (SDXL_KEY, 640) if sdxl else (SD15_KEY, 320)
    tensors = {f"{key}.lora_down.weight": np.zeros((4, width), np.float16),
               f"{key}.lora_up.weight": np.zeros((width, 4), np.float16)}
    meta = {"ss_output_name": stem, "ss_network_module": "networks.lora", "ss_network_dim": "4",
            "ss_v2": "False", "ss_tag_frequency": json.dumps({f"10_{stem}": {t: 5 for t in triggers}})}
    if sdxl:
        meta["ss_base_model_version"] = "sdxl_base_v1-0"
    header, blobs, off = {"__metadata__": meta}, [], 0
    for k in sorted(tensors):
        b = tensors[k].tobytes()
        header[k] = {"dtype": "F16", "shape": list(tensors[k].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(os.path.join(folder, stem + ".safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    info = {"name": "v1", "baseModel": base, "trainedWords": list(triggers), "description": description,
            "model": {"name": title, "type": "LORA", "nsfw": False, "tags": list(tags), "description": description},
            "images": [{"url": "", "meta": {"prompt": p}} for p in prompts]}
    with open(os.path.join(folder, stem + ".civitai.info"), "w", encoding="utf-8") as f:
        json.dump(info, f)


# A small library where every rule has something to bite on; filler cards give the statistics (idf, focus)
# a realistic shape: scene words live in descriptions and sample prompts, purpose words in names and tags.
CARDS = [
    dict(stem="cyberpunk_city", title="Cyberpunk City", tags=["cyberpunk", "background", "city"]),
    dict(stem="cyberpunk_style", title="Cyberpunk Style", tags=["cyberpunk", "style"], triggers=["cyberpunk style"]),
    dict(stem="robot_mech", title="Robot Mecha", tags=["robot", "mecha", "concept"]),
    dict(stem="watercolor", title="Watercolor Painting", tags=["watercolor", "style"]),
    dict(stem="ink_wash", title="Ink Wash", tags=["ink", "watercolor", "style"]),
    dict(stem="pixel_art", title="Pixel Art", tags=["pixel art", "style"]),
    dict(stem="chun_li", title="Chun-Li (Street Fighter)", tags=["street fighter", "character"],
         triggers=["chun-li"]),
    dict(stem="sf_style", title="Street Fighter Style", tags=["street fighter", "style"]),
    dict(stem="knight_armor", title="Knight Armor", tags=["armor", "clothing"]),
    dict(stem="sdxl_armor", title="Knight Armor XL", tags=["armor", "clothing"], base="SDXL 1.0"),
    dict(stem="guitar_hero", title="Rock Band Poster", tags=["poster"],
         description="a musician playing guitar on a street, concert lights"),
]
FILLER_SCENES = ["a man walking a dog in the park", "a musician playing guitar on the street",
                 "a boy fishing at a lake", "a woman reading a book in a cafe"]


def build_library(folder: str, extra=()) -> Retriever:
    os.makedirs(folder, exist_ok=True)
    for card in CARDS + list(extra):
        write_lora(folder, **card)
    for i in range(40):  # filler: generic purposes, everyday scenes only in their sample prompts
        write_lora(folder, f"filler_{i}", f"Portrait Helper {i}", tags=["portrait", "woman"],
                   description=FILLER_SCENES[i % 4], prompts=[FILLER_SCENES[(i + 1) % 4]])
    index = LibraryIndex([folder], os.path.join(folder, ".stylus"))
    index.refresh(save=False)
    return Retriever(index)
