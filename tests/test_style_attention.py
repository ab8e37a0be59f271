import copy
import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import style_fixtures as fx
from lib_stylus.style import ip_adapter as ipa
from lib_stylus.style.attention import ShapeMismatchError, StylePatch, cfg_rows, detect_arch
from lib_stylus.style.blocks import resolve_blocks, table

N_TOK = 6


@pytest.fixture(scope="module")
def sd15():
    return fx.tiny_sd15()


@pytest.fixture(scope="module")
def adapter(sd15):
    return ipa.from_parts(fx.nest(fx.adapter_state_dict(sd15, "sd15")))


@pytest.fixture(scope="module")
def tokens(adapter):
    torch.manual_seed(3)
    return adapter.project(torch.randn(1, 24)), adapter.project(torch.zeros(1, 24))


def inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 5, 16, generator=g), torch.randn(b, N_TOK, fx.CTX, generator=g)


def run(unet, x, ctx):
    with torch.no_grad():
        return unet(x, None, context=ctx)


def attn_inputs(unet, path, x, ctx):
    """Capture (input, context) of one attn2 during an unpatched forward."""
    mod = dict(unet.named_modules())[path]
    seen = {}
    h = mod.register_forward_pre_hook(lambda m, a, kw: seen.update(x=a[0], c=kw["context"]), with_kwargs=True)
    run(unet, x, ctx)
    h.remove()
    return mod, seen["x"], seen["c"]


def formula(mod, adapter, number, x, ctx, ip_tokens, scale):
    """out = to_out(Attn(q, K_text, V_text) + s * Attn(q, to_k_ip(c), to_v_ip(c))), written out by hand."""
    h = mod.heads
    d = mod.to_q.out_features // h

    def mha(q, k, v):
        sp = lambda t: t.reshape(t.shape[0], t.shape[1], h, d).permute(0, 2, 1, 3)
        w = torch.softmax(sp(q) @ sp(k).transpose(-1, -2) / d ** 0.5, dim=-1)
        return (w @ sp(v)).permute(0, 2, 1, 3).reshape(q.shape[0], q.shape[1], h * d)
    q = x @ mod.to_q.weight.T
    text = mha(q, ctx @ mod.to_k.weight.T, ctx @ mod.to_v.weight.T)
    k_ip, v_ip = (ip_tokens.expand(x.shape[0], -1, -1) @ lin.weight.T for lin in adapter.kv(number))
    return (text + scale * mha(q, k_ip, v_ip)) @ mod.to_out[0].weight.T + mod.to_out[0].bias


HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
              "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called", "_backward_hooks",
              "_state_dict_hooks", "_load_state_dict_pre_hooks")


def snapshot(model):
    """Per module: its own forward (if any), every hook dict's content, every attribute name, buffers."""
    return {n: (m.__dict__.get("forward"), {h: dict(getattr(m, h, {})) for h in HOOK_DICTS},
                sorted(m.__dict__), sorted(m._buffers)) for n, m in model.named_modules()}


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------ the formula
@pytest.mark.parametrize("fwd", ["ldm", "sdp", "fused"])
@pytest.mark.parametrize("layer_no", [1, 13, 31])
def test_decoupled_output_equals_the_formula(sd15, adapter, tokens, monkeypatch, fwd, layer_no):
    # the web UI swaps forward at class level; "fused" bypasses submodule hooks (fallback path)
    if fwd != "ldm":
        monkeypatch.setattr(fx.CrossAttention, "forward",
                            {"sdp": fx.sdp_forward, "fused": fx.fused_forward}[fwd])
    layer = next(l for l in table("sd15") if l.number == layer_no)
    mod, ax, actx = attn_inputs(sd15, layer.ldm, *inputs())
    with StylePatch(sd15, adapter, *tokens, blocks=[layer_no], scale=0.7):
        got = mod(ax, context=actx)
    want = formula(mod, adapter, layer_no, ax, actx, tokens[0], 0.7)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert not torch.allclose(got, mod(ax, context=actx), atol=1e-3)  # the IP term is really there


