import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import style_fixtures as fx
from lib_stylus.style.encoders import (CLIP_MEAN, CLIP_STD, TransformersText, infer_vision_config,
                                       load_clip_vision, load_open_clip_text, preprocess, subtract_content)


# ------------------------------------------------------------------------------------------------ subtraction
def test_raw_subtraction_is_image_minus_lambda_text():
    img, txt = torch.tensor([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0]]), torch.tensor([[1.0, 2.0, 2.0]])
    got = subtract_content(img, txt, lam=0.5)
    assert torch.equal(got, torch.tensor([[2.5, 3.0, -1.0], [0.5, 0.0, 0.0]]))  # one text row, broadcast
    assert torch.equal(subtract_content(img, txt, lam=0.0), img)
    assert torch.equal(subtract_content(img, txt.repeat(2, 1), lam=1.0), img - txt)


def test_matched_norm_subtraction_rescales_text_to_the_image_length():
    img, txt = torch.tensor([[3.0, 4.0, 0.0]]), torch.tensor([[0.0, 0.0, 10.0]])  # |img| = 5, |txt| = 10
    got = subtract_content(img, txt, lam=0.8, norm="match")
    assert torch.allclose(got, torch.tensor([[3.0, 4.0, -4.0]]))  # 0.8 * 5 * unit text


def test_subtraction_refuses_plus_patch_tokens_and_other_spaces():
    with pytest.raises(ValueError, match="'plus' adapters use patch tokens"):
        subtract_content(torch.zeros(1, 257, 8), torch.zeros(1, 8))
    with pytest.raises(ValueError, match="not the same CLIP space"):
        subtract_content(torch.zeros(1, 1024), torch.zeros(1, 1280))
    with pytest.raises(ValueError, match="norm must be"):
        subtract_content(torch.zeros(1, 4), torch.zeros(1, 4), norm="l1")


# ------------------------------------------------------------------------------------------------ images
def test_preprocess_resizes_centre_crops_and_normalises():
    arr = np.zeros((32, 96, 3), np.uint8)
    arr[:, 32:64] = 255  # only the centre third is white
    for im in (Image.fromarray(arr), arr, torch.from_numpy(arr).permute(2, 0, 1).float() / 255):
        px = preprocess(im, size=32)
        assert px.shape == (1, 3, 32, 32)
        want = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
        assert torch.allclose(px[0, :, :, 4:-4].mean((1, 2)), want, atol=2e-2)
    assert preprocess([Image.fromarray(arr)] * 3, size=16).shape == (3, 3, 16, 16)


@pytest.fixture(scope="module")
def vision(tmp_path_factory):
    model = fx.tiny_vision_model()
    folder = tmp_path_factory.mktemp("clip") / "image_encoder"
    model.save_pretrained(str(folder), safe_serialization=True)
    return model, str(folder)


def test_folder_with_pytorch_model_bin_is_read_weights_only(tmp_path, monkeypatch):
    model = fx.tiny_vision_model()
    # the folder as IP-Adapter ships it, written by hand: transformers 5 no longer saves pytorch_model.bin
    model.config.save_pretrained(str(tmp_path))
    torch.save(model.state_dict(), str(tmp_path / "pytorch_model.bin"))
    seen, real = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: seen.append(kw.get("weights_only")) or real(*a, **kw))
    enc = load_clip_vision(str(tmp_path))
    assert seen == [True]
    px = _pixels()
    assert torch.allclose(enc.encode_pixels(px), model(pixel_values=px).image_embeds, atol=1e-6)


def _pixels(b=2):
    return torch.randn(b, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_folder_encoder_gives_image_embeds_and_penultimate_states(vision):
    model, folder = vision
    enc = load_clip_vision(folder)
    px = _pixels()
    out = model(pixel_values=px, output_hidden_states=True)
    assert torch.allclose(enc.encode_pixels(px, "plain"), out.image_embeds, atol=1e-6)
    assert torch.allclose(enc.encode_pixels(px, "plus"), out.hidden_states[-2], atol=1e-6)
    assert enc.encode_pixels(px, "plus").shape == (2, 17, 32)
    assert enc.encode([Image.new("RGB", (50, 40), (10, 200, 30))]).shape == (1, 24)


@pytest.mark.parametrize("name, prefix", [("clip_h.pth", ""), ("clip_vision.safetensors", ""),
                                          ("comfy.safetensors", "clip_vision.")])
def test_single_file_clip_vision_as_controlnet_keeps_it(vision, tmp_path, name, prefix):
    model, _ = vision
    sd = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    path = str(tmp_path / name)
    save_file(sd, path) if name.endswith(".safetensors") else torch.save(sd, path)
    enc = load_clip_vision(path, num_heads=2)
    px = _pixels()
    assert torch.allclose(enc.encode_pixels(px), model(pixel_values=px).image_embeds, atol=1e-6)


def test_vision_config_is_inferred_from_shapes(vision):
    cfg = infer_vision_config(vision[0].state_dict(), num_heads=2)
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.projection_dim, cfg.num_hidden_layers, cfg.image_size,
            cfg.patch_size, cfg.num_attention_heads) == (32, 64, 24, 2, 32, 8, 2)
    big = {"vision_model.embeddings.patch_embedding.weight": torch.empty(1280, 3, 14, 14),
           "vision_model.embeddings.position_embedding.weight": torch.empty(257, 1280),
           "vision_model.encoder.layers.0.mlp.fc1.weight": torch.empty(5120, 1280),
           "visual_projection.weight": torch.empty(1024, 1280)}
    cfg = infer_vision_config(big)  # ViT-H shapes: 16 heads known from the width
    assert (cfg.image_size, cfg.num_attention_heads, cfg.projection_dim) == (224, 16, 1024)


