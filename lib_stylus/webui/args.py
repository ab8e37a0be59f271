"""The script's arguments as ONE object. Every field carries its position in ui() (= the API's positional
`alwayson_scripts` args), its default and, where it is written to the infotext, its infotext key."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MASKING = ("per image", "same for all images", "off")
COMPOSERS = ("local", "LLM endpoint")
BLOCK_PRESETS = ("style", "style+layout", "all", "custom")


def _f(default, infotext: str | None = None):
    return field(default=default, metadata={"infotext": infotext})


@dataclass
class StylusArgs:
    enabled: bool = _f(False)
    lora_enabled: bool = _f(True)
    max_adapters: int = _f(4, "Stylus max LoRAs")
    weight_multiplier: float = _f(0.8, "Stylus multiplier")
    add_triggers: bool = _f(True, "Stylus triggers")
    masking: str = _f("per image", "Stylus masking")
    composer: str = _f("local", "Stylus composer")
    style_enabled: bool = _f(False)
    style_image: object = _f(None)          # PIL image (UI) or base64 string (API)
    content_text: str = _f("", "Stylus style content")
    content_lambda: float = _f(0.5, "Stylus style lambda")
    style_scale: float = _f(1.0, "Stylus style strength")
    blocks_preset: str = _f("style", "Stylus style blocks")
    custom_blocks: str = _f("", "Stylus style custom blocks")
    ip_adapter: str = _f("auto", "Stylus IP-Adapter")
    image_encoder: str = _f("auto", "Stylus image encoder")

    @classmethod
    def from_script_args(cls, args) -> "StylusArgs":
        """Positional args as the web UI passes them (fewer from the API: the rest keep their defaults).
        A single dict is accepted too, keyed by field name."""
        if args and isinstance(args[0], dict):  # the host pads the API's args with ui() defaults
            values = args[0]
        else:
            values = {f.name: v for f, v in zip(dataclasses.fields(cls), args)}
        out = cls()
        for f in dataclasses.fields(cls):
            if f.name in values and values[f.name] is not None:
                setattr(out, f.name, _coerce(values[f.name], f.default))
        out.masking = out.masking if out.masking in MASKING else "per image"
        out.composer = out.composer if out.composer in COMPOSERS else "local"
        out.blocks_preset = out.blocks_preset if out.blocks_preset in BLOCK_PRESETS else "style"
        out.max_adapters = max(0, min(12, out.max_adapters))
        return out

    @property
    def lora_on(self) -> bool:
        return bool(self.enabled and self.lora_enabled)

    @property
    def style_on(self) -> bool:
        return bool(self.enabled and self.style_enabled and self.style_image is not None)


def infotext_keys() -> dict:
    """field name -> infotext key, for the fields that are written to / restored from the infotext."""
    return {f.name: f.metadata["infotext"] for f in dataclasses.fields(StylusArgs)
            if f.metadata.get("infotext")}


def field_names() -> list:
    return [f.name for f in dataclasses.fields(StylusArgs)]


def _coerce(value, default):
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return default
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            return default
    if isinstance(default, str):
        return str(value)
    return value
