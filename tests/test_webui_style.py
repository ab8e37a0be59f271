import os
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
    module = load_script(make_library(root / "Lora", [card("watercolor", tags=["watercolor"])]),
                         str(root / "cache"))
    from modules import shared
    unet = tiny_sd15()
    shared.sd_model = types.SimpleNamespace(is_sd1=True, is_sd2=False, is_sdxl=False,
                                            model=types.SimpleNamespace(diffusion_model=unet))
    save_file({k: v.contiguous() for k, v in adapter_state_dict(unet, "sd15", clip_dim=24).items()},
              str(root / "ip.safetensors"))
    tiny_vision_model(projection_dim=24).save_pretrained(str(root / "enc"), safe_serialization=True)
    from PIL import Image
    a = StylusArgs(enabled=True, lora_enabled=False, style_enabled=True,
                   style_image=Image.new("RGB", (32, 32), "red"),
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
    # tokens of the tiny tree; one cond row, one uncond
    x, ctx = torch.randn(2, 6, 16), torch.randn(2, 77, 64)
    with torch.no_grad():
        plain = unet(x, context=ctx)
    p = FakeP(["a house"], [1])
    p.sample = lambda *a, **k: "latents"
    script.process(p, *args)
    patched = {n for n, f in forwards(unet).items() if f is not before[n]}
    # SD1.5 up_blocks.1
    assert patched == {f"output_blocks.{i}.1.transformer_blocks.0.attn2" for i in (3, 4, 5)}
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


# ------------------------------------------------------------------------------------------------ issue 11
import copy  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

import torch.nn as nn  # noqa: E402

from tests.style_fixtures import tiny_sdxl  # noqa: E402

CONTENT = "Stylus style content"


@pytest.fixture
def host(env, monkeypatch, tmp_path):
    """Per test: the host's devices fields as a given configuration sets them, nothing remembered by Stylus,
    model folders of this test only, an empty error channel."""
    from modules import devices, errors, paths, shared
    from lib_stylus.webui import models, style_job
    for name in ("device", "dtype", "dtype_inference", "dtype_unet", "fp8"):
        monkeypatch.setattr(devices, name, getattr(devices, name))
    monkeypatch.setattr(style_job, "_ENGINE", None)
    monkeypatch.setattr(errors, "reported", [])
    monkeypatch.setattr(models, "_FAILED", {}, raising=False)
    monkeypatch.setattr(paths, "models_path", str(tmp_path / "models"))
    monkeypatch.setattr(paths, "extensions_dir", str(tmp_path / "extensions"))
    monkeypatch.setitem(shared.opts.data, "stylus_models_dir", str(tmp_path / "stylus"))
    monkeypatch.setattr(shared, "sd_model", shared.sd_model)
    monkeypatch.setattr(shared.state, "time_start", 1.0, raising=False)
    yield types.SimpleNamespace(devices=devices, errors=errors, shared=shared, job=style_job, dir=tmp_path)
    style_job.restore()


def with_args(args, **changes):
    values = dict(zip(field_names(), args))
    values.update(changes)
    return list(values.values())


def use_sd15(host, unet):
    host.shared.sd_model = types.SimpleNamespace(is_sd1=True, is_sd2=False, is_sdxl=False,
                                                 model=types.SimpleNamespace(diffusion_model=unet))


def styled_and_plain(unet, run_unet=None):
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 6, 16), torch.randn(2, 77, 64)
    run_unet = run_unet or (lambda: unet(x, context=ctx))
    run_denoiser()
    with torch.no_grad():
        return run_unet, x, ctx


def new_p(prompt="a house"):
    p = FakeP([prompt], [1])
    p.sample = lambda *a, **k: "latents"
    return p


def kv_of_active(job):
    return {n: lp.k_c.clone() for n, lp in job.active()._patches.items()}


def style_kv(host, script, args, forget=False):
    """One whole style job: its p and the K/V it patched (forget: no embedding remembered from before)."""
    if forget:
        host.job.engine().forget()
    p = new_p()
    script.process(p, *args)
    kv = kv_of_active(host.job)
    script.postprocess(p, None, *args)
    return p, kv


