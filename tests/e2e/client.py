"""HTTP helpers for the end-to-end tests: they talk to a RUNNING web UI (STYLUS_WEBUI_URL) and nothing else.
The host is built and started by tests/e2e/build_host.sh; the tests adapt to the checkpoint it has loaded
(tiny-sd15 or tiny-sdxl) and find the tiny style models through the Stylus dropdowns
(/sdapi/v1/script-info)."""
import base64
import io
import json
import os
import urllib.request

import pytest
from PIL import Image

URL = os.environ.get("STYLUS_WEBUI_URL", "").rstrip("/")

BASE = {"steps": 4, "width": 64, "height": 64, "seed": 1234, "sampler_name": "Euler a", "batch_size": 1}


def call(path, body=None, timeout=300):
    data = json.dumps(body).encode() if body is not None else None
    method = "POST" if body is not None else "GET"
    req = urllib.request.Request(URL + path, data, {"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def pixels(b64: str) -> bytes:
    """Decoded pixels: the PNG bytes also carry the infotext, which differs whenever a parameter does."""
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB").tobytes()


def gen(path="/sdapi/v1/txt2img", **extra):
    """One image: (its RGB bytes, its infotext)."""
    out = call(path, {**BASE, "prompt": "a house", **extra})
    return pixels(out["images"][0]), json.loads(out["info"])["infotexts"][0]


def b64_png(image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def b64_image(color=(200, 40, 40), size=64):
    return b64_png(Image.new("RGB", (size, size), color))


def checkpoint() -> str:
    """The loaded checkpoint's file stem, e.g. tiny-sdxl."""
    title = call("/sdapi/v1/options")["sd_model_checkpoint"]
    return os.path.splitext(title.split(" [")[0])[0]


def is_sdxl() -> bool:
    return "sdxl" in checkpoint()


def is_forge() -> bool:
    return "forge_unet_storage_dtype" in call("/sdapi/v1/options")


def lora(topic: str) -> str:
    """The tiny model's own LoRA for a topic (watercolor, pixelart, cyberpunk)."""
    return ("tiny_sdxl_" if is_sdxl() else "tiny_") + topic


def listed() -> set:
    """The LoRAs the web UI lists (the tiny model's three, plus any real library in models/Lora)."""
    return {item["name"] for item in call("/sdapi/v1/loras")}


def stylus(*args):
    return {"alwayson_scripts": {"stylus": {"args": list(args)}}}


def _dropdown_choices(label: str) -> list:
    for script in call("/sdapi/v1/script-info"):
        if script["name"] != "stylus" or script["is_img2img"]:
            continue
        for arg in script["args"]:
            if arg.get("label") == label:
                return [c[1] if isinstance(c, (list, tuple)) else c for c in arg.get("choices") or []]
    return []


def style_files() -> tuple:
    """(IP-Adapter, image encoder) written for the loaded tiny checkpoint by tests/e2e/make_style_models.py
    into the host's models/stylus, as the Stylus dropdowns list them."""
    stem = checkpoint()
    adapter_name = f"ip-adapter_{stem}.safetensors"
    encoder_name = f"{stem}_image_encoder"
    adapters = [c for c in _dropdown_choices("IP-Adapter") if os.path.basename(c) == adapter_name]
    encoders = [c for c in _dropdown_choices("Image encoder") if os.path.basename(c) == encoder_name]
    if not adapters or not encoders:
        pytest.fail(f"the host lists no tiny style models for {stem}: run tests/e2e/build_host.sh models "
                    "<host> and restart it (extensions read their dropdowns at start-up)")
    return adapters[0], encoders[0]


def style_args(files, scale=1.0, blocks="all", lora_on=False, content="", lam=0.5, image=None):
    """The Stylus args for a reference-style job (positional, in ui() order)."""
    adapter, encoder = files
    return stylus(True, lora_on, 4, 0.8, True, "off", "local", True, image or b64_image(), content, lam,
                  scale, blocks, "", adapter, encoder)
