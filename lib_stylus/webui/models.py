"""Model files Stylus needs at run time: found where users already have them (models/stylus,
sd-webui-controlnet's models/ControlNet and clip_vision downloads, ComfyUI-style models/ipadapter and
models/clip_vision), else downloaded on first use into models/stylus via huggingface_hub (console progress
bars).

Offline (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``), or after a download failed once in this session,
the hub is not called again: a :class:`ModelUnavailable` names the file, its size and a folder where Stylus
WILL find it once put there. The caller goes on without the feature."""
from __future__ import annotations

import glob
import logging
import os

from . import host
from ..errors import StylusUserError

log = logging.getLogger("stylus")

HUB = "h94/IP-Adapter"
MINILM = ("sentence-transformers/all-MiniLM-L6-v2",
          ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
           "special_tokens_map.json"])
# model family -> (file in h94/IP-Adapter that "auto" fetches, its size)
AUTO_ADAPTERS = {"sd15": ("models/ip-adapter_sd15.safetensors", "44 MB"),
                 "sdxl": ("sdxl_models/ip-adapter_sdxl.safetensors", "703 MB")}
# CLIP space -> (encoder folder in h94/IP-Adapter, single-file names other tools keep, its size)
IMAGE_ENCODERS = {
    "vit-h": ("models/image_encoder", ["clip_h.pth", "CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors"],
              "2.5 GB"),
    "vit-bigG": ("sdxl_models/image_encoder",
                 ["clip_g.pth", "CLIP-ViT-bigG-14-laion2B-39B-b160k.safetensors"], "3.7 GB"),
}
FAMILY_SPACE = {"sd15": "vit-h", "sdxl": "vit-bigG"}  # the space of each family's default adapter
ENCODER_FILES = ["config.json", "model.safetensors"]
VIT_H_TEXT = ("laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
              ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.json",
               "merges.txt", "special_tokens_map.json"], "3.9 GB")
_FAILED: dict = {}  # (repo, file) -> why its download failed, for the rest of the session


class ModelUnavailable(StylusUserError, RuntimeError):
    """A model file is not on this machine and cannot be downloaded now. ``folder`` and ``files``: where to
    put what, by hand, for Stylus to find it."""

    def __init__(self, message: str, folder: str = "", files=()):
        super().__init__(message)
        self.folder, self.files = folder, list(files)


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def offline() -> str:
    """The variable that makes the web UI offline ("" when online). The web UI 1.10.1 has no offline flag of
    its own; huggingface_hub reads either variable as offline."""
    on = ("1", "true", "yes", "on")
    return next((v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip().lower() in on), "")


def _download(repo: str, files: list, local_dir: str, what: str, folder: str = "", progress=None) -> str:
    """Fetch files from the hub into local_dir (skipping present ones). Offline, or when one of them already
    failed this session, the hub is not called; the error names the folder where the files will be found.
    ``progress(file, number, count)`` is told of each file; without it, the generation's status line is."""
    missing = [f for f in files if not os.path.isfile(os.path.join(local_dir, f))]
    if not missing:
        return local_dir
    folder = folder or local_dir
    names = [os.path.basename(f) for f in missing]

    def unavailable(reason: str) -> ModelUnavailable:
        where = ", ".join(f"https://huggingface.co/{repo}/blob/main/{f}" for f in missing)
        return ModelUnavailable(f"Stylus needs {what} but {reason}. Download {where} and put "
                                f"{'it' if len(missing) == 1 else 'them'} in {folder}", folder, names)
    variable = offline()
    if variable:
        raise unavailable(f"the web UI is offline ({variable})")
    earlier = next((_FAILED[(repo, f)] for f in missing if (repo, f) in _FAILED), None)
    if earlier:
        raise unavailable(f"its download failed earlier in this session ({earlier})")
    from huggingface_hub import hf_hub_download
    for number, name in enumerate(missing, 1):
        log.info("Stylus: downloading %s/%s (%s) into %s", repo, name, what, local_dir)
        if progress is not None:
            progress(name, number, len(missing))
        else:
            host.state().textinfo = f"Stylus: downloading {what}"
        try:
            hf_hub_download(repo, name, local_dir=local_dir)
        except Exception as e:  # any failure: remembered, so later jobs do not wait on the hub again
            _FAILED[(repo, name)] = e.__class__.__name__
            raise unavailable(f"could not download it ({e.__class__.__name__})") from None
    return local_dir


def sentence_encoder_dir() -> str:
    """Where Stylus downloads all-MiniLM-L6-v2 to, and finds it put there by hand."""
    return os.path.join(host.models_dir(), "all-MiniLM-L6-v2")


def sentence_encoder_on_disk() -> str | None:
    """The all-MiniLM-L6-v2 folder when it is on this machine (the offline package, or a whole download), else
    None. Never calls the hub: cheap enough to ask before every compose."""
    from ..embedding import bundled_minilm
    bundled = bundled_minilm()
    if bundled:
        return bundled
    folder = sentence_encoder_dir()
    return folder if all(os.path.isfile(os.path.join(folder, f)) for f in MINILM[1]) else None


