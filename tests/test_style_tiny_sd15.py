"""The engine on the module tree of the shared tiny SD1.5 checkpoint (real ldm names and shapes), when
present."""
import importlib.util
import os

import pytest
import torch
import torch.nn as nn

import style_fixtures as fx
from lib_stylus.style import StylePatch, check_against_unet, detect_arch, ip_adapter as ipa, table
from lib_stylus.style.attention import ShapeMismatchError

MAKER = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tiny-sd15", "make_tiny_sd15.py")
pytestmark = pytest.mark.skipif(not os.path.isfile(MAKER), reason="../shared/tiny-sd15 not available")


@pytest.fixture(scope="module")
def model():
    spec = importlib.util.spec_from_file_location("make_tiny_sd15", MAKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    unet = mod.UNetModel(**mod.UNET)
    wrapper = nn.Module()  # like shared.sd_model.model.diffusion_model
    wrapper.diffusion_model = unet
    return wrapper


def test_real_ldm_tree_is_sd15_and_fits_an_sd15_adapter(model):
    assert detect_arch(model) == "sd15"
    names = dict(model.named_modules())
    assert all("diffusion_model." + l.ldm in names for l in table("sd15"))
    ad = ipa.from_parts(fx.nest(fx.adapter_state_dict(model.diffusion_model, "sd15")))
    check_against_unet(ad, model)


def test_patch_and_restore_on_the_real_tree(model):
    unet = model.diffusion_model
    ad = ipa.from_parts(fx.nest(fx.adapter_state_dict(unet, "sd15")))
    toks = ad.project(torch.randn(1, 24)), ad.project(torch.zeros(1, 24))
    with pytest.raises(ShapeMismatchError, match="no integer 'heads'"):
        StylePatch(model, ad, *toks)  # the file's class keeps weights only; ldm's has heads
    attn = [m for n, m in unet.named_modules() if n.endswith("attn2")]
    for m in attn:
        m.heads = 2
    try:
        before = {n: (m.__dict__.get("forward"), len(m._forward_hooks), len(m._forward_pre_hooks))
                  for n, m in model.named_modules()}
        with StylePatch(model, ad, *toks, blocks="style"):
            wrapped = sorted(n for n, m in unet.named_modules() if "forward" in m.__dict__)
        assert wrapped == ["output_blocks.%d.1.transformer_blocks.0.attn2" % i for i in (3, 4, 5)]
        assert before == {n: (m.__dict__.get("forward"), len(m._forward_hooks), len(m._forward_pre_hooks))
                          for n, m in model.named_modules()}
    finally:
        for m in attn:
            del m.heads
