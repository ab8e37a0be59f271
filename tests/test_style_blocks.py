import pytest

from lib_stylus.style.blocks import PRESETS, resolve_blocks, table


def test_sd15_table_has_16_layers_numbered_1_to_31_down_up_mid():
    t = table("sd15")
    assert len(t) == 16 and [l.number for l in t] == list(range(1, 32, 2))
    assert [l.block for l in t] == (["input_blocks.%d.1" % n for n in (1, 2, 4, 5, 7, 8)]
                                    + ["output_blocks.%d.1" % n for n in range(3, 12)] + ["middle_block.1"])
    assert t[-1].number == 31 and t[-1].diffusers == "mid_block.attentions.0.transformer_blocks.0.attn2"


def test_sdxl_table_has_70_layers_numbered_1_to_139():
    t = table("sdxl")
    assert len(t) == 70 and [l.number for l in t] == list(range(1, 140, 2))
    assert len({l.ldm for l in t}) == 70 and len({l.diffusers for l in t}) == 70


@pytest.mark.parametrize("block, numbers", [
    ("output_blocks.1.1", range(69, 88, 2)),
    ("input_blocks.8.1", range(29, 48, 2)),
    ("middle_block.1", range(121, 140, 2)),
    ("input_blocks.4.1", (1, 3)),
    ("output_blocks.5.1", (117, 119)),
])
def test_sdxl_ldm_block_maps_to_ip_adapter_numbers(block, numbers):
    assert [l.number for l in table("sdxl") if l.block == block] == list(numbers)


@pytest.mark.parametrize("diffusers, ldm", [
    ("down_blocks.1.attentions.0", "input_blocks.4.1"), ("down_blocks.2.attentions.1", "input_blocks.8.1"),
    ("up_blocks.0.attentions.1", "output_blocks.1.1"), ("up_blocks.1.attentions.2", "output_blocks.5.1"),
    ("mid_block.attentions.0", "middle_block.1")])
def test_sdxl_diffusers_names_map_to_ldm_paths(diffusers, ldm):
    assert {l.block for l in resolve_blocks("sdxl", [diffusers])} == {ldm}


def test_sd15_diffusers_names_map_to_ldm_paths():
    pairs = {l.diffusers.split(".transformer_blocks")[0]: l.block for l in table("sd15")}
    assert pairs["down_blocks.0.attentions.0"] == "input_blocks.1.1"
    assert pairs["down_blocks.2.attentions.1"] == "input_blocks.8.1"
    assert pairs["up_blocks.1.attentions.0"] == "output_blocks.3.1"
    assert pairs["up_blocks.3.attentions.2"] == "output_blocks.11.1"


def test_sdxl_presets():
    assert [l.number for l in resolve_blocks("sdxl", "style")] == list(range(69, 88, 2))
    assert ([l.number for l in resolve_blocks("sdxl", "style+layout")]
            == list(range(29, 48, 2)) + list(range(69, 88, 2)))
    assert len(resolve_blocks("sdxl", "all")) == 70


def test_sd15_presets():
    assert {l.block for l in resolve_blocks("sd15", "style")} == {"output_blocks.%d.1" % n for n in (3, 4, 5)}
    wide = {l.block for l in resolve_blocks("sd15", "style-wide")}
    assert wide == ({"input_blocks.%d.1" % n for n in (1, 2, 4, 5)}
                    | {"output_blocks.%d.1" % n for n in range(5, 12)})
    assert len(resolve_blocks("sd15", "all")) == 16
    # InstantStyle's SD1.5 example (infer_style_sd15.py): style+layout = down_blocks.2, mid_block, up_blocks.1
    layout = {l.block for l in resolve_blocks("sd15", "style+layout")}
    assert layout == {"input_blocks.7.1", "input_blocks.8.1", "middle_block.1"} | {"output_blocks.%d.1" % n
                                                                                 for n in (3, 4, 5)}
    assert set(PRESETS["sd15"]) >= {"style", "style+layout", "style-wide", "all"}


def test_custom_selectors_ldm_diffusers_numbers_and_comma_string():
    got = resolve_blocks("sdxl", ["output_blocks.1.1.transformer_blocks.3", 121,
                                  "down_blocks.1.attentions.0"])
    assert [l.number for l in got] == [1, 3, 75, 121]
    assert [l.number for l in resolve_blocks("sd15", "input_blocks.1.1, 31")] == [1, 31]
    assert resolve_blocks("sd15", None) == [] and resolve_blocks("sd15", []) == []


def test_prefix_match_respects_dots():
    # "output_blocks.1" must not pick output_blocks.10 / .11
    with pytest.raises(ValueError):
        resolve_blocks("sd15", ["output_blocks.1"])  # SD1.5 output_blocks.1 has no attention
    assert {l.block for l in resolve_blocks("sd15", ["output_blocks.11"])} == {"output_blocks.11.1"}


@pytest.mark.parametrize("bad", [["up_blocks.7"], [2], ["nonsense"], "stlye"])
def test_unknown_selector_raises_with_choices(bad):
    with pytest.raises(ValueError, match="matches no"):
        resolve_blocks("sdxl", bad)


def test_unknown_arch_raises():
    with pytest.raises(ValueError, match="unknown architecture"):
        table("sd3")