def sentence_encoder(progress=None, retry: bool = False) -> str:
    """all-MiniLM-L6-v2's folder, downloaded when it is not on disk (90 MB: a caller that must not wait runs
    this in a thread of its own). ``retry``: call the hub again even though it failed earlier this session."""
    found = sentence_encoder_on_disk()
    if found:
        return found
    if retry:
        for name in MINILM[1]:
            _FAILED.pop((MINILM[0], name), None)
    what = "the all-MiniLM-L6-v2 sentence encoder (90 MB)"
    return _download(MINILM[0], MINILM[1], sentence_encoder_dir(), what, progress=progress)


def ip_dir() -> str:
    """Stylus's own IP-Adapter folder: files put here by hand, and the hub's layout of its downloads."""
    return os.path.join(host.models_dir(), "ip-adapter")


def _search_dirs() -> list:
    """Every folder Stylus looks in, in order of preference (its own first)."""
    from modules import paths
    return [ip_dir(), host.models_dir(), os.path.join(paths.models_path, "ControlNet"),
            os.path.join(paths.models_path, "ipadapter"),
            os.path.join(paths.extensions_dir, "sd-webui-controlnet", "annotator", "downloads",
                         "clip_vision"),
            os.path.join(paths.models_path, "clip_vision")]


def _hub_subdirs() -> list:
    """Where the hub's layout puts downloads inside ip_dir() (models/..., sdxl_models/...)."""
    return [os.path.join(ip_dir(), os.path.dirname(f)) for f, _ in AUTO_ADAPTERS.values()]


def list_ip_adapters() -> list:
    """IP-Adapter files the user already has, in search order, for the UI's choice."""
    found = []
    for d in _search_dirs() + _hub_subdirs():
        for ext in ("safetensors", "bin", "pth"):
            hits = glob.glob(os.path.join(d, f"*ip*adapter*.{ext}"))
            found += sorted(p for p in hits if "faceid" not in p.lower())
    return list(dict.fromkeys(found))


def _is_encoder_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json")) and any(
        os.path.isfile(os.path.join(path, w)) for w in ("model.safetensors", "pytorch_model.bin"))


def list_image_encoders() -> list:
    found = []
    for d in _search_dirs():
        found += sorted(glob.glob(os.path.join(d, "clip_[hg].pth")))
        found += sorted(glob.glob(os.path.join(d, "*image_encoder*")))
        found += sorted(glob.glob(os.path.join(d, "*CLIP-ViT-*.safetensors")))
    found += [p for p in (os.path.join(ip_dir(), folder) for folder, _, _ in IMAGE_ENCODERS.values())
              if os.path.isdir(p)]
    return list(dict.fromkeys(found))


def _user_choice(choice: str, what: str) -> str | None:
    """A file the user picked in the UI or passed to the API (None for "auto")."""
    if not choice or choice == "auto":
        return None
    if not os.path.exists(choice):
        raise ModelUnavailable(f"Stylus: {what} {choice} not found")
    return choice


def ip_adapter(arch: str, choice: str = "auto") -> str:
    """The user's choice, else the family's default adapter wherever it is found, else downloaded."""
    if _user_choice(choice, "IP-Adapter file"):
        return choice
    file, size = AUTO_ADAPTERS[arch]
    base = os.path.basename(file)
    for path in list_ip_adapters():
        if os.path.basename(path) == base:
            return path  # e.g. sd-webui-controlnet's copy: no second download
    _download(HUB, [file], ip_dir(), f"the IP-Adapter {base} ({size})", folder=ip_dir())
    return os.path.join(ip_dir(), file)


def image_encoder(space: str, choice: str = "auto") -> str:
    """The CLIP image encoder of ``space`` ("vit-h" or "vit-bigG"; a family name means its default adapter's
    space): the user's choice, else a known file or folder wherever found, else downloaded."""
    if _user_choice(choice, "image encoder"):
        return choice
    space = FAMILY_SPACE.get(space, space)
    folder, known, size = IMAGE_ENCODERS[space]
    for d in _search_dirs():
        for name in known:
            if os.path.isfile(os.path.join(d, name)):
                return os.path.join(d, name)
    local = os.path.join(ip_dir(), folder)
    if _is_encoder_folder(local):
        return local
    _download(HUB, [f"{folder}/{f}" for f in ENCODER_FILES], ip_dir(),
              f"the {space} CLIP image encoder ({size})", folder=local)
    return local


def vit_h_text() -> str:
    repo, files, size = VIT_H_TEXT
    return _download(repo, files, os.path.join(host.models_dir(), "CLIP-ViT-H-14-laion2B"),
                     f"the ViT-H-14 CLIP text tower ({size}, for content subtraction with ViT-H IP-Adapters)")


def auto_note() -> str:
    """What "auto" uses and fetches, for the UI."""
    sd15, sdxl = AUTO_ADAPTERS["sd15"], AUTO_ADAPTERS["sdxl"]
    return (f"auto: a file already in models/stylus/ip-adapter, models/ControlNet, models/ipadapter or "
            f"ControlNet's clip_vision downloads; else, once, from huggingface.co/{HUB}: SD1.5 "
            f"{os.path.basename(sd15[0])} ({sd15[1]}) + models/image_encoder ({IMAGE_ENCODERS['vit-h'][2]}), "
            f"SDXL {os.path.basename(sdxl[0])} ({sdxl[1]}) + sdxl_models/image_encoder "
            f"({IMAGE_ENCODERS['vit-bigG'][2]}). The encoder follows the adapter's CLIP space (ViT-H or "
            f"ViT-bigG). A content text with a ViT-H adapter also needs the ViT-H text tower "
            f"({VIT_H_TEXT[2]}).")


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
