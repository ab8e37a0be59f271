"""Register the tiny checkpoints in a LOCAL TEST COPY of Forge (never commit the result): Forge recognises
a checkpoint only through huggingface_guess's model list (exact widths) and builds its components from a
diffusers config folder under backend/huggingface/<repo>. Unmodified Forge answers "Failed to recognize model
type!" for the tiny models.

    python tests/e2e/forge_register.py FORGE_DIR MODELS_DIR

MODELS_DIR holds the output of the tiny generators (tiny-sd15-clip/ and tiny-sdxl-clip/ configs). Writes:
  FORGE_DIR/repositories/huggingface_guess/huggingface_guess/model_list.py: two classes put first in `models`
  FORGE_DIR/backend/huggingface/stylus-e2e/tiny-sd15/: SD1.5's folder, the tiny VAE / text encoder configs
  FORGE_DIR/backend/huggingface/stylus-e2e/tiny-sdxl/: SDXL base's folder, tiny VAE / both text encoders

Forge Classic (Haoming02/sd-webui-forge-classic, the ldm_patched "old Forge"; detected by the absence of
huggingface_guess) recognises a checkpoint by ldm_patched/modules/supported_models.py's `models` list
(exact widths too: "no match {...}", then AttributeError 'NoneType' ... 'set_manual_cast'), builds its text
encoders from fixed CLIP-L / bigG json configs and its VAE from the fixed SD VAE config. Writes instead:
  FORGE_DIR/ldm_patched/modules/supported_models.py: two classes put first in `models` (tiny widths, text
      encoders from the json files below, a `vae_config` of the tiny VAE)
  FORGE_DIR/ldm_patched/modules/stylus_e2e/*.json: the tiny text encoders' configs (transformers
      CLIPTextConfig)
  FORGE_DIR/modules_forge/forge_loader.py: one line, `VAE(sd=vae_sd)` -> `VAE(sd=vae_sd, config=<the model's
      vae_config or None>)` (the loader never passes a VAE config; None keeps the host's default)
"""
import json
import os
import shutil
import sys

MARK = "# --- stylus e2e: tiny test checkpoints ---"
CLASSES = MARK + '''
class StylusTinySD15(SD15):
    huggingface_repo = "stylus-e2e/tiny-sd15"
    unet_config = {"context_dim": 64, "model_channels": 32, "use_linear_in_transformer": False,
                   "adm_in_channels": None, "use_temporal_attention": False}
    unet_extra_config = {"num_heads": 2, "num_head_channels": -1}


class StylusTinySDXL(SDXL):
    huggingface_repo = "stylus-e2e/tiny-sdxl"
    unet_config = {"model_channels": 32, "use_linear_in_transformer": True,
                   "transformer_depth": [0, 0, 2, 2, 10, 10], "context_dim": 160, "adm_in_channels": 1632,
                   "use_temporal_attention": False}
    unet_extra_config = {"num_heads": -1, "num_head_channels": 32}


models = [StylusTinySD15, StylusTinySDXL] + models
'''

# the tiny generators' VAE: ldm ch 32, ch_mult [1, 1, 2, 2], 1 res block
TINY_VAE = {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "norm_num_groups": 32}
# text encoder 2 of the tiny SDXL (open_clip width 96, 3 heads, 32 layers, mlp ratio 4, projection 96)
TINY_TE2 = {"hidden_size": 96, "intermediate_size": 384, "num_attention_heads": 3, "num_hidden_layers": 32,
            "projection_dim": 96}


def edit_json(path, values):
    with open(path) as f:
        data = json.load(f)
    data.update(values)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


def folder(forge, source, name, models, clip_folder, te2=False):
    hf = os.path.join(forge, "backend", "huggingface")
    dest = os.path.join(hf, "stylus-e2e", name)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(os.path.join(hf, source), dest)
    text_config = os.path.join(models, clip_folder, "config.json")
    shutil.copy(text_config, os.path.join(dest, "text_encoder", "config.json"))
    edit_json(os.path.join(dest, "vae", "config.json"), TINY_VAE)
    if te2:
        edit_json(os.path.join(dest, "text_encoder_2", "config.json"), TINY_TE2)


