"""Reference style in a generation.

A style job's state is ONE :class:`StyleJob` object, kept on ``p`` as ``p.stylus_style`` and in a module-level
list of running jobs (innermost last; only its patch is installed). It is built in Script.process on the
loaded UNet, computed on the host's device and dtype (``modules.devices``, never where a UNet parameter
happens to be: low-VRAM flags park the fp16 UNet on the CPU, FP8 stores float8 weights), told the cond/uncond
rows at every CFG denoiser call (on Forge each attention call carries its rows), and ended in every case:
postprocess (normal end, interrupt, skip), an exception raised by sampling, the job's close(), a scripts
reload, and -- for a job that none of those reached (a copy of p made by XYZ plot / prompts-from-file that
failed after sampling) -- at the start of the next job, whether or not Stylus is enabled there.

``p.sample`` / ``p.close`` get ONE guard per p object: a p processed again (img2img batch, loopback, mov2mov)
keeps its guard, and a copy of p gets its own guard around the host's method, never around another guard."""
from __future__ import annotations

import contextlib
import logging
import weakref

import torch

from ..errors import UnsupportedModel
from ..images import ReferenceImageError, to_pil
from . import host, models
from .args import StylusArgs, infotext_keys

log = logging.getLogger("stylus")
KEYS = infotext_keys()
_ENGINE = None
_JOBS: list = []  # running StyleJobs, innermost last; only the last one's patch is installed
# An adapter's CLIP space from what its projection eats: plain = image_embeds width, plus = hidden width.
CLIP_SPACES = {("plain", 1024): "vit-h", ("plain", 1280): "vit-bigG", ("plus", 1280): "vit-h",
               ("plus", 1664): "vit-bigG"}


class StyleJob:
    """One generation's reference style: its patch, its tokens, the request it belongs to, and (weakly) the p
    it was made for, so a dropped copy of p never keeps its patch alive."""

    def __init__(self, p, patch, tokens, request):
        self.p = weakref.ref(p)
        self.patch, self.tokens, self.request = patch, tokens, request

    def stale(self, p, request) -> bool:
        """Left over: by an earlier request, by a p that is gone, or by this very p processed again."""
        owner = self.p()
        return owner is None or owner is p or self.request != request

    def end(self) -> None:
        self.patch.remove()
        owner = self.p()
        if owner is not None and getattr(owner, "stylus_style", None) is self:
            owner.stylus_style = None


def engine():
    global _ENGINE
    from ..style import StyleEngine
    if _ENGINE is None:
        _ENGINE = StyleEngine()
    # Models stay loaded between jobs only when asked, and never under low-VRAM flags.
    _ENGINE.keep_loaded = bool(host.opt("stylus_keep_models", False)) and not _low_vram()
    return _ENGINE


def _low_vram() -> bool:
    opts = host.shared.cmd_opts
    return bool(getattr(host.shared.sd_model, "lowvram", False) or getattr(opts, "lowvram", False)
                or getattr(opts, "medvram", False) or getattr(opts, "medvram_sdxl", False))


def compute_device():
    """Where and in what the host computes (modules.devices: device, dtype_inference / dtype)."""
    try:
        from modules import devices
    except ImportError:  # not inside a web UI
        return torch.device("cpu"), torch.float32
    device = getattr(devices, "device", None) or torch.device("cpu")
    dtype = getattr(devices, "dtype_inference", None) or getattr(devices, "dtype", None) or torch.float32
    return torch.device(device), dtype


def _request():
    """Identifies the UI/API request a job runs in: nested jobs (ADetailer) share it, the next request not."""
    state = host.state()
    return getattr(state, "time_start", None), getattr(state, "job_timestamp", None)


def begin(p) -> None:
    """At the start of every job, Stylus enabled or not: end what earlier jobs left installed."""
    request = _request()
    stale = [job for job in _JOBS if job.stale(p, request)]
    if stale:
        _end(stale)