def chunked_forward(self, x, context=None, mask=None, **kwargs):
    """Rows processed in two chunks, each calling to_q and to_out: hooks fire twice per forward."""
    outs = []
    for part, c in zip(x.chunk(2), (x if context is None else context).chunk(2)):
        q, k, v = (fx.split_heads(t, self.heads) for t in (self.to_q(part), self.to_k(c), self.to_v(c)))
        outs.append(self.to_out(fx.merge_heads(F.scaled_dot_product_attention(q, k, v))))
    return torch.cat(outs)


def test_chunked_forward_falls_back_to_the_exact_formula(sd15, adapter, tokens, monkeypatch):
    monkeypatch.setattr(fx.CrossAttention, "forward", chunked_forward)
    layer = table("sd15")[6]
    mod, ax, actx = attn_inputs(sd15, layer.ldm, *inputs(4))
    with StylePatch(sd15, adapter, *tokens, blocks=[layer.number]) as p:
        p.set_rows(cfg_rows(2, 2))
        run(sd15, *inputs(4))  # sets the row slice for this call
        got = mod(ax, context=actx)
    want = torch.cat([formula(mod, adapter, layer.number, ax[:2], actx[:2], tokens[0], 1.0),
                      formula(mod, adapter, layer.number, ax[2:], actx[2:], tokens[1], 1.0)])
    assert torch.allclose(got, want, atol=1e-5)


def test_fast_path_applies_to_out_once_and_never_recomputes_q(sd15, adapter, tokens):
    layer = table("sd15")[0]
    mod, ax, actx = attn_inputs(sd15, layer.ldm, *inputs())
    calls = {"q": 0, "out": 0}
    hq = mod.to_q.register_forward_hook(lambda *a: calls.__setitem__("q", calls["q"] + 1))
    ho = mod.to_out[0].register_forward_hook(lambda *a: calls.__setitem__("out", calls["out"] + 1))
    try:
        with StylePatch(sd15, adapter, *tokens, blocks=[1]):
            mod(ax, context=actx)
    finally:
        hq.remove(), ho.remove()
    assert calls == {"q": 1, "out": 1}


def test_lora_style_class_level_linear_patch_keeps_working_inside(sd15, adapter, tokens, monkeypatch):
    # The web UI's Lora swaps nn.Linear.forward at class level; the IP term must see the LoRA'd to_q / to_out.
    layer = table("sd15")[4]
    mod, ax, actx = attn_inputs(sd15, layer.ldm, *inputs())
    deltas = {id(l): torch.randn(l.out_features, l.in_features) * 0.1 for l in (mod.to_q, mod.to_out[0])}
    orig = nn.Linear.forward
    monkeypatch.setattr(nn.Linear, "forward",
                        lambda self, t: orig(self, t) + (t @ deltas[id(self)].T if id(self) in deltas else 0))
    with StylePatch(sd15, adapter, *tokens, blocks=[layer.number]):
        got = mod(ax, context=actx)
    monkeypatch.setattr(nn.Linear, "forward", orig)
    lora = copy.deepcopy(mod)
    lora.to_q.weight.data += deltas[id(mod.to_q)]
    lora.to_out[0].weight.data += deltas[id(mod.to_out[0])]
    assert torch.allclose(got, formula(lora, adapter, layer.number, ax, actx, tokens[0], 1.0), atol=1e-5)


def test_class_forward_swapped_while_patched_is_followed(sd15, adapter, tokens, monkeypatch):
    layer = table("sd15")[2]
    mod, ax, actx = attn_inputs(sd15, layer.ldm, *inputs())
    calls = []
    with StylePatch(sd15, adapter, *tokens, blocks=[layer.number]):
        monkeypatch.setattr(fx.CrossAttention, "forward",
                            lambda self, *a, **k: calls.append(1) or fx.sdp_forward(self, *a, **k))
        got = mod(ax, context=actx)
    assert calls and torch.allclose(got, formula(mod, adapter, layer.number, ax, actx, tokens[0], 1.0),
                                    atol=1e-5)