CLASSIC_CLASSES = MARK + '''
import os as _stylus_os

_STYLUS_E2E = _stylus_os.path.join(_stylus_os.path.dirname(_stylus_os.path.realpath(__file__)), "stylus_e2e")
_STYLUS_TINY_VAE = {"params": {"embed_dim": 4, "ddconfig": {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
    "ch_mult": [1, 1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}}


class StylusTinySD15ClipModel(sd1_clip.SD1ClipModel):
    def __init__(self, device="cpu", dtype=None):
        json_config = _stylus_os.path.join(_STYLUS_E2E, "tiny-sd15-clip-l.json")
        super().__init__(device=device, dtype=dtype, textmodel_json_config=json_config)


class StylusTinySDXLClipModel(sdxl_clip.SDXLClipModel):
    def __init__(self, device="cpu", dtype=None):
        torch.nn.Module.__init__(self)
        self.clip_l = sd1_clip.SDClipModel(
            layer="hidden", layer_idx=-2, device=device, dtype=dtype, layer_norm_hidden_state=False,
            textmodel_json_config=_stylus_os.path.join(_STYLUS_E2E, "tiny-sdxl-clip-l.json"))
        # as sdxl_clip.SDXLClipG, with the tiny bigG config
        self.clip_g = sd1_clip.SDClipModel(
            device=device, freeze=True, layer="hidden", layer_idx=-2, dtype=dtype,
            textmodel_json_config=_stylus_os.path.join(_STYLUS_E2E, "tiny-sdxl-clip-g.json"),
            special_tokens={"start": 49406, "end": 49407, "pad": 0}, layer_norm_hidden_state=False)


class StylusTinySD15(SD15):
    unet_config = {"context_dim": 64, "model_channels": 32, "use_linear_in_transformer": False,
                   "adm_in_channels": None, "use_temporal_attention": False}
    unet_extra_config = {"num_heads": 2, "num_head_channels": -1}
    vae_config = _STYLUS_TINY_VAE

    def clip_target(self):
        return supported_models_base.ClipTarget(sd1_clip.SD1Tokenizer, StylusTinySD15ClipModel)


class StylusTinySDXL(SDXL):
    unet_config = {"model_channels": 32, "use_linear_in_transformer": True,
                   "transformer_depth": [0, 0, 2, 2, 10, 10], "context_dim": 160, "adm_in_channels": 1632,
                   "use_temporal_attention": False}
    unet_extra_config = {"num_heads": -1, "num_head_channels": 32}
    vae_config = _STYLUS_TINY_VAE

    def clip_target(self):
        return supported_models_base.ClipTarget(sdxl_clip.SDXLTokenizer, StylusTinySDXLClipModel)


models = [StylusTinySD15, StylusTinySDXL] + models
'''

CLASSIC_VAE_LINE = "vae = VAE(sd=vae_sd)"
CLASSIC_VAE_NEW = 'vae = VAE(sd=vae_sd, config=getattr(model_config, "vae_config", None))'


def append_once(path, text):
    with open(path) as f:
        current = f.read()
    if MARK not in current:
        with open(path, "a") as f:
            f.write("\n\n" + text)


def main_classic(forge, models):
    modules = os.path.join(forge, "ldm_patched", "modules")
    configs = os.path.join(modules, "stylus_e2e")
    os.makedirs(configs, exist_ok=True)
    for name in ("tiny-sd15", "tiny-sdxl"):
        text_config = os.path.join(models, name + "-clip", "config.json")
        shutil.copy(text_config, os.path.join(configs, name + "-clip-l.json"))
    # the host's own bigG config (gelu, its token ids) at the tiny SDXL's second text encoder's widths
    clip_g = os.path.join(configs, "tiny-sdxl-clip-g.json")
    shutil.copy(os.path.join(modules, "clip_config_bigg.json"), clip_g)
    edit_json(clip_g, TINY_TE2)
    append_once(os.path.join(modules, "supported_models.py"), CLASSIC_CLASSES)
    loader = os.path.join(forge, "modules_forge", "forge_loader.py")
    with open(loader) as f:
        text = f.read()
    if CLASSIC_VAE_NEW not in text:
        if text.count(CLASSIC_VAE_LINE) != 1:
            sys.exit(f"{loader}: no single line '{CLASSIC_VAE_LINE}': not the Forge Classic of this recipe")
        with open(loader, "w") as f:
            f.write(text.replace(CLASSIC_VAE_LINE, CLASSIC_VAE_NEW))
    print("registered the tiny SD1.5 and SDXL in the Forge Classic copy", forge)


def main(forge, models):
    if not os.path.isdir(os.path.join(forge, "repositories", "huggingface_guess")):
        main_classic(forge, models)
        return
    package = os.path.join(forge, "repositories", "huggingface_guess", "huggingface_guess")
    model_list = os.path.join(package, "model_list.py")
    append_once(model_list, CLASSES)
    folder(forge, "runwayml/stable-diffusion-v1-5", "tiny-sd15", models, "tiny-sd15-clip")
    folder(forge, "stabilityai/stable-diffusion-xl-base-1.0", "tiny-sdxl", models, "tiny-sdxl-clip", te2=True)
    print("registered stylus-e2e/tiny-sd15 and stylus-e2e/tiny-sdxl in", forge)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
