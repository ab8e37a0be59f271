import os

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import style_fixtures as fx
from lib_stylus.style import StyleEngine, load_clip_vision, load_ip_adapter, subtract_content
from lib_stylus.style.attention import ShapeMismatchError
from lib_stylus.style.blocks import resolve_blocks


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
    patch, toks = eng.build(fx.tiny_sd15(), files["plain"], files["encoder"], [IMG], "a cat", text_fn,
                            lam=0.5)
    assert not eng.loaded and not patch.installed
    assert toks.subtracted and toks.cond.shape == toks.uncond.shape == (1, 4, fx.CTX)


def test_tokens_are_the_projection_of_image_minus_lambda_text(files):
    _, toks = StyleEngine().build(fx.tiny_sd15(), files["plain"], files["encoder"], [IMG], "a cat", text_fn,
                                  lam=0.8)
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


def test_patch_computes_in_the_dtype_it_is_given_not_the_unets(files):
    unet = fx.tiny_sd15().double()
    patch, _ = StyleEngine().build(unet, files["plain"], files["encoder"], [IMG], blocks="all",
                                   device=torch.device("cpu"), dtype=torch.float64)
    x, ctx = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 6, fx.CTX, dtype=torch.float64)
    with patch:
        assert all(lp.k_c.dtype == torch.float64 for lp in patch._patches.values())
        out = unet(x, None, context=ctx)
    assert out.dtype == torch.float64 and not torch.allclose(out, unet(x, None, context=ctx))


@pytest.mark.parametrize("storage", [torch.float16, torch.float8_e4m3fn])
def test_unet_stored_in_half_or_fp8_on_the_cpu_computes_in_the_hosts_dtype(files, storage):
    """--medvram/--lowvram park the fp16 UNet on the CPU; "FP8 weight" stores Linear/Conv weights as float8.
    The style is computed on the host's compute device and dtype, whatever the UNet's storage."""
    unet = fx.tiny_sd15()
    for m in unet.modules():
        if isinstance(m, torch.nn.Linear) or storage == torch.float16:
            m.to(storage)
    patch, toks = StyleEngine().build(unet, files["plain"], files["encoder"], [IMG], "a cat", text_fn,
                                      device=torch.device("cpu"), dtype=torch.float32)
    assert toks.cond.dtype == torch.float32 and toks.subtracted
    assert all(lp.k_c.dtype == torch.float32 and lp.k_c.device.type == "cpu"
               for lp in patch._patches.values())


def test_the_adapter_is_never_moved_whole_only_the_patched_layers(files, monkeypatch):
    from lib_stylus.style.ip_adapter import IPAdapter

    def whole_move(self, *a, **k):
        raise AssertionError("the whole adapter was moved/converted")
    monkeypatch.setattr(IPAdapter, "to", whole_move)
    patch, _ = StyleEngine().build(fx.tiny_sd15(), files["plain"], files["encoder"], [IMG],
                                   device=torch.device("cpu"), dtype=torch.float64)
    assert sorted(patch._patches) == [l.number for l in resolve_blocks("sd15", "style")]
    assert all(lp.k_c.dtype == torch.float64 for lp in patch._patches.values())


class CountingText:
    key = "test-text-tower"

    def __init__(self):
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        return text_fn(texts)


def test_a_second_job_with_the_same_reference_loads_and_encodes_nothing(files, monkeypatch):
    from lib_stylus.style import engine as engine_mod
    loads = []
    for name in ("load_ip_adapter", "load_clip_vision"):
        real = getattr(engine_mod, name)
        monkeypatch.setattr(engine_mod, name,
                            lambda *a, _real=real, _n=name, **k: loads.append(_n) or _real(*a, **k))
    eng, text, unet = StyleEngine(), CountingText(), fx.tiny_sd15()
    first, t1 = eng.build(unet, files["plain"], files["encoder"], [IMG], "a cat", text, lam=0.5)
    assert sorted(loads) == ["load_clip_vision", "load_ip_adapter"] and text.calls == 1
    same = IMG.copy()  # another object with the same pixels (a new upload of the same file)
    second, t2 = eng.build(unet, files["plain"], files["encoder"], [same], "a cat", text, lam=0.5)
    assert len(loads) == 2 and text.calls == 1 and not eng.loaded
    assert torch.equal(t1.cond, t2.cond) and t2.subtracted
    for n, lp in first._patches.items():
        assert torch.equal(lp.k_c, second._patches[n].k_c) and torch.equal(lp.v_u, second._patches[n].v_u)
    _, t3 = eng.build(unet, files["plain"], files["encoder"], [same], "a cat", text, lam=0.8)
    assert not torch.equal(t3.cond, t1.cond)  # another lambda: new tokens (from the cached embeddings)
    assert text.calls == 1
    other = Image.new("RGB", (48, 40), (20, 30, 200))
    _, t4 = eng.build(unet, files["plain"], files["encoder"], [other], "a cat", text, lam=0.5)
    assert not torch.equal(t4.cond, t1.cond) and loads.count("load_clip_vision") == 2


