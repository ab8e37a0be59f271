import types

import pytest
import torch
from safetensors.torch import save_file

from lib_stylus.webui.args import StylusArgs, field_names
from tests.loralib import card, make_library
from tests.style_fixtures import adapter_state_dict, tiny_sd15, tiny_vision_model
from tests.webui_env import FakeP, load_script


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("style")
    module = load_script(make_library(root / "Lora", [card("watercolor", tags=["watercolor"])]), str(root / "cache"))
    from modules import shared
    unet = tiny_sd15()
    shared.sd_model = types.SimpleNamespace(is_sd1=True, is_sd2=False, is_sdxl=False,
                                            model=types.SimpleNamespace(diffusion_model=unet))
    save_file({k: v.contiguous() for k, v in adapter_state_dict(unet, "sd15", clip_dim=24).items()},
              str(root / "ip.safetensors"))
    tiny_vision_model(projection_dim=24).save_pretrained(str(root / "enc"), safe_serialization=True)
    from PIL import Image
    a = StylusArgs(enabled=True, lora_enabled=False, style_enabled=True, style_image=Image.new("RGB", (32, 32), "red"),
                   ip_adapter=str(root / "ip.safetensors"), image_encoder=str(root / "enc"))
    return module.StylusScript(), unet, [getattr(a, n) for n in field_names()]


def forwards(unet):
    return {n: m.__dict__.get("forward") for n, m in unet.named_modules() if n.endswith("attn2")}


def run_denoiser(n_cond=1, n_uncond=1):
    from modules import script_callbacks
    params = script_callbacks.CFGDenoiserParams(torch.zeros(n_cond + n_uncond, 4, 8, 8), None, None, 0, 4,
                                                torch.zeros(n_cond, 77, 64), torch.zeros(n_uncond, 77, 64))
    script_callbacks.cfg_denoiser_callback(params)


def test_patch_only_on_style_blocks_and_removed_in_postprocess(env):
    script, unet, args = env
    from lib_stylus.webui import style_job
    before = forwards(unet)
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 6, 16), torch.randn(2, 77, 64)  # tokens of the tiny tree; one cond row, one uncond
    with torch.no_grad():
        plain = unet(x, context=ctx)
    p = FakeP(["a house"], [1])
    p.sample = lambda *a, **k: "latents"
    script.process(p, *args)
    patched = {n for n, f in forwards(unet).items() if f is not before[n]}
    assert patched == {f"output_blocks.{i}.1.transformer_blocks.0.attn2" for i in (3, 4, 5)}  # SD1.5 up_blocks.1
    assert p.extra_generation_params["Stylus style strength"] == 1.0
    run_denoiser()  # the host's CFG denoiser announces [cond, uncond]
    with torch.no_grad():
        styled = unet(x, context=ctx)
    assert not torch.allclose(styled[0], plain[0], atol=1e-4)  # the cond row carries the reference's style
    assert not torch.allclose(styled[1], plain[1], atol=1e-4) and not torch.allclose(styled[0], styled[1])
    script.postprocess(p, None, *args)
    assert forwards(unet) == before and style_job.active() is None
    with torch.no_grad():
        assert torch.equal(unet(x, context=ctx), plain)  # restored exactly


def test_an_exception_in_sampling_restores_the_unet(env):
    script, unet, args = env
    before = forwards(unet)
    p = FakeP(["a house"], [1])

    def crash(*a, **k):
        raise RuntimeError("CUDA out of memory")

    p.sample = crash
    script.process(p, *args)
    assert forwards(unet) != before
    with pytest.raises(RuntimeError):
        p.sample()
    assert forwards(unet) == before


def test_closing_the_job_restores_even_without_postprocess(env):
    script, unet, args = env
    before = forwards(unet)
    p = FakeP(["a house"], [1])
    p.sample = lambda: None
    script.process(p, *args)  # ...and an exception after sampling skips every later hook
    p.close()  # the host always closes the job (`with closing(p)`)
    assert forwards(unet) == before


def test_a_nested_job_suspends_and_gives_back_the_outer_patch(env):
    script, unet, args = env
    from lib_stylus.webui import style_job
    before = forwards(unet)
    outer, inner = FakeP(["a house"], [1]), FakeP(["a face"], [2])
    outer.sample = inner.sample = lambda: None
    script.process(outer, *args)
    outer_patch = style_job.active()
    script.process(inner, *args)  # e.g. ADetailer's inpainting pass inside the outer job
    assert style_job.active() is not outer_patch and not outer_patch.installed
    script.postprocess(inner, None, *args)
    assert style_job.active() is outer_patch and outer_patch.installed  # the outer batches keep their style
    script.postprocess(outer, None, *args)
    assert forwards(unet) == before and style_job.active() is None


def test_a_wrong_adapter_is_reported_and_nothing_is_patched(env, tmp_path):
    script, unet, args = env
    from modules import errors
    bad = dict(zip(field_names(), args))
    save_file({"ip_adapter.1.to_k_ip.weight": torch.zeros(8, 2048)}, str(tmp_path / "bad.safetensors"))
    bad["ip_adapter"] = str(tmp_path / "bad.safetensors")
    before = forwards(unet)
    p = FakeP(["a house"], [1])
    p.sample = lambda: None
    script.process(p, *bad.values())
    assert forwards(unet) == before and "Stylus style strength" not in p.extra_generation_params
    assert any("reference style" in m for m in errors.reported)


def test_an_interrupted_job_is_restored_by_postprocess(env):
    """On interrupt/skip the host returns the last latent and still runs postprocess (processing.py)."""
    script, unet, args = env
    from modules import shared
    before = forwards(unet)
    p = FakeP(["a house"], [1])
    p.sample = lambda: None
    script.process(p, *args)
    shared.state.interrupted = True
    try:
        script.postprocess(p, None, *args)
    finally:
        shared.state.interrupted = False
    assert forwards(unet) == before