def test_lowvram_fp16_unet_parked_on_the_cpu_is_styled_in_the_hosts_dtype(env, host):
    """--medvram / --lowvram: the fp16 UNet waits on the CPU; the host computes in devices.dtype on
    devices.device (here the CPU, float32). The style must be built there, not in the parked fp16."""
    script, _, args = env
    unet = tiny_sd15()
    unet.half()
    use_sd15(host, unet)
    host.devices.device, host.devices.dtype, host.devices.dtype_inference = \
        torch.device("cpu"), torch.float32, torch.float32
    p = new_p()
    script.process(p, *args)
    assert host.errors.reported == [] and "Stylus style strength" in p.extra_generation_params
    assert all(k.dtype == torch.float32 for k in kv_of_active(host.job).values())
    unet.float()  # the host's low-VRAM hook moves the UNet where it computes
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 6, 16), torch.randn(2, 77, 64)
    run_denoiser()
    with torch.no_grad():
        styled = unet(x, context=ctx)
    script.postprocess(p, None, *args)
    with torch.no_grad():
        plain = unet(x, context=ctx)
    assert not torch.allclose(styled[0], plain[0], atol=1e-4)


def test_fp8_weight_is_styled_under_the_hosts_manual_cast(env, host):
    """Settings > FP8 weight: Linear/Conv weights are float8_e4m3fn and the host casts them per call."""
    script, _, args = env
    unet = tiny_sd15()
    for m in unet.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.to(torch.float8_e4m3fn)
    use_sd15(host, unet)
    host.devices.fp8, host.devices.dtype, host.devices.dtype_inference = True, torch.float32, torch.float32
    p = new_p()
    script.process(p, *args)
    assert host.errors.reported == [] and "Stylus style strength" in p.extra_generation_params
    torch.manual_seed(0)
    x, ctx = torch.randn(2, 6, 16), torch.randn(2, 77, 64)
    run_denoiser()
    with torch.no_grad(), host.devices.manual_cast(torch.float32):
        styled = unet(x, context=ctx)
    script.postprocess(p, None, *args)
    with torch.no_grad(), host.devices.manual_cast(torch.float32):
        plain = unet(x, context=ctx)
    assert torch.isfinite(styled).all() and not torch.allclose(styled[0], plain[0], atol=1e-3)


def _clip_files(folder, **projections):
    """Single-file CLIP vision encoders as sd-webui-controlnet keeps them (clip_h.pth, clip_g.pth)."""
    os.makedirs(folder, exist_ok=True)
    for name, dim in projections.items():
        torch.save(tiny_vision_model(projection_dim=dim).state_dict(), os.path.join(folder, name + ".pth"))


class NoCall(nn.Module):
    def forward(self, *a, **k):
        raise AssertionError("the checkpoint's text encoder is not in this adapter's CLIP space")


def test_sdxl_vit_h_adapter_gets_the_vit_h_encoder_and_text_tower(env, host, caplog):
    script, _, args = env
    unet = tiny_sdxl()
    path = str(host.dir / "ip-adapter_sdxl_vit-h.safetensors")
    save_file({k: v.contiguous() for k, v in adapter_state_dict(unet, "sdxl", clip_dim=1024).items()}, path)
    _clip_files(str(host.dir / "stylus"), clip_h=1024, clip_g=1280)
    conditioner = NoCall()
    host.shared.sd_model = types.SimpleNamespace(is_sdxl=True, is_sd1=False, is_sd2=False,
                                                 conditioner=conditioner,
                                                 get_learned_conditioning=conditioner,
                                                 model=types.SimpleNamespace(diffusion_model=unet))
    before = forwards(unet)
    p = new_p()
    with caplog.at_level(logging.WARNING, logger="stylus"):
        script.process(p, *with_args(args, ip_adapter=path, image_encoder="auto", content_text="a cat"))
    assert host.errors.reported == [] and forwards(unet) != before
    assert CONTENT not in p.extra_generation_params  # ViT-H text tower offline: style unsubtracted
    lines = [r.getMessage() for r in caplog.records if "ViT-H" in r.getMessage()]
    assert len(lines) == 1 and "not subtracted" in lines[0]


def test_sd15_vit_bigg_adapter_gets_the_bigg_encoder_and_says_no_text_tower(env, host, caplog):
    script, _, args = env
    unet = tiny_sd15()
    use_sd15(host, unet)
    path = str(host.dir / "ip-adapter_sd15_vit-G.safetensors")
    save_file({k: v.contiguous() for k, v in adapter_state_dict(unet, "sd15", clip_dim=1280).items()}, path)
    _clip_files(str(host.dir / "models" / "ControlNet"), clip_h=1024, clip_g=1280)
    before = forwards(unet)
    p = new_p()
    with caplog.at_level(logging.WARNING, logger="stylus"):
        script.process(p, *with_args(args, ip_adapter=path, image_encoder="auto", content_text="a cat"))
    assert (host.errors.reported == [] and forwards(unet) != before
            and CONTENT not in p.extra_generation_params)
    lines = [r.getMessage() for r in caplog.records if "ViT-bigG" in r.getMessage()]
    assert len(lines) == 1 and "not subtracted" in lines[0]


