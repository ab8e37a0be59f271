"""Register the tiny checkpoints in a LOCAL TEST COPY of Forge (never commit the result): Forge recognises
a checkpoint only through huggingface_guess's model list (exact widths) and builds its components from a
diffusers config folder under backend/huggingface/<repo>. Unmodified Forge answers "Failed to recognize model
type!" for the tiny models.

    python tests/e2e/forge_register.py FORGE_DIR MODELS_DIR

MODELS_DIR holds the output of the tiny generators (tiny-sd15-clip/ and tiny-sdxl-clip/ configs). Writes:
  FORGE_DIR/repositories/huggingface_guess/huggingface_guess/model_list.py: two classes put first in `models`
  FORGE_DIR/backend/huggingface/stylus-e2e/tiny-sd15/: SD1.5's folder, the tiny VAE / text encoder configs
  FORGE_DIR/backend/huggingface/stylus-e2e/tiny-sdxl/: SDXL base's folder, the tiny VAE / both text encoders
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


def main(forge, models):
    package = os.path.join(forge, "repositories", "huggingface_guess", "huggingface_guess")
    model_list = os.path.join(package, "model_list.py")
    with open(model_list) as f:
        text = f.read()
    if MARK not in text:
        with open(model_list, "a") as f:
            f.write("\n\n" + CLASSES)
    folder(forge, "runwayml/stable-diffusion-v1-5", "tiny-sd15", models, "tiny-sd15-clip")
    folder(forge, "stabilityai/stable-diffusion-xl-base-1.0", "tiny-sdxl", models, "tiny-sdxl-clip", te2=True)
    print("registered stylus-e2e/tiny-sd15 and stylus-e2e/tiny-sdxl in", forge)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
