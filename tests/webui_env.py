"""Load scripts/stylus.py inside the web UI stub, with a real tiny LoRA library as the web UI's Lora
folder."""
from __future__ import annotations

import importlib.util
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STUB = os.path.join(HERE, "webui_stub")


def use_stub() -> None:
    """Make `modules.*` and `networks` resolve to the web UI stub."""
    if STUB not in sys.path:
        sys.path.insert(0, STUB)


def load_script(lora_dir: str, cache_dir: str, base: str = "sd1"):
    use_stub()
    from modules import shared
    import networks
    shared.cmd_opts.lora_dir = lora_dir
    shared.opts.data["stylus_cache_dir"] = cache_dir
    shared.sd_model = types.SimpleNamespace(is_sdxl=base == "sdxl", is_sd2=base == "sd2",
                                            is_sd1=base == "sd1")
    names = {os.path.splitext(f)[0] for f in os.listdir(lora_dir) if f.endswith(".safetensors")}
    networks.available_networks = {n: object() for n in names}
    networks.available_network_aliases = dict(networks.available_networks)
    spec = importlib.util.spec_from_file_location("stylus_script_under_test",
                                                  os.path.join(ROOT, "scripts", "stylus.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeP:
    """The fields of StableDiffusionProcessing that Script.process sees (after setup_prompts, before
    batches)."""
    def __init__(self, prompts, seeds, batch_size=1, negatives=None, hr=False):
        self.all_prompts = list(prompts)
        self.all_negative_prompts = list(negatives or [""] * len(prompts))
        self.all_seeds = list(seeds)
        self.batch_size = batch_size
        self.n_iter = len(prompts) // batch_size
        self.enable_hr = hr
        self.all_hr_prompts = list(prompts) if hr else []
        self.extra_generation_params = {}
        # setup_prompts() sets these from the first prompt; the grid's infotext is made from them
        self.main_prompt = self.all_prompts[0] if self.all_prompts else ""
        self.main_negative_prompt = self.all_negative_prompts[0] if self.all_negative_prompts else ""
        self.iteration = 0
