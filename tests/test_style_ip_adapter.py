import os

import pytest
import torch
from safetensors.torch import save_file

from lib_stylus.style import ip_adapter as ipa
from lib_stylus.style.ip_adapter import AdapterFormatError, load_ip_adapter
from style_fixtures import CTX, adapter_state_dict, nest, tiny_sd15, tiny_sdxl


@pytest.fixture(scope="module")
def sd15():
    return tiny_sd15()


def _write(tmp_path, name, sd):
    path = str(tmp_path / name)
    if name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    else:
        torch.save(sd, path)
    return path


@pytest.mark.parametrize("name, nested", [("a.bin", True), ("a.bin", False), ("a.safetensors", False)])
def test_loads_bin_nested_and_flat_and_safetensors(tmp_path, sd15, name, nested):
    flat = adapter_state_dict(sd15, "sd15")
    ad = load_ip_adapter(_write(tmp_path, name, nest(flat) if nested else flat))
    assert ((ad.arch, ad.kind, ad.info.tokens, ad.info.clip_dim, ad.info.cross_dim)
            == ("sd15", "plain", 4, 24, CTX))
    assert torch.equal(ad.kv(69 - 38)[0].weight, flat["ip_adapter.31.to_k_ip.weight"])
    assert torch.equal(ad.image_proj.proj.weight, flat["image_proj.proj.weight"])


def test_detects_sdxl_and_plus_with_token_count(tmp_path):
    xl = tiny_sdxl()
    ad = load_ip_adapter(_write(tmp_path, "p.safetensors", adapter_state_dict(xl, "sdxl", "plus", clip_dim=32,
                                                                              tokens=16)))
    assert (ad.arch, ad.kind, ad.info.tokens, ad.info.clip_dim) == ("sdxl", "plus", 16, 32)
    assert len(ad.to_k_ip) == 70
    assert ad.project(torch.randn(2, 5, 32)).shape == (2, 16, CTX)


def test_plain_projection_is_linear_then_layernorm(sd15):
    flat = adapter_state_dict(sd15, "sd15", tokens=4)
    ad = ipa.from_parts(nest(flat))
    e = torch.randn(3, 24)
    x = (e @ flat["image_proj.proj.weight"].T + flat["image_proj.proj.bias"]).reshape(3, 4, CTX)
    want = torch.nn.functional.layer_norm(x, (CTX,), flat["image_proj.norm.weight"],
                                          flat["image_proj.norm.bias"])
    assert torch.allclose(ad.project(e), want, atol=1e-5)


def test_resampler_matches_an_independent_computation(sd15):
    flat = adapter_state_dict(sd15, "sd15", "plus", clip_dim=32, tokens=16, depth=1)
    ad = ipa.from_parts(nest(flat))
    w = {k[len("image_proj."):]: v for k, v in flat.items() if k.startswith("image_proj.")}
    ln = lambda t, p: torch.nn.functional.layer_norm(t, (t.shape[-1],), w[p + ".weight"], w[p + ".bias"])
    x = torch.randn(2, 7, 32)
    lat = w["latents"].repeat(2, 1, 1)
    h = x @ w["proj_in.weight"].T + w["proj_in.bias"]
    hn, ln_ = ln(h, "layers.0.0.norm1"), ln(lat, "layers.0.0.norm2")
    q = ln_ @ w["layers.0.0.to_q.weight"].T
    k, v = (torch.cat([hn, ln_], 1) @ w["layers.0.0.to_kv.weight"].T).chunk(2, -1)
    att = torch.softmax(q @ k.transpose(1, 2) / 64 ** 0.5, -1) @ v      # one 64-wide head
    lat = lat + att @ w["layers.0.0.to_out.weight"].T
    ff = (torch.nn.functional.gelu(ln(lat, "layers.0.1.0") @ w["layers.0.1.1.weight"].T)
          @ w["layers.0.1.3.weight"].T)
    lat = lat + ff
    want = ln(lat @ w["proj_out.weight"].T + w["proj_out.bias"], "norm_out")
    assert torch.allclose(ad.project(x), want, atol=1e-4)


