"""The configurations users run, against the real web UI (issue 11): SDXL's style blocks and its content
subtraction through the checkpoint's own second text encoder, img2img and inpainting, FP8 weight, loopback,
XYZ plot, Tiled Diffusion, hires fix and an interrupt. Every test ends by checking that a plain request made
before it gives the same pixels afterwards: nothing Stylus did may outlive its job.

The suite adapts to the loaded checkpoint (tiny-sd15 or tiny-sdxl). img2img encodes its init image with the
host's unseeded global RNG, so a bit-exact img2img comparison repeats the same request first."""
import json
import threading
import time
from urllib.error import HTTPError

import pytest
from PIL import Image

from tests.e2e.client import (BASE, b64_image, b64_png, call, checkpoint, gen, is_forge, is_sdxl, lora,
                              pixels, style_args, style_files)

PLAIN = {"prompt": "a lighthouse at dusk", "seed": 77}


@pytest.fixture(scope="module")
def files():
    return style_files()


@pytest.fixture()
def plain_before(request):
    """A plain request's pixels before the test; the test's teardown asks for them again. A test whose host
    changed its own weights without Stylus (``request.node.host_changed``: why) has nothing to compare."""
    before, _ = gen(**PLAIN)
    yield before
    after, info = gen(**PLAIN)
    assert "Stylus" not in info
    if getattr(request.node, "host_changed", ""):
        return
    assert after == before, "a plain request after the test differs from the same request before it"


def styled(files, **kw):
    return style_args(files, **kw)


# -------------------------------------------------------------------------------- style blocks
def test_each_block_preset_styles_its_own_layers(files, plain_before):
    plain, _ = gen()
    images = {}
    for preset in ("style", "style+layout", "all"):
        images[preset], info = gen(**styled(files, blocks=preset))
        assert f"Stylus style blocks: {preset}" in info
    assert len({plain, *images.values()}) == 4  # every preset changes different layers


def test_scale_zero_is_bit_identical_to_no_style(files, plain_before):
    plain, _ = gen()
    zero, _ = gen(**styled(files, scale=0.0))
    assert zero == plain


# -------------------------------------------------------------------------------- content text
def test_content_text_is_subtracted_and_recorded(files, plain_before):
    """SDXL: through the checkpoint's own second text encoder; SD1.5: the ViT-H text tower (a tiny one in the
    host's models/stylus, written by make_style_models.py). Forge keeps SDXL's text encoders elsewhere: there
    the style is applied unsubtracted, and the infotext must not claim a subtraction (defect 8)."""
    without, _ = gen(**styled(files))
    subtracted, info = gen(**styled(files, content="a red square", lam=0.8))
    assert "Stylus style strength: 1.0" in info
    if is_forge() and is_sdxl():
        assert subtracted == without
        assert "Stylus style content" not in info and "Stylus style lambda" not in info
        return
    assert subtracted != without
    assert "Stylus style content: a red square" in info and "Stylus style lambda: 0.8" in info


def test_same_request_twice_after_a_different_one_is_identical(files, plain_before):
    """Defect 13: the content text must be encoded with the text encoder as the checkpoint ships it, not with
    the LoRAs (here one that changes the second text encoder) a previous job left switched on."""
    request = {"prompt": f"a house <lora:{lora('cyberpunk')}:1>",
               **styled(files, content="a red square", lam=0.8)}
    gen(prompt="a plain field")
    first, _ = gen(**request)
    second, _ = gen(**request)
    assert first == second


# -------------------------------------------------------------------------------- img2img
def test_img2img_and_inpainting_keep_outside_the_mask(files, plain_before):
    init = b64_image((20, 120, 200))
    job = {"init_images": [init], "denoising_strength": 0.8}
    gen("/sdapi/v1/img2img", **job)
    plain, _ = gen("/sdapi/v1/img2img", **job)
    style = styled(files)
    gen("/sdapi/v1/img2img", **job, **style)
    first, info = gen("/sdapi/v1/img2img", **job, **style)
    again, _ = gen("/sdapi/v1/img2img", **job, **style)
    assert first != plain and first == again and "Stylus style strength" in info
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # inpaint the left half only
    inpainted, info = gen("/sdapi/v1/img2img", **job, mask=b64_png(mask), mask_blur=0, inpaint_full_res=False,
                          **style)
    assert "Stylus style strength" in info
    out = Image.frombytes("RGB", (64, 64), inpainted)
    right = [out.getpixel((x, y)) for x in range(40, 64) for y in range(64)]
    assert all(max(abs(a - b) for a, b in zip(px, (20, 120, 200))) <= 2 for px in right)  # outside: kept
    assert out.getpixel((8, 32)) != (20, 120, 200)


