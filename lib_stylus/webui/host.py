"""Everything Stylus asks of the host web UI, in one place (A1111 1.10 and Forge share these names)."""
from __future__ import annotations

import contextlib
import os

from modules import paths, shared

SETTINGS_SECTION = ("stylus", "Stylus")


def opt(key: str, default=None):
    return getattr(shared.opts, key, default)


def is_forge() -> bool:
    return hasattr(shared.sd_model, "forge_objects")


def encodes_with_sgm_conditioner(model) -> bool:
    """An SDXL prompt goes through sgm's GeneralConditioner (get_learned_conditioning: 'vector' led by the
    second text encoder's pooled projection) on A1111 and on Forge Classic, which keeps the web UI's sgm model
    and loads its own text encoders' weights into it. Forge 2 encodes in its own engine: no conditioner."""
    return hasattr(model, "get_learned_conditioning") and (not is_forge() or hasattr(model, "conditioner"))


def unet():
    """The UNet module tree: ldm/sgm on A1111, Forge's own (same block and attn2 names) on Forge."""
    model = shared.sd_model
    if hasattr(model, "forge_objects"):
        return model.forge_objects.unet.model.diffusion_model
    return model.model.diffusion_model


def models_dir() -> str:
    """Our own model folder, models/stylus (a setting may move it)."""
    return opt("stylus_models_dir", "") or os.path.join(paths.models_path, "stylus")


def cache_dir() -> str:
    return opt("stylus_cache_dir", "") or os.path.join(models_dir(), "cache")


def lora_dirs() -> list:
    """The folders the web UI's Lora extension lists (only their files resolve in a <lora:...> tag)."""
    dirs = [getattr(shared.cmd_opts, "lora_dir", "") or os.path.join(paths.models_path, "Lora")]
    lyco = getattr(shared.cmd_opts, "lyco_dir_backcompat", "")
    if lyco and os.path.isdir(lyco):
        dirs.append(lyco)
    return list(dict.fromkeys(os.path.abspath(d) for d in dirs))


def list_hidden_files() -> bool:
    return bool(opt("list_hidden_files", True))


def loaded_base() -> str:
    """The loaded checkpoint's family; "other" for bases Stylus does not serve (SD3, Flux)."""
    model = shared.sd_model
    if model is None:
        return "sd1"
    if getattr(model, "is_sdxl", False):
        return "sdxl"
    if getattr(model, "is_sd2", False):
        return "sd2"
    if getattr(model, "is_sd1", True) and not getattr(model, "is_sd3", False):
        return "sd1"
    return "other"


def state():
    return shared.state


def registry() -> tuple:
    """(file stems, every name a <lora:NAME> tag resolves: stems and unambiguous aliases) of the built-in Lora
    extension, or (None, None) where it is absent or lists nothing."""
    try:
        import networks  # extensions-builtin/Lora (or Forge's sd_forge_lora), loaded before extensions
    except ImportError:
        return None, None
    # Read only: networks.list_available_networks() clears and refills these dicts and belongs to the host's
    # own threads (start-up, the Lora tab's Refresh); each is copied in one step before use.
    stems = set(_listed(networks, "available_networks"))
    if not stems:
        return None, None  # not listed yet, or caught half-way through a rebuild: drop nothing
    forbidden = set(_listed(networks, "forbidden_network_aliases"))
    aliases = {a for a in _listed(networks, "available_network_aliases") if a.lower() not in forbidden}
    return stems, stems | aliases


def _listed(networks, name: str) -> dict:
    return dict(getattr(networks, name, None) or {})


def model_loading():
    """The web UI's model-loading lock (sd_models.model_data.lock, held while its first checkpoint loads,
    at start-up in a thread of its own). Meanwhile sd_disable_initialization replaces torch's module functions
    for every thread (InitializeOnMeta: Module.to returns None, layers are built on the meta device): a model
    of ours built then comes out broken. A host without that lock: nothing to wait for."""
    from modules import sd_models
    lock = getattr(getattr(sd_models, "model_data", None), "lock", None)
    return lock if lock is not None else contextlib.nullcontext()
