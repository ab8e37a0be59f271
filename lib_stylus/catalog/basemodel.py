"""Which base model a LoRA was trained for. Evidence from strongest to weakest: tensor key names and
shapes (they decide what actually merges), explicit metadata, the Civitai card, the web UI sidecar."""
from __future__ import annotations

import re

# Civitai `baseModel` values -> family. Pony, Illustrious and NoobAI are SDXL fine-tunes: their LoRAs merge
# into SDXL.
_CIVITAI_PATTERNS = [
    (r"^sd ?1(\.\d)?\b", "sd1"),
    (r"^sd ?2(\.\d)?\b", "sd2"),
    (r"^(sdxl|pony|illustrious|noobai|playground v2)", "sdxl"),
    (r"^(flux|sd ?3|stable cascade|svd|pixart|hunyuan|kolors|auraflow|lumina|"
     r"mochi|ltxv|wan|cogvideo|hidream)", "other"),
]


def from_civitai(base_model: str) -> str | None:
    text = (base_model or "").strip().lower()
    if not text or text == "other":
        return "other" if text == "other" else None
    for pattern, family in _CIVITAI_PATTERNS:
        if re.match(pattern, text):
            return family
    return "other"


def from_webui_sidecar(sd_version) -> str | None:
    value = str(sd_version or "").strip().upper()
    return {"SD1": "sd1", "SD2": "sd2", "SDXL": "sdxl"}.get(value)


def from_metadata(meta: dict) -> str | None:
    """kohya / modelspec fields, as the web UI's detect_version reads them (plus modelspec.architecture)."""
    version = meta.get("ss_base_model_version", "").lower()
    if version.startswith("sdxl_"):
        return "sdxl"
    if version.startswith(("sd_v2", "sd_2")):
        return "sd2"
    if version.startswith(("sd_v1", "sd_1")):
        return "sd1"
    if version:
        return "other"  # flux1, sd3, ...: kohya names every non-SD base explicitly
    arch = meta.get("modelspec.architecture", "").lower()
    if arch:
        if "stable-diffusion-xl" in arch:
            return "sdxl"
        if "stable-diffusion-v2" in arch:
            return "sd2"
        if "stable-diffusion-v1" in arch:
            return "sd1"
        return "other"
    if meta.get("ss_v2", "").lower() == "true":
        return "sd2"
    return None


def _in_features(tensors: dict, key_part: str) -> int | None:
    for key, info in tensors.items():
        if key_part in key and key.endswith(("lora_down.weight", "lora_A.weight")):
            shape = info.get("shape") or []
            if len(shape) >= 2:
                return int(shape[1])
    return None


def from_tensors(tensors: dict) -> str | None:
    """Structural evidence: SDXL LoRAs use ldm block names and two text encoders; SD1 vs SD2 by text width."""
    keys = list(tensors)
    if not keys:
        return None
    joined = "\n".join(keys[:4000])
    if re.search(r"(double_blocks|single_blocks|single_transformer_blocks|joint_blocks|"
                 r"transformer_blocks_\d+_ff_context)", joined):
        return "other"  # Flux / SD3 transformer LoRAs
    if "lora_te1_" in joined or "lora_te2_" in joined or "lora_unet_input_blocks_" in joined \
            or "lora_unet_output_blocks_" in joined or "lora_unet_middle_block_" in joined:
        return "sdxl"
    text_width = _in_features(tensors, "lora_te_text_model_encoder_layers_0_mlp_fc1")
    cross_width = _in_features(tensors, "attn2_to_k")
    width = text_width or cross_width
    if width == 768:
        return "sd1"
    if width == 1024:
        return "sd2"
    if width == 2048:
        return "sdxl"
    if "lora_unet_down_blocks_" in joined or "lora_unet_up_blocks_" in joined or "lora_te_" in joined:
        # diffusers-named kohya keys without a telling width: SD1/2 layout
        return "sd1" if not width else None
    return None


def decide(evidence: dict[str, str | None]) -> tuple[str, list[str]]:
    """Pick the family from {source: family}; return (family, disagreements) naming sources that differ."""
    order = ["tensors", "metadata", "civitai", "webui-json"]
    found = [(src, evidence.get(src)) for src in order if evidence.get(src)]
    if not found:
        return "unknown", []
    # Tensors saying "sd1" only by layout is weak when explicit metadata names another SD1-layout family.
    family = found[0][1]
    if found[0][0] == "tensors" and family == "sd1" and evidence.get("metadata") == "sd2":
        family = "sd2"
    label = {"sd1": "SD1", "sd2": "SD2", "sdxl": "SDXL", "other": "other"}
    disagreements = [f"{src} says {label[fam]}" for src, fam in found if fam != family]
    return family, disagreements