def process(p, args: StylusArgs) -> None:
    base = host.loaded_base()
    arch = {"sd1": "sd15", "sdxl": "sdxl"}.get(base)
    if arch is None:
        raise UnsupportedModel(f"reference style needs an SD1.5 or SDXL checkpoint (loaded: {base})")
    image = to_pil(args.style_image)
    if image is None:
        raise ReferenceImageError("reference style is on but no reference image was given")
    host.state().textinfo = "Stylus: encoding the reference image"
    device, dtype = compute_device()
    eng = engine()
    adapter_path = models.ip_adapter(arch, args.ip_adapter)
    info = eng.info(adapter_path)
    space = CLIP_SPACES.get((info.kind, info.clip_dim), models.FAMILY_SPACE[arch])  # tiny test models: family
    encoder_path = models.image_encoder(space, args.image_encoder)
    content = args.content_text.strip() if args.content_lambda else ""
    text = None
    if content and info.kind == "plain":
        text = _text_encoder(space, arch, info.clip_dim, device, dtype)
    if text is None and info.kind == "plain":
        content = ""  # said once, above; the engine must not say it again
    blocks = args.custom_blocks if args.blocks_preset == "custom" else args.blocks_preset
    patch, tokens = eng.build(host.unet(), adapter_path, encoder_path, [image], content or None, text,
                              args.content_lambda, blocks=blocks, scale=args.style_scale, device=device,
                              dtype=dtype)
    _start(p, StyleJob(p, patch, tokens, _request()))
    if tokens.note:
        log.warning("Stylus: %s", tokens.note)
    written = ("style_scale", "blocks_preset")
    if tokens.subtracted:
        written += ("content_text", "content_lambda")
    for name in written:  # content and λ only when they were subtracted
        p.extra_generation_params[KEYS[name]] = getattr(args, name)
    if args.blocks_preset == "custom":
        p.extra_generation_params[KEYS["custom_blocks"]] = args.custom_blocks


def _start(p, job: StyleJob) -> None:
    """Install for this job. A job started inside another (e.g. ADetailer's inpainting pass) suspends the
    outer job's patch and gives it back when it ends."""
    if _JOBS:
        _JOBS[-1].patch.remove()
    job.patch.install()
    _JOBS.append(job)
    p.stylus_style = job
    _guard(p)


class _Guard:
    """Stands in for p.sample / p.close: ends p's style job (sample: only on an exception), then calls what
    the host has there: the instance's own function if it had one, else the class's method bound to this p."""

    def __init__(self, p, name: str, own):
        self.p, self.name, self.own = weakref.ref(p), name, own

    def __call__(self, *args, **kwargs):
        p = self.p()
        method = self.own if self.own is not None else getattr(type(p), self.name, None)
        if method is not None and self.own is None:
            method = method.__get__(p)
        if self.name == "close":
            restore(p)
            return method(*args, **kwargs) if method is not None else None
        try:
            return method(*args, **kwargs)
        except BaseException:
            restore(p)
            raise


def _guard(p) -> None:
    """The host runs no hook after an exception in sampling, but always closes the job (`with closing(p)` in
    the UI and the API): end the style on either path. Never stacked (see the module's docstring)."""
    for name in ("sample", "close"):
        own = p.__dict__.get(name)
        if isinstance(own, _Guard):
            if own.p() is p:
                continue
            own = own.own  # a copy of p: guard the host's function for this p
        setattr(p, name, _Guard(p, name, own))


# ----------------------------------------------------------------------------------------------- content text
def _text_encoder(space: str, arch: str, width: int, device, dtype):
    """The content's CLIP text embedding in the adapter's space, or None with one console line saying why.
    ViT-bigG: the SDXL checkpoint's own second text encoder. ViT-H: the ViT-H-14 text tower (a local or
    downloaded folder)."""
    if space == "vit-bigG":
        model = host.shared.sd_model
        if arch == "sdxl" and host.encodes_with_sgm_conditioner(model):
            return CheckpointText(model, width)
        log.warning("Stylus: no ViT-bigG text tower here (only an SDXL checkpoint's own is used, on A1111 "
                    "and Forge Classic): content not subtracted, the style is applied as it is")
        return None
    try:
        return vit_h_text_encoder(device, dtype)
    except models.ModelUnavailable as e:
        log.warning("%s. Until then the ViT-H content is not subtracted: the style is applied as it is.", e)
        return None