def test_the_same_p_processed_again_never_stacks_wrappers(env, host):
    """img2img batch, loopback and mov2mov process the same p again and again."""
    script, unet, args = env
    use_sd15(host, unet)
    p = new_p()
    original = p.sample
    for _ in range(200):
        script.process(p, *args)
        script.postprocess(p, None, *args)
    script.process(p, *args)
    depth = len(__import__("inspect").stack(0))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 60)  # a stack of 200 wrappers would need far more
    try:
        assert p.sample() == original()
    finally:
        sys.setrecursionlimit(limit)
    script.postprocess(p, None, *args)
    assert host.job.active() is None


def test_a_failed_copy_of_p_leaves_nothing_for_the_next_job(env, host):
    """XYZ plot / prompts-from-file run copies of p; one fails after sampling (no postprocess, no close).
    The host computes in float32 here (--no-half on the CPU: every devices field and the UNet fp32), so the
    copy's style installs on any version of the engine, and the only way to fail is the stale patch."""
    script, unet, args = env
    unet.float()
    host.devices.device, host.devices.fp8 = torch.device("cpu"), False
    host.devices.dtype = host.devices.dtype_unet = host.devices.dtype_inference = torch.float32
    use_sd15(host, unet)
    before = forwards(unet)
    p = new_p()
    copy_ = copy.copy(p)
    script.process(copy_, *args)
    assert host.errors.reported == [], "the copy's style did not install: the test would prove nothing"
    assert forwards(unet) != before and "Stylus style strength" in copy_.extra_generation_params
    host.shared.state.time_start = 2.0  # the next request, with Stylus disabled
    script.process(new_p(), *with_args(args, enabled=False))
    assert forwards(unet) == before, "the failed copy's patch is still installed in the next, unstyled job"
    assert host.job.active() is None


def test_a_nested_job_of_the_same_request_keeps_the_outer_patch(env, host):
    script, unet, args = env
    use_sd15(host, unet)
    outer = new_p()
    script.process(outer, *args)
    patch = host.job.active()
    inner = new_p("a face")
    script.process(inner, *with_args(args, enabled=False))  # e.g. ADetailer's pass without Stylus
    assert host.job.active() is patch and patch.installed
    script.postprocess(outer, None, *args)
    assert host.job.active() is None


def test_infotext_records_content_and_lambda_only_when_subtracted(env, host, monkeypatch):
    script, unet, args = env
    use_sd15(host, unet)
    p = new_p()
    script.process(p, *with_args(args, content_text="a cat", content_lambda=0.7))  # no ViT-H text tower here
    assert CONTENT not in p.extra_generation_params and "Stylus style lambda" not in p.extra_generation_params
    script.postprocess(p, None, *args)

    class Tower:
        key = "stub ViT-H text tower"

        def __call__(self, texts):
            return torch.ones(len(texts), 24)
    monkeypatch.setattr(host.job, "vit_h_text_encoder", lambda device, dtype: Tower())
    p = new_p()
    script.process(p, *with_args(args, content_text="a cat", content_lambda=0.7))
    assert (p.extra_generation_params[CONTENT] == "a cat"
            and p.extra_generation_params["Stylus style lambda"] == 0.7)
    script.postprocess(p, None, *args)


@pytest.mark.parametrize("image", ["data:image/png;base64,", "data:image/png;base64,aGVsbG8="])
def test_a_bad_reference_image_is_one_line_and_nothing_is_patched(env, host, image):
    script, unet, args = env
    use_sd15(host, unet)
    before = forwards(unet)
    script.process(new_p(), *with_args(args, style_image=image))
    assert forwards(unet) == before
    (msg,) = host.errors.reported
    assert "skipped" in msg and ("empty" in msg or "not an image" in msg) and "\n" not in msg


