"""Reference style end-to-end against a running web UI with a tiny checkpoint (SD1.5 or SDXL): the tiny
IP-Adapter and CLIP image encoder fitting it are in the host's models/stylus (tests/e2e/make_style_models.py);
the tests pass their paths, as the Stylus dropdowns list them, as the script's args. Only HTTP talks to
the host.
More configurations (presets, content text, img2img, FP8, scripts, hires, interrupt): test_host_e2e.py."""
import json

import pytest

from tests.e2e.client import BASE, call, gen, listed, lora, style_args, style_files


@pytest.fixture(scope="module")
def files():
    return style_files()


def test_style_changes_the_image_and_is_removed_afterwards(files):
    plain, _ = gen()
    styled, info = gen(**style_args(files))
    assert styled != plain and "Stylus style strength: 1.0" in info
    after, _ = gen()
    assert after == plain  # the UNet was restored exactly


def test_both_features_in_one_generation(files):
    prompt = "a house, tiny watercolor"  # the tiny LoRA by its name: see test_webui_e2e.HOUSE
    out = call("/sdapi/v1/txt2img", {**BASE, "prompt": prompt, **style_args(files, lora_on=True)})
    text = json.loads(out["info"])["infotexts"][0]
    assert "Stylus LoRAs" in text and "Stylus style strength" in text
    picked_watercolor = f"<lora:{lora('watercolor')}:" in json.loads(out["info"])["prompt"]
    assert picked_watercolor or len(listed()) > 3  # with only the tiny LoRAs, watercolor is the answer
    if picked_watercolor:
        assert f'Lora hashes: "{lora("watercolor")}' in text


def test_missing_adapter_file_is_reported_and_generation_runs(files):
    adapter, encoder = files
    img, info = gen(**style_args((adapter + ".missing", encoder)))
    plain, _ = gen()
    assert img == plain and "Stylus style" not in info