class CheckpointText:
    """SDXL: the content text through the checkpoint's own second text encoder, the way the host encodes a
    prompt (``get_learned_conditioning``: the conditioner's low-VRAM hook moves it, ``devices.autocast`` casts
    FP8 weights), with no LoRA of any job active. Its pooled projection (ViT-bigG space) leads the 'vector'
    conditioning (sgm's GeneralConditioner concatenates embedder outputs in order)."""

    def __init__(self, sd_model, width: int):
        self.model, self.width = sd_model, width
        checkpoint = getattr(sd_model, "sd_model_hash", None)
        checkpoint = checkpoint or getattr(sd_model, "sd_model_checkpoint", None)
        self.key = ("sdxl text encoder 2", checkpoint or id(sd_model), width)

    @torch.no_grad()
    def __call__(self, texts):
        try:
            from modules import devices
            autocast = devices.autocast()
        except ImportError:
            autocast = contextlib.nullcontext()
        with without_loras(), checkpoint_clip(self.model), autocast:
            cond = self.model.get_learned_conditioning(list(texts))
        vector = cond["vector"] if isinstance(cond, dict) else cond
        return vector[:, :self.width].float()


@contextlib.contextmanager
def without_loras():
    """extensions-builtin/Lora applies ``networks.loaded_networks`` to each layer's weights in its forward
    (network_apply_weights: the original weights are backed up once and restored whenever the wanted set
    changes). With that list empty for this call, every text encoder layer computes with the checkpoint's own
    weights; the list is put back afterwards and the host's next forward applies its LoRAs again."""
    try:
        import networks
    except ImportError:  # no Lora extension: nothing is ever applied
        yield
        return
    loaded = getattr(networks, "loaded_networks", None)
    if not loaded:
        yield
        return
    saved = list(loaded)
    loaded.clear()
    try:
        yield
    finally:
        loaded[:] = saved


@contextlib.contextmanager
def checkpoint_clip(sd_model):
    """Forge Classic applies text-encoder LoRAs to a clone of its CLIP (networks.load_networks puts it in
    forge_objects.clip); the conditioner loads that clone's patcher (forge_clip.move_clip_to_gpu), which
    writes its patches into the weights all clones share. With the unpatched original in its place for this
    call the weights are the checkpoint's own; the host's next encode loads its clone, and so its LoRAs,
    again."""
    objects = getattr(sd_model, "forge_objects", None)
    original = getattr(sd_model, "forge_objects_original", None)
    if objects is None or original is None:
        yield
        return
    current = objects.clip
    objects.clip = original.clip
    try:
        yield
    finally:
        objects.clip = current


class _LazyText:
    """A text tower loaded only when an embedding is not already remembered (``key`` names it for the
    cache)."""

    def __init__(self, key, load):
        self.key, self._load, self._model = key, load, None

    def __call__(self, texts):
        if self._model is None:
            self._model = self._load()
        return self._model(texts)


def vit_h_text_encoder(device, dtype):
    """The ViT-H-14 text tower (raises ModelUnavailable when its folder is missing and cannot be fetched)."""
    folder = models.vit_h_text()

    def load():
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer
        from ..style import TransformersText
        from ..style.encoders import EncoderFormatError
        work = torch.float32 if device.type == "cpu" else dtype  # no half CLIP kernels on the CPU
        try:
            tok = CLIPTokenizer.from_pretrained(folder)
            model = CLIPTextModelWithProjection.from_pretrained(folder, torch_dtype=work).to(device)
        except Exception as e:  # a broken download or a file put there by hand: one line naming the folder
            what = e.__class__.__name__
            raise EncoderFormatError(f"{folder}: the ViT-H text tower does not load ({what})") from None
        return TransformersText(model, lambda texts: tok(texts, padding="max_length", truncation=True,
                                                         max_length=77, return_tensors="pt").input_ids)
    return _LazyText(("vit-h text tower", folder, str(dtype)), load)


# ------------------------------------------------------------------------------------------- rows and the end
def on_cfg_denoiser(params) -> None:
    """Before each denoiser call the host stacks [cond rows..., uncond rows(, uncond rows for edit
    models)]."""
    patch = active()
    if patch is None or host.is_forge():  # Forge tells each attention call its rows (transformer_options)
        return
    from ..style import cfg_rows
    cond = params.text_cond["crossattn"] if isinstance(params.text_cond, dict) else params.text_cond
    n_cond = int(cond.shape[0])
    patch.set_rows(cfg_rows(n_cond, int(params.x.shape[0]) - n_cond))


def restore(p=None) -> None:
    """End job p's style (every job's when p is None) and give an outer job its patch back."""
    _end([job for job in _JOBS if p is None or job.p() is p])


def _end(jobs) -> None:
    global _JOBS
    if not jobs:
        return
    for job in jobs:
        job.end()
    _JOBS = [job for job in _JOBS if job not in jobs]
    if _JOBS:
        _JOBS[-1].patch.install()


def active():
    return _JOBS[-1].patch if _JOBS else None
