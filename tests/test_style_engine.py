import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import style_fixtures as fx
from lib_stylus.style import StyleEngine, load_clip_vision, load_ip_adapter, subtract_content
from lib_stylus.style.attention import ShapeMismatchError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    unet = fx.tiny_sd15()
    plain, plus = str(d / "ip-adapter_sd15.safetensors"), str(d / "ip-adapter-plus_sd15.bin")
    save_file(fx.adapter_state_dict(unet, "sd15"), plain)
    torch.save(fx.nest(fx.adapter_state_dict(unet, "sd15", "plus", clip_dim=32, tokens=16)), plus)
    fx.tiny_vision_model().save_pretrained(str(d / "image_encoder"))
    return {"plain": plain, "plus": plus, "encoder": str(d / "image_encoder")}


IMG = Image.new("RGB", (48, 40), (200, 30, 90))


def text_fn(texts):  # a stand-in for the adapter's CLIP text tower (same 24-d space)
    return torch.stack([torch.linspace(-1, 1, 24) * len(t) for t in texts])


def test_nothing_is_loaded_until_asked_and_released_after_build(files):
    eng = StyleEngine()
    assert not eng.loaded
    patch, toks = eng.build(fx.tiny_sd15(), files["plain"], files["encoder"], [IMG], "a cat", text_fn, lam=0.5)
    assert not eng.loaded and not patch.installed
    assert toks.subtracted and toks.cond.shape == toks.uncond.shape == (1, 4, fx.CTX)


def test_tokens_are_the_projection_of_image_minus_lambda_text(files):
    _, toks = StyleEngine().build(fx.tiny_sd15(), files["plain"], files["encoder"], [IMG], "a cat", text_fn, lam=0.8)
    ad, enc = load_ip_adapter(files["plain"]), load_clip_vision(files["encoder"])
    style = enc.encode([IMG]) - 0.8 * text_fn(["a cat"])
    assert torch.allclose(toks.cond, ad.project(style), atol=1e-5)
    assert torch.allclose(toks.uncond, ad.project(torch.zeros(1, 24)), atol=1e-6)
    assert torch.allclose(subtract_content(enc.encode([IMG]), text_fn(["a cat"]), 0.8), style)


def test_plus_adapter_says_subtraction_does_not_apply(files):
    _, toks = StyleEngine().build(fx.tiny_sd15(), files["plus"], files["encoder"], [IMG], "a cat", text_fn)
    assert not toks.subtracted and "does not apply" in toks.note
    assert toks.cond.shape == (1, 16, fx.CTX)


def test_missing_text_encoder_is_reported_not_silent(files):
    _, toks = StyleEngine().build(fx.tiny_sd15(), files["plain"], files["encoder"], [IMG], "a cat", None)
    assert not toks.subtracted and "not subtracted" in toks.note


def test_keep_loaded_parks_models_on_cpu_and_reuses_them(files):
    eng = StyleEngine(keep_loaded=True)
    eng.build(fx.tiny_sd15(), files["plain"], files["encoder"], [IMG])
    assert eng.loaded
    first = eng.adapter(files["plain"])
    eng.build(fx.tiny_sd15(), files["plain"], files["encoder"], [IMG])
    assert eng.adapter(files["plain"]) is first and next(first.parameters()).device.type == "cpu"
    eng.release()
    assert not eng.loaded


def test_patch_follows_the_unet_dtype(files):
    unet = fx.tiny_sd15().double()
    patch, _ = StyleEngine().build(unet, files["plain"], files["encoder"], [IMG], blocks="all")
    x, ctx = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 6, fx.CTX, dtype=torch.float64)
    with patch:
        assert all(lp.k_c.dtype == torch.float64 for lp in patch._patches.values())
        out = unet(x, None, context=ctx)
    assert out.dtype == torch.float64 and not torch.allclose(out, unet(x, None, context=ctx))


def test_wrong_model_fails_before_encoding_and_releases(files):
    eng = StyleEngine()
    with pytest.raises(ShapeMismatchError, match="for sd15 but the UNet is sdxl"):
        eng.build(fx.tiny_sdxl(), files["plain"], files["encoder"], [IMG])
    assert not eng.loaded
