"""The demo's sample LoRA library: ~30 real-looking cards written as tiny real kohya files with Civitai and
web UI sidecars, plus two deliberately broken files so the demo shows how problems are reported."""
from __future__ import annotations

import json
import os

from .loras import write_lora

CARDS_FILE = os.path.join(os.path.dirname(__file__), "cards.json")


def sample_cards() -> list:
    with open(CARDS_FILE, encoding="utf-8") as f:
        return json.load(f)


def build_sample_library(folder: str) -> str:
    """Write the sample library into folder (idempotent: identical files are not rewritten)."""
    os.makedirs(folder, exist_ok=True)
    if os.path.isfile(os.path.join(folder, ".stylus-demo-complete")):
        return folder
    for i, card in enumerate(sample_cards()):
        write_lora(folder, card, seed=i)
    with open(os.path.join(folder, "half_downloaded.safetensors"), "wb") as f:
        f.write((10_000).to_bytes(8, "little") + b'{"__metadata__": {"ss_output_name": "half')  # cut off
    with open(os.path.join(folder, "corgi_dog.civitai.info"), "w", encoding="utf-8") as f:
        f.write('{"model": {"name": "Corgi Dog", "tags": ["dog"')  # Civitai Helper interrupted
    open(os.path.join(folder, ".stylus-demo-complete"), "w").close()
    return folder