# --------------------------------------------------------------------------------------------- identity cases
def test_scale_zero_is_bit_identical_to_unpatched(sd15, adapter, tokens):
    x, ctx = inputs()
    ref = run(sd15, x, ctx)
    with StylePatch(sd15, adapter, *tokens, blocks="all", scale=0.0):
        assert torch.equal(run(sd15, x, ctx), ref)


@pytest.mark.parametrize("blocks", [None, []])
def test_no_blocks_is_bit_identical_to_unpatched(sd15, adapter, tokens, blocks):
    x, ctx = inputs()
    ref = run(sd15, x, ctx)
    with StylePatch(sd15, adapter, *tokens, blocks=blocks) as p:
        p.set_rows(cfg_rows(1, 1))
        assert torch.equal(run(sd15, x, ctx), ref)


def test_unchosen_blocks_are_untouched(sd15, adapter, tokens):
    x, ctx = inputs()
    chosen = {l.ldm for l in resolve_blocks("sd15", "style")}
    outs = {}
    hooks = [m.register_forward_hook(lambda m, a, o, n=n: outs.__setitem__(n, o))
             for n, m in sd15.named_modules() if n.endswith("attn2")]
    try:
        ref_in = {}
        for l in table("sd15"):  # every layer, fed the same inputs, patched vs not
            mod, ax, actx = attn_inputs(sd15, l.ldm, x, ctx)
            ref_in[l.ldm] = (mod, ax, actx, mod(ax, context=actx))
        with StylePatch(sd15, adapter, *tokens, blocks="style"):
            for path, (mod, ax, actx, ref) in ref_in.items():
                same = torch.equal(mod(ax, context=actx), ref)
                assert same == (path not in chosen), path
                assert ("forward" in mod.__dict__) == (path in chosen)
    finally:
        for h in hooks:
            h.remove()


# ------------------------------------------------------------------------------------------------ restore
def test_restore_leaves_every_module_identical(sd15, adapter, tokens):
    before, sd_before = snapshot(sd15), state(sd15)
    p = StylePatch(sd15, adapter, *tokens, blocks="all").install()
    assert snapshot(sd15) != before
    run(sd15, *inputs())
    p.remove()
    assert snapshot(sd15) == before
    after = state(sd15)
    assert after.keys() == sd_before.keys() and all(torch.equal(after[k], sd_before[k]) for k in after)
    p.remove()  # twice is harmless
    assert snapshot(sd15) == before


def test_restore_keeps_a_preexisting_instance_forward_object(sd15, adapter, tokens):
    mod = dict(sd15.named_modules())[table("sd15")[0].ldm]
    own = fx.sdp_forward.__get__(mod)
    mod.forward = own
    try:
        with StylePatch(sd15, adapter, *tokens, blocks=[1]):
            assert mod.__dict__["forward"] is not own
        assert mod.__dict__["forward"] is own
    finally:
        del mod.__dict__["forward"]


def test_exception_mid_forward_still_restores(sd15, adapter, tokens, monkeypatch):
    before = snapshot(sd15)
    boom = lambda self, *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        with StylePatch(sd15, adapter, *tokens, blocks="all") as p:
            monkeypatch.setattr(fx.CrossAttention, "forward", boom)
            run(sd15, *inputs())
    monkeypatch.undo()
    assert snapshot(sd15) == before
    assert all(not lp.armed and lp.q is None for lp in p._patches.values())


def test_failed_forward_leaves_no_armed_state_for_the_next_call(sd15, adapter, tokens, monkeypatch):
    layer = table("sd15")[0]
    mod, ax, actx = attn_inputs(sd15, layer.ldm, *inputs())
    orig = fx.CrossAttention.forward

    def half_then_fail(self, x, context=None, mask=None):
        self.to_q(x)
        raise RuntimeError("oom")
    with StylePatch(sd15, adapter, *tokens, blocks=[1]):
        monkeypatch.setattr(fx.CrossAttention, "forward", half_then_fail)
        with pytest.raises(RuntimeError):
            mod(ax, context=actx)
        monkeypatch.setattr(fx.CrossAttention, "forward", orig)
        got = mod(ax, context=actx)
    assert torch.allclose(got, formula(mod, adapter, 1, ax, actx, tokens[0], 1.0), atol=1e-5)