# ------------------------------------------------------------------------------------------ SDXL content text
class TinyTextTower(nn.Module):
    """Stands for conditioner.embedders[1] (open_clip ViT-bigG): texts -> pooled, projected embeddings."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.fc = nn.Linear(16, 24)
        # as networks.assign_network_names... names it
        self.fc.network_layer_name = "lora_te2_text_projection"

    def forward(self, texts):
        feats = torch.stack([torch.tensor([float((ord(c) * (i + 1)) % 17)
                                           for i, c in enumerate((t + " " * 16)[:16])])
                             for t in texts]).to(self.fc.weight.device, self.fc.weight.dtype)
        return self.fc(feats / 17)


class TinyConditioner(nn.Module):
    """sgm's GeneralConditioner for SDXL in miniature: 'vector' = [pooled text (first), size embeddings]."""

    def __init__(self):
        super().__init__()
        self.embedders = nn.ModuleList([nn.Identity(), TinyTextTower()])

    def forward(self, batch, force_zero_embeddings=()):
        pooled = self.embedders[1](batch["txt"])
        b = len(batch["txt"])
        return {"crossattn": torch.zeros(b, 77, 64), "vector": torch.cat([pooled, torch.zeros(b, 8)], 1)}


def use_sdxl(host, unet, conditioner):
    model = types.SimpleNamespace(is_sdxl=True, is_sd1=False, is_sd2=False, conditioner=conditioner,
                                  model=types.SimpleNamespace(diffusion_model=unet), sd_model_hash="tinyxl")
    # sd_models_xl.get_learned_conditioning: the conditioner's forward (where --medvram's hook sits)
    model.get_learned_conditioning = lambda texts: conditioner({"txt": list(texts)})
    host.shared.sd_model = model


@pytest.fixture
def sdxl(env, host):
    unet = tiny_sdxl()
    path = str(host.dir / "ip-adapter_sdxl.safetensors")
    save_file({k: v.contiguous() for k, v in adapter_state_dict(unet, "sdxl", clip_dim=24).items()}, path)
    conditioner = TinyConditioner()
    use_sdxl(host, unet, conditioner)
    script, _, args = env
    return script, with_args(args, ip_adapter=path, content_text="a cat on a sofa"), conditioner


class FakeLora:
    def __init__(self, name, delta):
        self.name, self.te_multiplier, self.unet_multiplier, self.dyn_dim = name, 1.0, 1.0, None
        self.modules = {"lora_te2_text_projection": delta}


@pytest.fixture
def lora_host(monkeypatch):
    """extensions-builtin/Lora in miniature: every Linear's forward first applies networks.loaded_networks to
    its weight (network_apply_weights: back up the original once, restore it when the wanted set changes)."""
    import networks
    monkeypatch.setattr(networks, "loaded_networks", [], raising=False)
    original = nn.Linear.forward

    def network_linear_forward(self, input):
        name = getattr(self, "network_layer_name", None)
        if name is not None:
            wanted = tuple((n.name, n.te_multiplier, n.unet_multiplier, n.dyn_dim)
                           for n in networks.loaded_networks)
            if getattr(self, "network_weights_backup", None) is None and wanted != ():
                self.network_weights_backup = self.weight.detach().to("cpu", copy=True)
            if getattr(self, "network_current_names", ()) != wanted:
                with torch.no_grad():
                    if getattr(self, "network_weights_backup", None) is not None:
                        self.weight.copy_(self.network_weights_backup)
                    for net in networks.loaded_networks:
                        if name in net.modules:
                            self.weight += net.modules[name]
                self.network_current_names = wanted
        return original(self, input)
    monkeypatch.setattr(nn.Linear, "forward", network_linear_forward)
    return networks


def test_sdxl_content_text_is_encoded_without_any_loras(sdxl, host, lora_host):
    """The same request twice after a different one gives the same style, and the host's LoRA state is
    kept."""
    script, args, conditioner = sdxl
    p, reference = style_kv(host, script, args)  # a clean start: no LoRA ever applied
    assert CONTENT in p.extra_generation_params
    lora = FakeLora("te_only", torch.full((24, 16), 0.5))
    lora_host.loaded_networks[:] = [lora]  # a different request activated a text-encoder LoRA ...
    with torch.no_grad():
        with_lora = conditioner.embedders[1](["its prompt"])  # ... and encoded its prompt with it
    for _ in range(2):  # the same request twice: the earlier job's LoRA is still active during process
        _, got = style_kv(host, script, args, forget=True)
        assert all(torch.allclose(got[n], reference[n], atol=1e-6) for n in reference)
        assert lora_host.loaded_networks == [lora]  # the host's own state is left as it was
    with torch.no_grad():
        assert torch.allclose(conditioner.embedders[1](["its prompt"]), with_lora)  # LoRA applies again


