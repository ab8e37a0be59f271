"""Reference style end-to-end against a running web UI with the tiny SD1.5 checkpoint: the test writes a tiny
IP-Adapter (real key names, the tiny model's widths) and a tiny CLIP image encoder to a temp folder on the same
machine and passes their paths as the script's args. Only HTTP talks to the web UI."""
import base64
import io
import json

import pytest
from PIL import Image
from safetensors.torch import save_file

from tests.e2e.test_webui_e2e import BASE, call
from tests.style_fixtures import adapter_state_dict, tiny_sd15, tiny_vision_model


@pytest.fixture(scope="module")
def style_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("style")
    save_file({k: v.contiguous() for k, v in adapter_state_dict(tiny_sd15(), "sd15", clip_dim=24).items()},
              str(root / "ip-adapter_tiny.safetensors"))
    tiny_vision_model(projection_dim=24).save_pretrained(str(root / "image_encoder"), safe_serialization=True)
    return str(root / "ip-adapter_tiny.safetensors"), str(root / "image_encoder")


def b64_image(color=(200, 40, 40)):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def style_args(files, scale=1.0, blocks="all", lora=False):
    adapter, encoder = files
    return {"alwayson_scripts": {"stylus": {"args": [True, lora, 4, 0.8, True, "off", "local", True, b64_image(), "",
                                                     0.5, scale, blocks, "", adapter, encoder]}}}


def gen(path="/sdapi/v1/txt2img", **extra):
    out = call(path, {**BASE, "prompt": "a house", **extra})
    return pixels(out["images"][0]), json.loads(out["info"])["infotexts"][0]


def pixels(b64: str) -> bytes:
    """Decoded pixels: the PNG bytes also carry the infotext, which differs whenever a parameter does."""
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB").tobytes()


def test_style_changes_the_image_and_is_removed_afterwards(style_files):
    plain, _ = gen()
    styled, info = gen(**style_args(style_files))
    assert styled != plain and "Stylus style strength: 1.0" in info
    after, _ = gen()
    assert after == plain  # the UNet was restored exactly


def test_scale_zero_is_bit_identical_to_no_style(style_files):
    plain, _ = gen()
    zero, _ = gen(**style_args(style_files, scale=0.0))
    assert zero == plain


def test_only_chosen_blocks_style_and_all_blocks_differ(style_files):
    style_only, _ = gen(**style_args(style_files, blocks="style"))
    everywhere, _ = gen(**style_args(style_files, blocks="all"))
    plain, _ = gen()
    assert style_only not in (plain, everywhere)


def test_img2img_and_inpainting(style_files):
    init = b64_image((20, 120, 200))
    plain, _ = gen("/sdapi/v1/img2img", init_images=[init], denoising_strength=0.8)
    styled, info = gen("/sdapi/v1/img2img", init_images=[init], denoising_strength=0.8, **style_args(style_files))
    assert styled != plain and "Stylus style strength" in info
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # inpaint the left half only
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    inpainted, info = gen("/sdapi/v1/img2img", init_images=[init], mask=base64.b64encode(buf.getvalue()).decode(),
                          denoising_strength=0.8, mask_blur=0, inpaint_full_res=False, **style_args(style_files))
    assert "Stylus style strength" in info
    out = Image.frombytes("RGB", (64, 64), inpainted)
    right = [out.getpixel((x, y)) for x in range(40, 64) for y in range(64)]
    assert all(max(abs(a - b) for a, b in zip(px, (20, 120, 200))) <= 2 for px in right)  # outside the mask: kept
    assert out.getpixel((8, 32)) != (20, 120, 200)


def test_both_features_in_one_generation(style_files):
    out = call("/sdapi/v1/txt2img", {**BASE, "prompt": "a house, watercolor painting", **style_args(style_files, lora=True)})
    text = json.loads(out["info"])["infotexts"][0]
    assert "Stylus LoRAs" in text and "Stylus style strength" in text and 'Lora hashes: "tiny_watercolor' in text


def test_missing_adapter_file_is_reported_and_generation_runs(style_files):
    adapter, encoder = style_files
    img, info = gen(**style_args((adapter + ".missing", encoder)))
    plain, _ = gen()
    assert img == plain and "Stylus style" not in info