# -------------------------------------------------------------------------------- FP8 weight
def load_afresh():
    """Load the current checkpoint from its file again: switch to another one and back (the web UI keeps one
    model in memory by default). Switching FP8 off is not enough: the web UI 1.10.1 then reloads the weights
    through fp16 (`model.half()` before `load_state_dict`), so the fp32 model stays fp16-rounded."""
    current = call("/sdapi/v1/options")["sd_model_checkpoint"]
    other = next(m["title"] for m in call("/sdapi/v1/sd-models") if m["title"] != current)
    call("/sdapi/v1/options", {"sd_model_checkpoint": other})
    call("/sdapi/v1/options", {"sd_model_checkpoint": current})


@pytest.fixture()
def fp8():
    """Settings -> FP8 weight (web UI 1.10.1: the next job reloads the checkpoint with float8 Linear/Conv
    weights); on Forge, "Diffusion in Low Bits" = float8-e4m3fn, applied when a checkpoint is loaded.
    Yields the infotext entry that proves it was in effect."""
    forge = is_forge()
    flags = {} if forge else call("/sdapi/v1/cmd-flags")  # Forge (dfdcbab) answers that route with HTTP 500
    if "unet_in_fp8_e4m3fn" in flags:  # Forge Classic
        yield from classic_fp8(flags["unet_in_fp8_e4m3fn"])
        return
    if forge:
        key, on, off = "forge_unet_storage_dtype", "float8-e4m3fn", "Automatic"
    else:
        key, on, off = "fp8_storage", "Enable", "Disable"
    call("/sdapi/v1/options", {key: on})
    if forge:
        load_afresh()
    try:
        yield "Diffusion in Low Bits: float8-e4m3fn" if forge else "FP8 weight: Enable"
    finally:
        call("/sdapi/v1/options", {key: off})
        load_afresh()


def classic_fp8(started_in_fp8: bool):
    """Forge Classic stores the UNet in float8 from a start flag; its Settings option ("Store UNet Weights in
    fp8", fp8_storage) counts only with CUDA (ldm_patched/modules/model_management.py, prefer_fp8: `if not
    torch.cuda.is_available(): return False`), so on a CPU host the flag is the only way to FP8. The infotext
    shows the option's value whenever the UNet is float8 (processing.py: "FP8 weight": opts.fp8_storage if
    devices.fp8)."""
    if not started_in_fp8:
        pytest.skip("Forge Classic applies its FP8 setting only with CUDA (model_management.prefer_fp8); "
                    "on a CPU host start it with --unet-in-fp8-e4m3fn to run this test")
    call("/sdapi/v1/options", {"fp8_storage": True})
    try:
        yield "FP8 weight: True"
    finally:
        call("/sdapi/v1/options", {"fp8_storage": False})


def test_fp8_weight_styles_on_cpu(request, files, plain_before, fp8):
    try:
        plain8, info = gen()
    except HTTPError as e:
        if e.code == 500 and is_sdxl():  # not Stylus: the request has no Stylus args
            # and the failed job leaves the host's own weights changed: with no Stylus installed, a plain
            # SDXL job after FP8 "Enable" (HTTP 500) and "Disable" differs from the same job before
            request.node.host_changed = "the web UI's failed FP8 job changed its weights"
            pytest.skip("the web UI 1.10.1 cannot run FP8 weight with SDXL on CPU even without Stylus: its "
                        "CPU autocast (bfloat16) meets the float attn_mask of open_clip's text encoder in "
                        "F.multi_head_attention_forward (Expected attn_mask dtype to be bool ...)")
        raise
    assert fp8 in info
    styled8, info = gen(**styled(files))
    assert "Stylus style strength: 1.0" in info
    assert styled8 != plain8


# -------------------------------------------------------------------------------- scripts
def test_loopback_styles_every_loop(files, plain_before):
    job = {"init_images": [b64_image((90, 30, 160))], "denoising_strength": 0.6,
           "script_name": "loopback", "script_args": [3, 0.5, "Linear", "None"]}
    plain = call("/sdapi/v1/img2img", {**BASE, "prompt": "a house", "seed": 5, **job})
    out = call("/sdapi/v1/img2img", {**BASE, "prompt": "a house", "seed": 5, **job, **styled(files)})
    info = json.loads(out["info"])
    assert len(out["images"]) >= 3
    assert all("Stylus style strength" in text for text in info["infotexts"])
    assert pixels(out["images"][-1]) != pixels(plain["images"][-1])


