"""Model files Stylus needs at run time: found where users already have them (models/stylus, sd-webui-controlnet's
models/ControlNet and clip_vision downloads), else downloaded on first use into models/stylus via huggingface_hub
(console progress bars). Offline: a clear message naming the file and where to put it; nothing is raised past
the caller, which goes on without the feature."""
from __future__ import annotations

import glob
import logging
import os

from ..errors import StylusUserError
from . import host

log = logging.getLogger("stylus")

MINILM = ("sentence-transformers/all-MiniLM-L6-v2",
          ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
           "special_tokens_map.json"])
# arch -> (hub repo, adapter file, image encoder folder in the repo, file names users keep elsewhere)
IP_ADAPTERS = {
    "sd15": ("h94/IP-Adapter", "models/ip-adapter_sd15.safetensors", "models/image_encoder", ["clip_h.pth"]),
    "sdxl": ("h94/IP-Adapter", "sdxl_models/ip-adapter_sdxl.safetensors", "sdxl_models/image_encoder", ["clip_g.pth"]),
}
VIT_H_TEXT = ("laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
              ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.json",
               "merges.txt", "special_tokens_map.json"])


class ModelUnavailable(StylusUserError, RuntimeError):
    pass


def _download(repo: str, files: list, local_dir: str, what: str) -> str:
    """Fetch files from the hub into local_dir (skipping present ones); the error names what to place by hand."""
    missing = [f for f in files if not os.path.isfile(os.path.join(local_dir, f))]
    if not missing:
        return local_dir
    try:
        from huggingface_hub import hf_hub_download
        for name in missing:
            log.info("Stylus: downloading %s/%s (%s) into %s", repo, name, what, local_dir)
            host.state().textinfo = f"Stylus: downloading {what}"
            hf_hub_download(repo, name, local_dir=local_dir)
    except Exception as e:
        raise ModelUnavailable(
            f"Stylus needs {what} but could not download it ({e.__class__.__name__}). Download "
            f"{', '.join(missing)} from https://huggingface.co/{repo} and put them in {local_dir}") from None
    return local_dir


def sentence_encoder() -> str:
    from ..embedding import bundled_minilm
    bundled = bundled_minilm()
    if bundled:
        return bundled
    return _download(MINILM[0], MINILM[1], os.path.join(host.models_dir(), "all-MiniLM-L6-v2"),
                     "the all-MiniLM-L6-v2 sentence encoder (90 MB)")


def _search_dirs() -> list:
    from modules import paths
    return [host.models_dir(), os.path.join(paths.models_path, "ControlNet"), os.path.join(paths.models_path, "ipadapter"),
            os.path.join(paths.extensions_dir, "sd-webui-controlnet", "annotator", "downloads", "clip_vision"),
            os.path.join(paths.models_path, "clip_vision")]


def list_ip_adapters() -> list:
    """IP-Adapter files the user already has, for the UI's choice."""
    found = []
    for d in _search_dirs():
        for ext in ("safetensors", "bin", "pth"):
            found += [p for p in glob.glob(os.path.join(d, f"*ip*adapter*.{ext}")) if "faceid" not in p.lower()]
    return sorted(dict.fromkeys(found))


def list_image_encoders() -> list:
    found = []
    for d in _search_dirs():
        found += glob.glob(os.path.join(d, "clip_[hg].pth")) + glob.glob(os.path.join(d, "*image_encoder*"))
        found += glob.glob(os.path.join(d, "*CLIP-ViT-*.safetensors"))
    return sorted(dict.fromkeys(found))


def _user_choice(choice: str, what: str) -> str | None:
    """A file the user picked in the UI or passed to the API (None for "auto")."""
    if not choice or choice == "auto":
        return None
    if not os.path.exists(choice):
        raise ModelUnavailable(f"Stylus: {what} {choice} not found")
    return choice


def ip_adapter(arch: str, choice: str = "auto") -> str:
    if _user_choice(choice, "IP-Adapter file"):
        return choice
    repo, file, _, _ = IP_ADAPTERS[arch]
    base = os.path.basename(file)
    for path in list_ip_adapters():
        if os.path.basename(path) == base:
            return path  # e.g. sd-webui-controlnet's copy: no second download
    local = os.path.join(host.models_dir(), "ip-adapter")
    _download(repo, [file], local, f"the IP-Adapter {base}")
    return os.path.join(local, file)


def image_encoder(arch: str, choice: str = "auto") -> str:
    if _user_choice(choice, "image encoder"):
        return choice
    repo, _, folder, known = IP_ADAPTERS[arch]
    for path in list_image_encoders():
        if os.path.basename(path) in known:
            return path
    local = os.path.join(host.models_dir(), "ip-adapter")
    _download(repo, [f"{folder}/config.json", f"{folder}/model.safetensors"], local,
              f"the CLIP image encoder of {os.path.basename(IP_ADAPTERS[arch][1])}")
    return os.path.join(local, folder)


def vit_h_text() -> str:
    return _download(VIT_H_TEXT[0], VIT_H_TEXT[1], os.path.join(host.models_dir(), "CLIP-ViT-H-14-laion2B"),
                     "the ViT-H-14 CLIP text tower (for content subtraction with SD1.5 IP-Adapters)")


def list_ip_adapters_safe() -> list:
    try:
        return list_ip_adapters()
    except Exception:  # the UI must build even if a folder is unreadable
        return []


def list_image_encoders_safe() -> list:
    try:
        return list_image_encoders()
    except Exception:
        return []