class ClassicClip:
    """Forge Classic's CLIP object: a ModelPatcher over the ONE text tower every clone shares. Loading a
    patcher (model_management.load_model_gpu, from forge_clip.move_clip_to_gpu) first undoes the clone
    loaded before (unload_model_clones), then writes its own LoRA patches into the shared weights."""
    loaded = None

    def __init__(self, tower, delta=None):
        self.tower, self.delta = tower, delta
        self.own = tower.fc.weight.detach().clone()

    def load(self):
        if ClassicClip.loaded is not self:
            with torch.no_grad():
                self.tower.fc.weight.copy_(self.own + (self.delta if self.delta is not None else 0))
            ClassicClip.loaded = self


def use_classic_sdxl(host, conditioner):
    """Forge Classic (1f95d71) keeps the web UI's sgm model with Forge's objects attached:
    networks.load_networks puts a LoRA-patched clone of the CLIP in forge_objects.clip (the unpatched one
    stays in forge_objects_original), and sd_models_xl.get_learned_conditioning loads forge_objects.clip's
    patcher before the conditioner runs."""
    model = host.shared.sd_model
    original = ClassicClip(conditioner.embedders[1])
    model.forge_objects = types.SimpleNamespace(unet=types.SimpleNamespace(model=model.model), clip=original)
    model.forge_objects_original = types.SimpleNamespace(clip=original)

    def get_learned_conditioning(texts):
        model.forge_objects.clip.load()
        return conditioner({"txt": list(texts)})
    model.get_learned_conditioning = get_learned_conditioning
    return model, original


def test_forge_classic_sdxl_content_is_subtracted_without_the_last_jobs_loras(sdxl, host):
    """Forge Classic encodes SDXL prompts through the web UI's sgm conditioner, so the content text goes
    through the checkpoint's own second text encoder there too (not 'no ViT-bigG text tower'), with the
    checkpoint's weights even while an earlier job's LoRA clone is the host's current CLIP (defect 13)."""
    script, args, conditioner = sdxl
    model, _ = use_classic_sdxl(host, conditioner)
    p, reference = style_kv(host, script, args)
    assert p.extra_generation_params.get(CONTENT) == "a cat on a sofa"
    with_lora = ClassicClip(conditioner.embedders[1], torch.full((24, 16), 0.5))
    model.forge_objects.clip = with_lora  # an earlier job's networks.load_networks
    model.get_learned_conditioning(["its prompt"])  # ... and its prompt, encoded with the LoRA
    _, got = style_kv(host, script, args, forget=True)
    assert all(torch.allclose(got[n], reference[n], atol=1e-6) for n in reference)
    assert model.forge_objects.clip is with_lora  # the host's own state is left as it was


def test_sdxl_content_text_goes_through_the_hosts_low_vram_path(sdxl, host):
    """--medvram-sdxl parks the fp16 conditioner on the CPU; a hook on the conditioner moves it before use."""
    script, args, conditioner = sdxl
    conditioner.half()
    moved = []

    def send_me_to_gpu(module, _):
        moved.append(module)
        module.float()  # stands for .to(devices.device): where the host computes
    conditioner.register_forward_pre_hook(send_me_to_gpu)
    p = new_p()
    script.process(p, *args)
    assert host.errors.reported == [] and moved == [conditioner]
    assert p.extra_generation_params[CONTENT] == "a cat on a sofa"
    script.postprocess(p, None, *args)


def test_keep_models_is_ignored_under_low_vram_flags(env, host, monkeypatch):
    """'Keep style models in memory' keeps them between jobs, but never with --medvram/--lowvram."""
    script, unet, args = env
    use_sd15(host, unet)
    monkeypatch.setitem(host.shared.opts.data, "stylus_keep_models", True)
    p = new_p()
    script.process(p, *args)
    assert host.job.engine().loaded
    script.postprocess(p, None, *args)
    monkeypatch.setattr(host.shared.cmd_opts, "medvram", True, raising=False)
    host.job.engine().release()
    p = new_p()
    from PIL import Image
    script.process(p, *with_args(args, style_image=Image.new("RGB", (32, 32), "blue")))  # encoders load again
    assert "Stylus style strength" in p.extra_generation_params
    assert not host.job.engine().loaded and host.errors.reported == []
    script.postprocess(p, None, *args)