def test_a_changed_adapter_file_is_read_again(files, tmp_path):
    import shutil
    path = str(tmp_path / "ip.safetensors")
    shutil.copy(files["plain"], path)
    eng, unet = StyleEngine(), fx.tiny_sd15()
    _, t1 = eng.build(unet, path, files["encoder"], [IMG])
    sd = fx.adapter_state_dict(unet, "sd15", seed=7)
    save_file(sd, path)
    os.utime(path, (os.path.getatime(path), os.path.getmtime(path) + 5))
    _, t2 = eng.build(unet, path, files["encoder"], [IMG])
    assert not torch.equal(t1.cond, t2.cond)


def test_wrong_model_fails_before_encoding_and_releases(files):
    eng = StyleEngine()
    with pytest.raises(ShapeMismatchError, match="for sd15 but the UNet is sdxl"):
        eng.build(fx.tiny_sdxl(), files["plain"], files["encoder"], [IMG])
    assert not eng.loaded


def test_an_encoder_of_another_clip_space_is_one_line_naming_both_files(files, tmp_path):
    other = tmp_path / "image_encoder_32"
    fx.tiny_vision_model(projection_dim=32).save_pretrained(str(other))
    with pytest.raises(ShapeMismatchError) as err:
        StyleEngine().build(fx.tiny_sd15(), files["plain"], str(other), [IMG])
    msg = str(err.value)
    assert "image_encoder_32" in msg and "ip-adapter_sd15" in msg and "32" in msg and "24" in msg
    assert "\n" not in msg


def test_sdxl_all_blocks_fit_the_cache_and_a_repeat_uses_it(files, tmp_path):
    """SDXL 'all' patches 70 layers: the remembered K/V pairs of one reference are one entry, not one per
    layer (an LRU of 16 per-layer entries evicted layers while they were being made: KeyError in the real
    web UI)."""
    unet = fx.tiny_sdxl()
    path = str(tmp_path / "ip-adapter_sdxl.safetensors")
    save_file(fx.adapter_state_dict(unet, "sdxl"), path)
    eng = StyleEngine()
    first, _ = eng.build(unet, path, files["encoder"], [IMG], blocks="all")
    assert len(first._patches) == 70
    again, _ = eng.build(unet, path, files["encoder"], [IMG], blocks="all")
    for n, lp in first._patches.items():
        assert lp.k_c is again._patches[n].k_c  # the remembered pair, not a new one


@pytest.mark.parametrize("arch, width", [("sd15", 2048), ("sdxl", 96)])
def test_any_context_width_is_styled_by_the_adapters_structure(files, tmp_path, monkeypatch, arch, width):
    """Defect 12: SD1.5 or SDXL is decided by the adapter's cross-attention pairs (16 or 70), never by the
    to_k_ip width. An SD1.5 UNet reading 2048-wide context (the width a "2048 = SDXL" rule takes for SDXL)
    and an SDXL one of a tiny width (96, as the tiny SDXL's second text encoder) are patched on their own
    layers, every one of them."""
    monkeypatch.setattr(fx, "CTX", width)  # the tiny UNet's cross-attention and the adapter's token width
    unet = fx.tiny_sd15() if arch == "sd15" else fx.tiny_sdxl()
    path = str(tmp_path / ("ip-adapter_%s_%d.safetensors" % (arch, width)))
    save_file(fx.adapter_state_dict(unet, arch), path)
    patch, _ = StyleEngine().build(unet, path, files["encoder"], [IMG], blocks="all")
    assert set(patch._patches) == {layer.number for layer in resolve_blocks(arch, "all")}