def test_bin_is_loaded_with_weights_only(tmp_path, sd15, monkeypatch):
    path = _write(tmp_path, "a.bin", nest(adapter_state_dict(sd15, "sd15")))
    seen = []
    real = torch.load

    def spy(*a, **kw):
        seen.append(kw.get("weights_only"))
        return real(*a, **kw)
    monkeypatch.setattr(torch, "load", spy)
    load_ip_adapter(path)
    assert seen == [True]


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, sd15):
    marker = str(tmp_path / "pwned")
    sd = nest(adapter_state_dict(sd15, "sd15"))
    sd["image_proj"]["evil"] = _Evil(marker)
    path = _write(tmp_path, "evil.bin", sd)
    with pytest.raises(AdapterFormatError, match="refused"):
        load_ip_adapter(path)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("mutate, msg", [
    (lambda sd: sd.pop("ip_adapter.31.to_v_ip.weight"), "lacks '31.to_v_ip.weight'"),
    (lambda sd: sd.update({"ip_adapter.5.to_v_ip.weight": torch.zeros(3, 3)}), "layer 5: to_k_ip"),
    (lambda sd: [sd.pop("ip_adapter.31.to_%s_ip.weight" % c) for c in "kv"], "15 cross-attention pairs"),
    (lambda sd: sd.update({"image_proj.norm.weight": torch.ones(32), "image_proj.norm.bias": torch.ones(32)}),
     "32-wide tokens but ip_adapter"),
    (lambda sd: sd.update({"image_proj.proj.weight": torch.zeros(100, 24)}), "not a multiple"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("image_proj.")], "no 'image_proj'"),
    (lambda sd: sd.update({"image_proj.proj.bias": torch.zeros(7)}), "proj.bias has shape"),
])
def test_malformed_files_raise_errors_naming_the_mismatch(tmp_path, sd15, mutate, msg):
    sd = adapter_state_dict(sd15, "sd15")
    mutate(sd)
    with pytest.raises(AdapterFormatError, match=msg):
        load_ip_adapter(_write(tmp_path, "m.safetensors", sd))


def test_unsupported_variant_and_extension(tmp_path, sd15):
    sd = adapter_state_dict(sd15, "sd15")
    for k in [k for k in sd if k.startswith("image_proj.")]:
        sd.pop(k)
    sd["image_proj.proj.0.weight"] = torch.zeros(4, 4)  # full-face / faceid MLP projection
    with pytest.raises(AdapterFormatError, match="unsupported variant"):
        load_ip_adapter(_write(tmp_path, "f.safetensors", sd))
    odd = tmp_path / "x.gguf"
    odd.write_bytes(b"GGUF")
    with pytest.raises(AdapterFormatError, match="unknown extension"):
        load_ip_adapter(str(odd))


def test_project_rejects_wrong_embedding_shape(sd15):
    ad = ipa.from_parts(nest(adapter_state_dict(sd15, "sd15")))
    with pytest.raises(ValueError, match=r"\(B, 24\)"):
        ad.project(torch.randn(1, 25))
    with pytest.raises(ValueError, match="plain IP-Adapter"):
        ad.project(torch.randn(1, 3, 24))


def _pairs_only(numbers, width_in, width_out):
    """An adapter of any width: only its structure (how many cross-attention pairs) names the model."""
    g = torch.Generator().manual_seed(0)
    sd = {"image_proj.proj.weight": torch.randn(4 * width_in, 24, generator=g),
          "image_proj.proj.bias": torch.zeros(4 * width_in), "image_proj.norm.weight": torch.ones(width_in),
          "image_proj.norm.bias": torch.zeros(width_in)}
    for n in numbers:
        for kv in ("k", "v"):
            sd["ip_adapter.%d.to_%s_ip.weight" % (n, kv)] = torch.randn(width_out, width_in, generator=g)
    return sd


@pytest.mark.parametrize("pairs, width, arch", [(16, 2048, "sd15"), (16, 768, "sd15"), (70, 160, "sdxl"),
                                                (70, 2048, "sdxl"), (70, 768, "sdxl")])
def test_architecture_comes_from_the_number_of_pairs_not_the_width(tmp_path, pairs, width, arch):
    numbers = [2 * j + 1 for j in range(pairs)]
    ad = load_ip_adapter(_write(tmp_path, "w.safetensors", _pairs_only(numbers, width, 8)))
    assert ad.arch == arch and len(ad.to_k_ip) == pairs


def test_pairs_numbered_otherwise_are_counted_and_named_in_one_line(tmp_path):
    numbers = [2 * j for j in range(16)]  # 0, 2, ... 30: 16 pairs, off by one
    path = _write(tmp_path, "odd.safetensors", _pairs_only(numbers, 64, 8))
    with pytest.raises(AdapterFormatError) as err:
        load_ip_adapter(path)
    msg = str(err.value)
    assert path in msg and "16" in msg and "\n" not in msg
