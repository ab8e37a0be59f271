"""Write tiny but real LoRA files (genuine kohya key names and metadata) with their sidecars.
Used by the demo's sample library and by the tests; ~3 KB per file."""
from __future__ import annotations

import json
import os

import numpy as np

RANK = 4
# (key, in_features) per base family: the layers a real kohya LoRA for that base would carry.
KEYS = {
    "sd1": [("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 768),
            ("lora_te_text_model_encoder_layers_0_mlp_fc1", 768)],
    "sd2": [("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 1024),
            ("lora_te_text_model_encoder_layers_0_mlp_fc1", 1024)],
    "sdxl": [("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 2048),
             ("lora_te1_text_model_encoder_layers_0_mlp_fc1", 768)],
}
KOHYA_VERSION = {"sd1": None, "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}


def write_safetensors(path: str, base: str = "sd1", metadata: dict | None = None, seed: int = 0) -> None:
    from safetensors.numpy import save_file
    rng = np.random.default_rng(seed)
    tensors = {}
    for key, width in KEYS[base]:
        tensors[f"{key}.lora_down.weight"] = (rng.standard_normal((RANK, width)) * 0.01).astype(np.float16)
        tensors[f"{key}.lora_up.weight"] = np.zeros((64, RANK), np.float16)
        tensors[f"{key}.alpha"] = np.array(float(RANK), np.float16)
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(RANK),
            "ss_network_alpha": str(float(RANK)), "ss_v2": str(base == "sd2")}
    if KOHYA_VERSION[base]:
        meta["ss_base_model_version"] = KOHYA_VERSION[base]
    meta.update(metadata or {})
    save_file(tensors, path,
              metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})


def write_lora(folder: str, card: dict, seed: int = 0) -> str:
    """card: {stem, base, title, tags, trigger_words, description, weight, sample_prompts, webui_json,
    base_model}."""
    os.makedirs(folder, exist_ok=True)
    stem, base = card["stem"], card.get("base", "sd1")
    words = card.get("trigger_words", [])
    freq = {f"10_{stem}": {**{w: 40 for w in words}, **{t: 5 for t in card.get("tags", [])}}}
    path = os.path.join(folder, stem + ".safetensors")
    write_safetensors(path, base, {"ss_output_name": card.get("output_name", stem),
                                   "ss_tag_frequency": freq}, seed)
    weight = card.get("weight", 0.8)
    info = {"name": "v1.0",
            "baseModel": card.get("base_model",
                                  {"sd1": "SD 1.5", "sd2": "SD 2.1", "sdxl": "SDXL 1.0"}[base]),
            "trainedWords": words, "description": None,
            "model": {"name": card.get("title", stem), "type": "LORA", "nsfw": False,
                      "tags": card.get("tags", []),
                      "description": card.get("description", "")},
            "images": [{"url": "", "width": 512, "height": 512,
                        "meta": {"prompt": f"{p}, <lora:{stem}:{weight}>"}}
                       for p in card.get("sample_prompts", [])]}
    with open(os.path.join(folder, stem + ".civitai.info"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=4, ensure_ascii=False)
    if card.get("webui_json"):
        side = {"description": card.get("description", ""), "sd version": base.upper(),
                "activation text": ", ".join(words), "preferred weight": weight, "negative text": "",
                "notes": ""}
        with open(os.path.join(folder, stem + ".json"), "w", encoding="utf-8") as f:
            json.dump(side, f, indent=4, ensure_ascii=False)
    return path