def test_patching_twice_never_stacks(sd15, adapter, tokens):
    x, ctx = inputs()
    with StylePatch(sd15, adapter, *tokens, blocks="all") as p:
        once = run(sd15, x, ctx)
        p.install()  # same handle again: no-op
        assert torch.equal(run(sd15, x, ctx), once)
        q = StylePatch(sd15, adapter, *tokens, blocks="all").install()  # a second handle replaces the first
        assert not p.installed
        assert torch.equal(run(sd15, x, ctx), once)
        q.remove()
    assert torch.equal(run(sd15, x, ctx), run(sd15, x, ctx))


def test_a_new_patch_on_other_blocks_replaces_the_old_one(sd15, adapter, tokens):
    x, ctx = inputs()
    with StylePatch(sd15, adapter, *tokens, blocks=[1]):
        only_first = run(sd15, x, ctx)
    p = StylePatch(sd15, adapter, *tokens, blocks="style").install()
    q = StylePatch(sd15, adapter, *tokens, blocks=[1]).install()
    try:
        assert not p.installed
        assert sorted(n for n, m in sd15.named_modules() if "forward" in m.__dict__) == [table("sd15")[0].ldm]
        assert torch.equal(run(sd15, x, ctx), only_first)
    finally:
        q.remove(), p.remove()


def test_stale_handle_removal_does_not_clobber_the_new_patch(sd15, adapter, tokens):
    before = snapshot(sd15)
    p = StylePatch(sd15, adapter, *tokens, blocks="style").install()
    q = StylePatch(sd15, adapter, *tokens, blocks="style").install()
    p.remove()
    assert q.installed and all(lp.module.__dict__.get("forward") is lp.wrapper for lp in q._patches.values())
    q.remove()
    assert snapshot(sd15) == before


# ------------------------------------------------------------------------------------------------ rows
def per_row_refs(unet, adapter, tokens, x, ctx):
    with StylePatch(unet, adapter, *tokens, blocks="all") as p:
        p.set_rows(["cond"] * x.shape[0])
        cond = run(unet, x, ctx)
        p.set_rows(["uncond"] * x.shape[0])
        uncond = run(unet, x, ctx)
    assert not torch.allclose(cond, uncond, atol=1e-4)
    return cond, uncond


