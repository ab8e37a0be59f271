"""The files that sit beside a LoRA: Civitai Helper's .civitai.info, the web UI's .json, text notes, previews.
Each reader returns what it could use plus one-line reasons for what it could not; none of them raises."""
from __future__ import annotations

import json
import os
import re

from ..text import collapse, split_words_list, strip_html

PREVIEW_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
MAX_SIDECAR = 16 * 1024 * 1024
_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]+):\s*(-?\d+(?:\.\d+)?)", re.I)


def read_json(path: str) -> tuple[object, str | None]:
    try:
        if os.path.getsize(path) > MAX_SIDECAR:
            return None, "too large"
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        return None, f"unreadable ({e.strerror or e.__class__.__name__})"
    if not raw.strip():
        return None, "empty"
    try:
        return json.loads(raw.decode("utf-8-sig")), None
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except json.JSONDecodeError as e:
        return None, f"invalid JSON (line {e.lineno})"


def civitai_info(path: str, stem: str, alias: str) -> tuple[dict, list[str]]:
    data, err = read_json(path)
    if err:
        return {}, [f".civitai.info {err}"]
    if not isinstance(data, dict):
        return {}, [".civitai.info is not a JSON object"]
    faults: list[str] = []
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    out = {
        "title": _str(model.get("name")),
        "version": _str(data.get("name")),
        "base_model": _str(data.get("baseModel")),
        "tags": [t for t in (model.get("tags") or []) if isinstance(t, str)] if isinstance(model.get("tags"), list) else [],
        "trigger_words": split_words_list(data.get("trainedWords")),
        "description": collapse(strip_html(_str(model.get("description"))) + " " + strip_html(_str(data.get("description")))),
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
            if name.strip().lower() in names:
                weights.append(float(weight))
    return prompts[:10], weights


_WEBUI_FIELDS = {"description": str, "sd version": str, "activation text": str, "preferred weight": (int, float),
                 "negative text": str, "notes": str}


def webui_json(path: str) -> tuple[dict, list[str]]:
    """The web UI's user-metadata sidecar. Wrong-typed fields are dropped one by one; the rest is kept."""
    data, err = read_json(path)
    if err:
        return {}, [f".json sidecar {err}"]
    if not isinstance(data, dict):
        return {}, [".json sidecar is not a JSON object"]
    out, bad = {}, []
    for key, kind in _WEBUI_FIELDS.items():
        if key not in data or data[key] is None and key != "preferred weight":
            continue
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            bad.append(key)
            continue
        out[key] = value
    faults = [f".json sidecar: wrong type for {', '.join(repr(k) for k in bad)}"] if bad else []
    return out, faults


def text_notes(base: str) -> str:
    for path in (base + ".description.txt", base + ".txt"):
        try:
            if os.path.isfile(path) and os.path.getsize(path) <= MAX_SIDECAR:
                with open(path, "r", encoding="utf-8", errors="replace") as f:
                    return strip_html(f.read())
        except OSError:
            continue
    return ""


def previews(base: str, siblings: set[str]) -> list[str]:
    """The web UI's preview order: <stem>.<ext>, then <stem>.preview.<ext>."""
    name = os.path.basename(base)
    found = []
    for suffix in [e for e in PREVIEW_EXTS] + [".preview" + e for e in PREVIEW_EXTS]:
        if name + suffix in siblings:
            found.append(base + suffix)
    return found


def _str(value) -> str:
    return value if isinstance(value, str) else ""