def test_not_a_clip_vision_file(tmp_path):
    path = str(tmp_path / "x.safetensors")
    save_file({"visual.proj": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="not a transformers-style CLIP vision file"):
        load_clip_vision(path)


def test_zero_embeds_plain_is_zero_plus_is_zero_image(vision):
    model, folder = vision
    enc = load_clip_vision(folder)
    assert torch.equal(enc.zero_embeds("plain", 2), torch.zeros(2, 24))
    want = model(pixel_values=torch.zeros(1, 3, 32, 32), output_hidden_states=True).hidden_states[-2]
    assert torch.allclose(enc.zero_embeds("plus"), want, atol=1e-6)


# ------------------------------------------------------------------------------------------------ text
TINY_OPEN_CLIP = {"embed_dim": 24,
                  "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                                 "patch_size": 16},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                               "layers": 1}}


@pytest.mark.parametrize("ext, tower_only", [("safetensors", True), ("bin", True), ("bin", False)])
def test_open_clip_text_tower_loads_locally_and_matches(tmp_path, monkeypatch, ext, tower_only):
    import open_clip
    cfg = tmp_path / "stylus-tiny-clip.json"
    cfg.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(str(cfg))
    torch.manual_seed(0)
    src = open_clip.create_model("stylus-tiny-clip").eval()
    ckpt = str(tmp_path / ("open_clip_pytorch_model." + ext))
    sd = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(sd, ckpt) if ext == "safetensors" else torch.save(sd, ckpt)
    # our call (with quick_gelu=) fails as if the private helper were gone; CLIP() still works
    if not tower_only:
        real = open_clip.model._build_text_tower
        monkeypatch.setattr(open_clip.model, "_build_text_tower",
                            lambda *a, **kw: (_ for _ in ()).throw(TypeError("gone")) if "quick_gelu" in kw
                            else real(*a, **kw))
    text = load_open_clip_text("stylus-tiny-clip", ckpt)
    assert not any(n.startswith("visual") for n, _ in text.model.named_parameters())
    tok = open_clip.get_tokenizer("stylus-tiny-clip")
    with torch.no_grad():
        want = src.encode_text(tok(["a cat on a sofa", "a red car"]))
    assert torch.allclose(text(["a cat on a sofa", "a red car"]), want, atol=1e-6)


def test_transformers_text_with_projection_in_the_image_space(tmp_path, vision):
    import open_clip
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, projection_dim=24)
    CLIPTextModelWithProjection(cfg).save_pretrained(str(tmp_path / "te2"))
    model = CLIPTextModelWithProjection.from_pretrained(str(tmp_path / "te2"), local_files_only=True)
    text = TransformersText(model, open_clip.tokenize)
    got = text(["a cat"])
    with torch.no_grad():
        assert torch.allclose(got, model(input_ids=open_clip.tokenize(["a cat"])).text_embeds)
    img = load_clip_vision(vision[1]).encode_pixels(_pixels(1))
    assert torch.allclose(subtract_content(img, got, 0.5), img - 0.5 * got)


@pytest.mark.parametrize("position_ids", ["extra", "absent"])
def test_encoder_files_of_any_transformers_era_load(tmp_path, position_ids):
    """transformers < 4.31 saved vision_model.embeddings.position_ids; newer ones neither save nor expect it.
    Files from either era must load on either stack (a real IP-Adapter image_encoder is an old-era file)."""
    from safetensors.torch import save_file
    model = fx.tiny_vision_model()
    sd = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    if position_ids == "extra":
        n = model.config.image_size // model.config.patch_size
        sd["vision_model.embeddings.position_ids"] = torch.arange(n * n + 1)[None]
    model.config.save_pretrained(str(tmp_path))
    save_file(sd, str(tmp_path / "model.safetensors"))
    enc = load_clip_vision(str(tmp_path))
    px = _pixels()
    assert torch.allclose(enc.encode_pixels(px), model(pixel_values=px).image_embeds, atol=1e-6)