LAYOUTS = {  # (n_cond, n_uncond, UNet call sizes in order), as the web UI CFG denoiser makes them
    "one call": (2, 2, [4]),
    "separate calls": (2, 2, [2, 2]),
    "AND, batch 2, one call": (5, 2, [7]),          # repeats [3, 2]
    "AND, cond chunks then uncond": (5, 2, [2, 2, 1, 2]),
    "cond chunks of 2*batch": (5, 2, [4, 1, 2]),
    "skip uncond": (3, 2, [3]),
    "edit model": (1, 2, [3]),                       # [cond, uncond, uncond]
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_cond_rows_get_style_and_uncond_rows_zero_tokens(sd15, adapter, tokens, layout):
    n_cond, n_uncond, calls = LAYOUTS[layout]
    b = n_cond + n_uncond
    x, ctx = inputs(b, seed=5)
    cond, uncond = per_row_refs(sd15, adapter, tokens, x, ctx)
    roles = cfg_rows(n_cond, n_uncond)
    with StylePatch(sd15, adapter, *tokens, blocks="all") as p:
        for step in range(2):  # the plan is set once per sampling step
            p.set_rows(roles)
            start, outs = 0, []
            for size in calls:
                outs.append(run(sd15, x[start:start + size], ctx[start:start + size]))
                start += size
            got = torch.cat(outs)
            for i in range(start):
                want = cond[i] if roles[i] == "cond" else uncond[i]
                assert torch.allclose(got[i], want, atol=1e-5), (layout, step, i)


def test_unset_plan_means_every_row_is_conditional(sd15, adapter, tokens):
    x, ctx = inputs(3)
    cond, _ = per_row_refs(sd15, adapter, tokens, x, ctx)
    with StylePatch(sd15, adapter, *tokens, blocks="all"):
        assert torch.allclose(run(sd15, x, ctx), cond, atol=1e-6)


def test_plan_reused_when_a_step_does_not_announce_it(sd15, adapter, tokens):
    x, ctx = inputs(4)
    cond, uncond = per_row_refs(sd15, adapter, tokens, x, ctx)
    with StylePatch(sd15, adapter, *tokens, blocks="all") as p:
        p.set_rows(cfg_rows(2, 2))
        run(sd15, x[:2], ctx[:2])                     # step 1: cond rows only (uncond skipped)
        got = run(sd15, x, ctx)                       # step 2: full batch, same layout
    assert torch.allclose(got, torch.cat([cond[:2], uncond[2:]]), atol=1e-5)


def test_unknown_role_is_refused(sd15, adapter, tokens):
    with StylePatch(sd15, adapter, *tokens, blocks="all") as p:
        with pytest.raises(ValueError, match="'cond' or 'uncond'"):
            p.set_rows(["cond", "negative"])


def test_tiled_call_with_a_multiple_of_the_plan_repeats_it(sd15, adapter, tokens):
    """Tiled Diffusion / MultiDiffusion run the UNet on tiles stacked along the batch: [cond, uncond] per
    tile."""
    x, ctx = inputs(6, seed=7)
    cond, uncond = per_row_refs(sd15, adapter, tokens, x, ctx)
    with StylePatch(sd15, adapter, *tokens, blocks="all") as p:
        p.set_rows(cfg_rows(1, 1))
        got = run(sd15, x, ctx)       # three tiles
        again = run(sd15, x[:2], ctx[:2])  # then a plain call of the planned size
    want = torch.stack([cond[i] if i % 2 == 0 else uncond[i] for i in range(6)])
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(again, torch.stack([cond[0], uncond[1]]), atol=1e-5)


def test_rows_that_do_not_fit_the_plan_run_unstyled_warn_once_never_raise(sd15, adapter, tokens, caplog):
    x, ctx = inputs(5)
    plain = run(sd15, x, ctx)
    with StylePatch(sd15, adapter, *tokens, blocks="all") as p:
        p.set_rows(cfg_rows(2, 2))
        with caplog.at_level(logging.WARNING, logger="stylus"):
            first, second = run(sd15, x, ctx), run(sd15, x, ctx)
    assert torch.equal(first, plain) and torch.equal(second, plain)
    lines = [r.getMessage() for r in caplog.records if "rows" in r.getMessage()]
    assert len(lines) == 1 and "5" in lines[0] and "4" in lines[0] and "\n" not in lines[0]


def test_an_error_inside_a_patched_layer_never_escapes_the_unet(sd15, adapter, tokens, caplog):
    x, ctx = inputs(2)
    plain = run(sd15, x, ctx)
    with StylePatch(sd15, adapter, *tokens, blocks="all") as p:
        for proc in p._patches.values():
            proc.k_c = proc.k_c[..., :3]  # any failure inside the style term
        with caplog.at_level(logging.WARNING, logger="stylus"):
            got = run(sd15, x, ctx)
    assert torch.equal(got, plain)
    assert len([r for r in caplog.records if "Stylus" in r.getMessage()]) == 1


def test_bool_tensor_roles(sd15, adapter, tokens):
    x, ctx = inputs(2)
    cond, uncond = per_row_refs(sd15, adapter, tokens, x, ctx)
    with StylePatch(sd15, adapter, *tokens, blocks="all") as p:
        p.set_rows(torch.tensor([False, True]))
        got = run(sd15, x, ctx)
    assert torch.allclose(got, torch.stack([uncond[0], cond[1]]), atol=1e-5)


def test_several_references_concatenate_their_tokens(sd15, adapter, tokens):
    layer = table("sd15")[3]
    mod, ax, actx = attn_inputs(sd15, layer.ldm, *inputs())
    two = adapter.project(torch.randn(2, 24))
    with StylePatch(sd15, adapter, two, tokens[1].repeat(2, 1, 1), blocks=[layer.number]):
        got = mod(ax, context=actx)
    assert torch.allclose(got, formula(mod, adapter, layer.number, ax, actx, two.reshape(1, -1, fx.CTX), 1.0),
                          atol=1e-5)


# ------------------------------------------------------------------------------------------------ shapes
def test_adapter_for_other_architecture_is_refused_by_name(adapter, tokens):
    with pytest.raises(ShapeMismatchError, match="for sd15 but the UNet is sdxl"):
        StylePatch(fx.tiny_sdxl(), adapter, *tokens)


def test_layer_width_mismatch_names_the_layer(sd15, tokens):
    sd = fx.adapter_state_dict(sd15, "sd15")
    sd["ip_adapter.15.to_k_ip.weight"] = torch.zeros(99, fx.CTX)
    sd["ip_adapter.15.to_v_ip.weight"] = torch.zeros(99, fx.CTX)
    bad = ipa.from_parts(fx.nest(sd))
    with pytest.raises(ShapeMismatchError,
                       match=r"layer 15 \(output_blocks.4.1.transformer_blocks.0.attn2\): "
                             r"to_k_ip is Linear\(64 -> 99\) but the UNet's to_k is "
                             r"Linear\(64 -> 128\)"):
        StylePatch(sd15, bad, *tokens)


def test_token_shape_mismatch(sd15, adapter, tokens):
    with pytest.raises(ShapeMismatchError, match="cond tokens"):
        StylePatch(sd15, adapter, tokens[0], tokens[1][:, :2])


def test_detect_arch(sd15):
    assert detect_arch(sd15) == "sd15" and detect_arch(fx.tiny_sdxl()) == "sdxl"
    wrapper = nn.Module()
    wrapper.diffusion_model = sd15  # a parent (e.g. sd_model.model) is accepted
    assert detect_arch(wrapper) == "sd15"


def test_sdxl_style_patch_touches_only_output_blocks_1_1(adapter):
    xl = fx.tiny_sdxl()
    xad = ipa.from_parts(fx.nest(fx.adapter_state_dict(xl, "sdxl")))
    toks = xad.project(torch.randn(1, 24)), xad.project(torch.zeros(1, 24))
    with StylePatch(xl, xad, *toks, blocks="style"):
        patched = sorted(n for n, m in xl.named_modules() if "forward" in m.__dict__)
    assert (patched == sorted(l.ldm for l in table("sdxl") if l.block == "output_blocks.1.1")
            and len(patched) == 10)


@pytest.mark.parametrize("chunks", [[0, 1], [1, 0], [1, 0, 0, 1]])
def test_forge_rows_from_transformer_options(sd15, adapter, tokens, chunks, monkeypatch):
    """Forge calls attn2 with transformer_options["cond_or_uncond"] (one flag per equal chunk of rows): those
    rows get the style tokens (0) or the zero-image tokens (1) without any row plan."""
    monkeypatch.setattr(fx.CrossAttention, "forward", fx.sdp_forward)  # Forge's forward takes **kwargs
    layer = next(l for l in table("sd15") if l.number == 13)
    mod, ax, actx = attn_inputs(sd15, layer.ldm, *inputs(b=len(chunks) * 2, seed=9))
    with StylePatch(sd15, adapter, *tokens, blocks=[13], scale=0.7):
        got = mod(ax, context=actx, transformer_options={"cond_or_uncond": chunks})
    for i, flag in enumerate(c for c in chunks for _ in range(2)):
        want = formula(mod, adapter, 13, ax[i:i + 1], actx[i:i + 1], tokens[flag], 0.7)
        assert torch.allclose(got[i:i + 1], want, atol=1e-5), (chunks, i)