# X = "Seed" (the axis dropdowns are type="index": 1 = Seed, 0 = Nothing), values 11,12; legend, lone images
XYZ_SEEDS = [1, "11,12", "", 0, "", "", 0, "", "", True, True, False, False, False, False, False, 0, False]


def test_xyz_plot_styles_every_cell(files, plain_before):
    out = call("/sdapi/v1/txt2img", {**BASE, "prompt": "a house", "script_name": "x/y/z plot",
                                     "script_args": XYZ_SEEDS, **styled(files)})
    info = json.loads(out["info"])
    cells = [text for text in info["infotexts"] if "Seed: 11," in text or "Seed: 12," in text]
    assert len(cells) >= 2 and all("Stylus style strength" in text for text in cells)
    for seed in (11, 12):  # each cell equals the same job run alone
        alone, _ = gen(seed=seed, **styled(files))
        assert alone in [pixels(b) for b in out["images"]]


# -------------------------------------------------------------------------------- Tiled Diffusion
def tiled() -> dict:
    """Tiled Diffusion in MultiDiffusion mode on a 192 px image: a 24-latent canvas in 16-latent tiles
    overlapping by 8, i.e. 4 tiles sampled in one UNet call with 4x the rows of a normal call. The web UI
    1.10.1 gets it from the multidiffusion-upscaler extension; Forge has its own "MultiDiffusion Integrated"
    (sizes in pixels)."""
    names = {s["name"] for s in call("/sdapi/v1/script-info")}
    if "tiled diffusion" in names:
        args = [True, "MultiDiffusion", False, True, 1024, 1024, 16, 16, 8, 4, "None", 2.0,
                False, 10, 1, 1, 64, False, False, False, False]
        return {"tiled diffusion": {"args": args}}
    if "multidiffusion integrated" in names:
        return {"multidiffusion integrated": {"args": [True, "MultiDiffusion", 128, 128, 64, 4]}}
    pytest.fail("no Tiled Diffusion on the host: install multidiffusion-upscaler (build_host.sh tiled)")


def test_tiled_diffusion_styles_or_runs_without_style(files, plain_before):
    size = {"width": 192, "height": 192}
    plain = call("/sdapi/v1/txt2img", {**PLAIN, "steps": 4, **size, "alwayson_scripts": tiled()})
    style = styled(files)
    out = call("/sdapi/v1/txt2img", {**PLAIN, "steps": 4, **size,
                                     "alwayson_scripts": {**style["alwayson_scripts"], **tiled()}})
    assert len(out["images"]) == 1
    info = json.loads(out["info"])["infotexts"][0]
    assert "Stylus style strength" in info
    assert pixels(out["images"][0]) != pixels(plain["images"][0])


# -------------------------------------------------------------------------------- hires fix
def test_hires_fix_styles_both_passes(files, plain_before):
    hires = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 2,
             "denoising_strength": 0.5}
    if is_forge():  # Forge's API raises (HTTP 500) on a hires job without it, Stylus or not
        hires["hr_additional_modules"] = ["Use same choices"]
    plain, _ = gen(**hires)
    first, info = gen(**hires, **styled(files))
    assert first != plain and "Stylus style strength" in info and "Hires upscale: 2" in info
    assert len(first) == 128 * 128 * 3


# -------------------------------------------------------------------------------- interrupt
def test_interrupt_mid_sampling_restores_the_unet(files, plain_before):
    result = {}

    def long_job():
        body = {"prompt": "a house", "steps": 150, "width": 128, "height": 128, "seed": 3, **styled(files)}
        result["out"] = call("/sdapi/v1/txt2img", body, timeout=600)
    worker = threading.Thread(target=long_job)
    worker.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        state = call("/sdapi/v1/progress?skip_current_image=true")["state"]
        if state.get("sampling_step", 0) >= 2:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the long job never started sampling")
    call("/sdapi/v1/interrupt", {})
    worker.join(300)
    assert "out" in result and len(result["out"]["images"]) == 1  # the interrupted job still answers


def test_checkpoint_is_the_tiny_one():
    assert checkpoint() in ("tiny-sd15", "tiny-sdxl")
