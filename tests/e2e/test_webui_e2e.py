"""End-to-end against a RUNNING web UI with Stylus installed: set STYLUS_WEBUI_URL (e.g. http://127.0.0.1:7861,
started with --api, the tiny-sd15 checkpoint and its three LoRAs, see ../shared/tiny-sd15/README.md).
Only HTTP: nothing here builds or starts the web UI. Without the variable these tests are not collected."""
import json
import os
import time
import urllib.request

import pytest

URL = os.environ.get("STYLUS_WEBUI_URL", "").rstrip("/")

BASE = {"steps": 4, "width": 64, "height": 64, "seed": 1234, "sampler_name": "Euler a", "batch_size": 1}


def call(path, body=None, timeout=120):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data, {"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def stylus(*args):
    return {"alwayson_scripts": {"stylus": {"args": list(args)}}}


def txt2img(prompt, **extra):
    out = call("/sdapi/v1/txt2img", {**BASE, "prompt": prompt, **extra})
    return out["images"], json.loads(out["info"])


@pytest.fixture(scope="module", autouse=True)
def index_ready():
    call("/stylus/v1/refresh?wait=true", {})
    deadline = time.time() + 60
    while call("/stylus/v1/status")["state"] != "ready" and time.time() < deadline:
        time.sleep(0.5)
    assert call("/stylus/v1/status")["cards"] >= 3


def test_compose_route_picks_from_the_webui_library():
    out = call("/stylus/v1/compose", {"prompt": "a house by the lake, watercolor painting", "seed": 1})
    assert out["picked"] == ["tiny_watercolor"] and "<lora:tiny_watercolor:" in out["prompt"]


def test_txt2img_applies_the_picked_lora_and_the_infotext_tells():
    images, info = txt2img("a house by the lake, watercolor painting", **stylus(True, True, 4, 0.8, True, "off"))
    text = info["infotexts"][0]
    assert "<lora:tiny_watercolor:" in info["prompt"]
    assert 'Lora hashes: "tiny_watercolor' in text  # the web UI really activated it
    assert 'Stylus LoRAs: "tiny_watercolor:' in text
    plain, _ = txt2img("a house by the lake, watercolor painting")
    assert images[0] != plain[0]


def test_disabled_stylus_is_bit_identical_to_no_stylus():
    off, info = txt2img("a house by the lake, watercolor painting", **stylus(False, True, 4))
    plain, _ = txt2img("a house by the lake, watercolor painting")
    assert off == plain and "Stylus" not in info["infotexts"][0]


def test_batch_gets_one_adapter_set_and_every_infotext_is_true():
    images, info = txt2img("a city street, cyberpunk neon, watercolor painting", batch_size=2, n_iter=2,
                           **stylus(True, True, 4, 0.8, True, "per image"))
    prompts = info["all_prompts"]
    assert prompts[0].count("<lora:") == prompts[1].count("<lora:") and len(info["infotexts"]) == 4
    for prompt, text in zip(prompts, info["infotexts"]):
        stylus_part = text.split("Stylus LoRAs:")[1].split("Stylus max")[0]
        for name in ("tiny_watercolor", "tiny_cyberpunk"):
            assert (f"<lora:{name}:" in prompt) == (name in text.split("Lora hashes:")[-1]) == (name in stylus_part)


def test_unknown_script_args_types_do_not_break_generation():
    images, info = txt2img("a dog", **stylus(True, "yes", "many", None, 1, "sideways"))
    assert len(images) == 1
