"""The files that sit beside a LoRA: Civitai Helper's .civitai.info, the web UI's .json, text notes, previews.
Each reader returns what it could use plus one-line reasons for what it could not; none of them raises."""
from __future__ import annotations

import math
import os
import re

from ..text import collapse, split_words_list, strip_html
from .untrusted import Unusable, not_regular, read_json, read_regular

PREVIEW_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
PREVIEW_SUFFIXES = PREVIEW_EXTS + tuple(".preview" + e for e in PREVIEW_EXTS)
MAX_SAMPLE_WEIGHT = 10.0  # a <lora:x:w> weight beyond this in a sample prompt is a typo, not advice
_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]+):\s*(-?\d+(?:\.\d+)?)", re.I)


def _read_object(path: str, label: str) -> tuple[dict, list[str]]:
    try:
        data = read_json(path)
    except Unusable as e:
        return {}, [f"{label} {e}"]
    if not isinstance(data, dict):
        return {}, [f"{label} is not a JSON object"]
    return data, []


def civitai_info(path: str, stem: str, alias: str) -> tuple[dict, list[str]]:
    data, faults = _read_object(path, ".civitai.info")
    if faults:
        return {}, faults
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    out = {
        "title": _str(model.get("name")),
        "version": _str(data.get("name")),
        "base_model": _str(data.get("baseModel")),
        "tags": [t for t in (model.get("tags") or []) if isinstance(t, str)]
                if isinstance(model.get("tags"), list) else [],
        "trigger_words": split_words_list(data.get("trainedWords")),
        "description": collapse(strip_html(_str(model.get("description"))) + " "
                                + strip_html(_str(data.get("description")))),
        "nsfw": bool(model.get("nsfw")) if isinstance(model.get("nsfw"), bool) else False,
    }
    out["sample_prompts"], out["sample_weights"] = _samples(data.get("images"), {stem.lower(), alias.lower()})
    for key in ("trainedWords", "images"):
        if key in data and data[key] is not None and not isinstance(data[key], list):
            faults.append(f".civitai.info: {key} is not a list")
    return out, faults


def _samples(images, names: set[str]) -> tuple[list[str], list[float]]:
    prompts, weights = [], []
    for image in images if isinstance(images, list) else []:
        meta = image.get("meta") if isinstance(image, dict) else None
        prompt = meta.get("prompt") if isinstance(meta, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            continue
        prompts.append(prompt)
        for name, weight in _LORA_TAG.findall(prompt):
            if name.strip().lower() in names and abs(float(weight)) <= MAX_SAMPLE_WEIGHT:
                weights.append(float(weight))
    return prompts[:10], weights


_WEBUI_FIELDS = {"description": str, "sd version": str, "activation text": str,
                 "preferred weight": (int, float), "negative text": str, "notes": str}
_HTML_FIELDS = ("description", "notes")  # shown as text like every other description source; may hold HTML


def webui_json(path: str) -> tuple[dict, list[str]]:
    """The web UI's user-metadata sidecar. Wrong-typed fields are dropped one by one; the rest is kept."""
    data, faults = _read_object(path, ".json sidecar")
    if faults:
        return {}, faults
    out, bad = {}, []
    for key, kind in _WEBUI_FIELDS.items():
        if key not in data or data[key] is None and key != "preferred weight":
            continue
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            bad.append(key)
            continue
        out[key] = strip_html(value) if key in _HTML_FIELDS else value
    faults = [f".json sidecar: wrong type for {', '.join(repr(k) for k in bad)}"] if bad else []
    return out, faults


def text_notes(base: str, siblings: set[str]) -> tuple[str, list[str]]:
    """(text of <stem>.description.txt or else <stem>.txt, one-line reasons for what could not be read)."""
    name = os.path.basename(base)
    for suffix in (".description.txt", ".txt"):
        if name + suffix not in siblings:
            continue
        try:
            return strip_html(read_regular(base + suffix).decode("utf-8", "replace")), []
        except Unusable as e:
            return "", [f"{suffix} {e}"]
    return "", []


def previews(base: str, siblings: set[str]) -> list[str]:
    """The web UI's preview order: <stem>.<ext>, then <stem>.preview.<ext>; regular files only (the UI shows
    them)."""
    name = os.path.basename(base)
    found = []
    for suffix in PREVIEW_SUFFIXES:
        if name + suffix in siblings and _regular(base + suffix):
            found.append(base + suffix)
    return found


def _regular(path: str) -> bool:
    try:
        return not not_regular(os.stat(path).st_mode)
    except OSError:
        return False


def _str(value) -> str:
    return value if isinstance(value, str) else ""
