"""Tiny real LoRA libraries for composer tests (kohya .safetensors + Civitai Helper .civitai.info per
adapter), indexed with the real scanner/refiner/BM25."""
from __future__ import annotations

import os

from lib_stylus.demo.loras import write_lora as write_card
from lib_stylus.index import LibraryIndex
from lib_stylus.retriever import Retriever

def write_lora(folder: str, stem: str, title: str, tags=(), triggers=(), description: str = "",
               base: str = "SD 1.5", prompts=(), weight: float = 0.8) -> None:
    """One adapter through the project's tiny real LoRA writer (kohya keys and metadata + .civitai.info);
    ``weight`` is the one its sample prompts use (the recommended weight when there are samples)."""
    write_card(folder, {"stem": stem, "title": title, "tags": list(tags), "trigger_words": list(triggers),
                        "description": description, "sample_prompts": list(prompts), "base_model": base,
                        "base": "sdxl" if base.startswith("SDXL") else "sd1", "weight": weight})


# A small library where every rule has something to bite on; filler cards give the statistics (idf, focus)
# a realistic shape: scene words live in descriptions and sample prompts, purpose words in names and tags.
CARDS = [
    dict(stem="cyberpunk_city", title="Cyberpunk City", tags=["cyberpunk", "background", "city"]),
    dict(stem="cyberpunk_style", title="Cyberpunk Style", tags=["cyberpunk", "style"],
         triggers=["cyberpunk style"]),
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


# Two senses of one word ("Whale" the animal, "Whale - Style" a painting style), an attribute's word ("cat"
# of "cat ears") and a garment. With MEANING_COMMON, the filler cards use every one of these words in their
# descriptions, so none is rare: the lexical composer alone must leave them all out.
MEANING_CARDS = [
    dict(stem="whale_style", title="Whale - Style", tags=["painting", "digital art"]),
    dict(stem="whale_animal", title="Whale", tags=["whale", "animal", "ocean"]),
    dict(stem="cute_cat", title="Cute Cat", tags=["cat", "animal"]),
    dict(stem="kimono", title="Kimono", tags=["kimono", "clothing"]),
]
MEANING_COMMON = "whale, cat, kimono, painting"


def write_library(folder: str, extra=(), common: str = "") -> str:
    """CARDS + ``extra`` + 40 fillers as LoRA files in ``folder``; ``common``: words every filler's
    description also uses (so they are not rare in this library)."""
    os.makedirs(folder, exist_ok=True)
    for card in CARDS + list(extra):
        write_lora(folder, **card)
    for i in range(40):  # filler: generic purposes, everyday scenes only in their sample prompts
        write_lora(folder, f"filler_{i}", f"Portrait Helper {i}", tags=["portrait", "woman"],
                   description=", ".join(p for p in (FILLER_SCENES[i % 4], common) if p),
                   prompts=[FILLER_SCENES[(i + 1) % 4]])
    return folder


def build_library(folder: str, extra=(), embedders=None, common: str = "") -> Retriever:
    """write_library(), indexed with ``embedders`` (default BM25 alone)."""
    write_library(folder, extra, common)
    index = LibraryIndex([folder], os.path.join(folder, ".stylus"), embedders)
    index.refresh(save=False)
    return Retriever(index)
