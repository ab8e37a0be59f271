"""Cross-attention layer tables: diffusers names <-> web UI (ldm/sgm) paths <-> IP-Adapter key numbers.

IP-Adapter numbers its processors in diffusers' ``attn_processors`` order (down -> up -> mid), giving only the
cross-attention ones odd numbers ``2j+1``. The web UI names the same modules by ldm paths, executed in the order
input -> middle -> output, so both orders are kept explicit here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence, Tuple, Union

from ..errors import InvalidSetting


@dataclass(frozen=True)
class AttnLayer:
    number: int      # IP-Adapter key number: ip_adapter.{number}.to_k_ip.weight
    diffusers: str   # e.g. up_blocks.0.attentions.1.transformer_blocks.3.attn2
    ldm: str         # e.g. output_blocks.1.1.transformer_blocks.3.attn2 (relative to the UNetModel)

    @property
    def block(self) -> str:
        """The ldm SpatialTransformer path, e.g. ``output_blocks.1.1``."""
        return self.ldm.split(".transformer_blocks.")[0]


# (diffusers prefix, ldm block, transformer depth), in diffusers order down -> up -> mid.
_SD15 = [("down_blocks.%d.attentions.%d" % (i, j), "input_blocks.%d.1" % (1 + 3 * i + j), 1)
         for i in range(3) for j in range(2)]
_SD15 += [("up_blocks.%d.attentions.%d" % (i, j), "output_blocks.%d.1" % (3 * i + j), 1)
          for i in range(1, 4) for j in range(3)]
_SD15 += [("mid_block.attentions.0", "middle_block.1", 1)]

_SDXL_DOWN_DEPTH = {1: 2, 2: 10}
_SDXL_UP_DEPTH = {0: 10, 1: 2}
_SDXL = [("down_blocks.%d.attentions.%d" % (i, j), "input_blocks.%d.1" % (1 + 3 * i + j), d)
         for i, d in _SDXL_DOWN_DEPTH.items() for j in range(2)]
_SDXL += [("up_blocks.%d.attentions.%d" % (i, j), "output_blocks.%d.1" % (3 * i + j), d)
          for i, d in _SDXL_UP_DEPTH.items() for j in range(3)]
_SDXL += [("mid_block.attentions.0", "middle_block.1", 10)]


def _expand(blocks) -> Tuple[AttnLayer, ...]:
    layers = []
    for diff, ldm, depth in blocks:
        for k in range(depth):
            tb = ".transformer_blocks.%d.attn2" % k
            layers.append(AttnLayer(2 * len(layers) + 1, diff + tb, ldm + tb))
    return tuple(layers)


TABLES: Dict[str, Tuple[AttnLayer, ...]] = {"sd15": _expand(_SD15), "sdxl": _expand(_SDXL)}

# Presets. SDXL ones are InstantStyle's. SD1.5 "style" and "style+layout" are the authors' SD1.5 example
# (infer_style_sd15.py: up_blocks.1; down_blocks.2 + mid_block + up_blocks.1), which they call experimental and
# less clear-cut than SDXL's; "style-wide" is the popular ComfyUI style-transfer set.
PRESETS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "sdxl": {
        "style": ("up_blocks.0.attentions.1",),
        "style+layout": ("up_blocks.0.attentions.1", "down_blocks.2.attentions.1"),
        "all": ("down_blocks", "up_blocks", "mid_block"),
    },
    "sd15": {
        "style": ("up_blocks.1",),
        "style+layout": ("down_blocks.2", "mid_block", "up_blocks.1"),
        "style-wide": ("input_blocks.1.1", "input_blocks.2.1", "input_blocks.4.1", "input_blocks.5.1",
                       "output_blocks.5.1", "output_blocks.6.1", "output_blocks.7.1", "output_blocks.8.1",
                       "output_blocks.9.1", "output_blocks.10.1", "output_blocks.11.1"),
        "all": ("down_blocks", "up_blocks", "mid_block"),
    },
}

Selector = Union[str, int]


def table(arch: str) -> Tuple[AttnLayer, ...]:
    if arch not in TABLES:
        raise ValueError("unknown architecture %r; expected one of %s" % (arch, sorted(TABLES)))
    return TABLES[arch]


def _matches(name: str, prefix: str) -> bool:
    # Dotted-prefix match, so "up_blocks.1" never matches "up_blocks.10".
    return name == prefix or name.startswith(prefix + ".")


def _select_one(layers: Sequence[AttnLayer], sel: Selector) -> List[AttnLayer]:
    if isinstance(sel, int) and not isinstance(sel, bool):
        return [l for l in layers if l.number == sel]
    sel = str(sel).strip()
    if sel.isdigit():
        return _select_one(layers, int(sel))
    return [l for l in layers if _matches(l.diffusers, sel) or _matches(l.ldm, sel)]


def resolve_blocks(arch: str, blocks: Union[str, Iterable[Selector], None]) -> List[AttnLayer]:
    """Layers chosen by a preset name, or by a list of selectors (diffusers or ldm dotted prefixes, or IP-Adapter
    key numbers). Returned in table order; an unknown preset or a selector that matches nothing raises."""
    layers = table(arch)
    if blocks is None:
        return []
    if isinstance(blocks, str):
        if blocks in PRESETS[arch]:
            blocks = PRESETS[arch][blocks]
        else:
            blocks = [b for b in blocks.split(",") if b.strip()]
    chosen = set()
    for sel in blocks:
        found = _select_one(layers, sel)
        if not found:
            raise InvalidSetting("block %r matches no %s cross-attention layer; presets: %s; blocks: %s"
                                 % (sel, arch, ", ".join(PRESETS[arch]), ", ".join(_block_names(layers))))
        chosen.update(l.number for l in found)
    return [l for l in layers if l.number in chosen]


def _block_names(layers: Sequence[AttnLayer]) -> List[str]:
    seen = []
    for l in layers:
        if l.block not in seen:
            seen.append(l.block)
    return seen
